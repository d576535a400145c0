"""Schema migrations: Alembic on the scripts installed as the package ``blockreg_migrations``.

The scripts live in the repository's top-level ``migrations/`` folder and ship in the distribution
as ``blockreg_migrations``, found through the installed package (never through a checkout), so a
plain ``pip install`` migrates too. :func:`migrate` is ``blockreg db upgrade``; it holds a
database lock while it runs, so processes that upgrade at once (compose restarts, two
coordinators' start-up) take turns: the first creates the schema, the others find it current.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

from .locks import DatabaseLock
from .session import database_url, sqlite_path

__all__ = ["migrate", "alembic_config", "migrations_dir"]

MIGRATIONS_PACKAGE = "blockreg_migrations"


def migrations_dir() -> Path:
    """The folder of the installed Alembic scripts (``env.py``, ``versions/``)."""
    try:
        folder = importlib.resources.files(MIGRATIONS_PACKAGE)
    except ModuleNotFoundError:
        raise ValueError(f"migrations: the package {MIGRATIONS_PACKAGE} is not installed "
                         "(install blockreg with `pip install \"blockreg[server]\"`)") from None
    if not isinstance(folder, Path) or not (folder / "env.py").is_file():
        raise ValueError(f"migrations: {folder} holds no env.py (a zipped or broken install?)")
    return folder


def migrate(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at ``url`` (default: the ``database_url`` setting) to ``revision``.

    Creates the folder of a SQLite file if needed. Concurrent calls on one database are
    serialised by a lock (a PostgreSQL advisory lock, or a file lock beside the SQLite file).
    """
    from alembic import command

    url = database_url(url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    with DatabaseLock(url, "migrate"):
        command.upgrade(alembic_config(url), revision)


def alembic_config(url: str | None = None):
    """An Alembic ``Config`` for the installed scripts and ``url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # passed as an attribute, not an ini option: configparser would mangle '%' in passwords
    cfg.attributes["url"] = database_url(url)
    return cfg
