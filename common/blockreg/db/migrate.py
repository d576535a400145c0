"""Schema migrations: Alembic on the repository's ``migrations/`` folder, run programmatically."""
from __future__ import annotations

from pathlib import Path

__all__ = ["migrate", "alembic_config", "MIGRATIONS_DIR"]

# common/blockreg/db/migrate.py -> the repository root holds migrations/ (also in the images)
MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


def migrate(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at ``url`` (default ``$BLOCKREG_DATABASE_URL``) to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def alembic_config(url: str | None = None):
    """An Alembic ``Config`` for the repository's ``migrations/`` and ``url``."""
    from alembic.config import Config

    from .session import database_url

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise ValueError(f"migrations: {MIGRATIONS_DIR} not found (is the repository checked out?)")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # passed as an attribute, not an ini option: configparser would mangle '%' in passwords
    cfg.attributes["url"] = database_url(url)
    return cfg
