"""Alembic environment: the schema is ``blockreg.db.models.Base.metadata``.

The database URL comes from the programmatic config (``blockreg.db.migrate.migrate``, i.e.
``blockreg db upgrade``), else ``sqlalchemy.url`` in alembic.ini, else the ``database_url``
setting (``blockreg.settings``).  Batch mode is on so that SQLite gets table rebuilds for the
ALTERs it cannot do; other backends ALTER directly.
"""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from blockreg.db.models import Base
from blockreg.db.session import database_url, make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return database_url(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
