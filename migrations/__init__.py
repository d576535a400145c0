"""Alembic scripts of the service database, installed as the package ``blockreg_migrations``.

Run them with ``blockreg db upgrade`` (``blockreg.db.migrate.migrate``), which finds this folder
through the installed package.
"""
