"""Subcommands of ``blockreg`` kept out of cli.py; each module has ``add_parsers(subparsers)``."""
