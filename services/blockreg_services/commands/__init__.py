"""Subcommands of ``blockreg`` kept out of cli.py: each module exposes ``add_parsers(subparsers)``."""
