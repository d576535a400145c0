"""Engines and sessions for SQLite (embedded default) and PostgreSQL (lab server)."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from .. import settings

__all__ = ["make_engine", "session_factory", "database_url", "sqlite_path"]


def database_url(url: str | None = None) -> str:
    """``url``, else the ``database_url`` setting (``$BLOCKREG_DATABASE_URL``, else SQLite in
    ``$BLOCKREG_HOME``)."""
    return url or settings.load().database_url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///relative`` or ``sqlite:////absolute``); None for
    other databases and for in-memory SQLite."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path).expanduser() if path and path != ":memory:" else None


def _sqlite_pragmas(dbapi_connection, connection_record):
    # Issued directly: SQLAlchemy's recipe toggles dbapi_connection.autocommit, which Python 3.11's
    # sqlite3 lacks.  WAL lets the coordinator read while a worker writes; NORMAL is durable enough
    # with WAL; SQLite ignores foreign keys unless asked per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _dispose_after_fork(engine: Engine) -> None:
    # Pooled connections must never be shared by a parent and a forked child (two processes on
    # one socket / one SQLite handle).  The child drops the inherited pool without closing the
    # parent's connections.
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """Create an engine for ``url`` (default: the ``database_url`` setting).

    SQLite gets WAL, ``synchronous=NORMAL``, foreign keys and the ``sqlite_timeout_s`` busy
    timeout; every engine drops its pool in forked children.
    """
    url = database_url(url)
    if url.startswith("sqlite"):
        connect_args = kwargs.pop("connect_args", {})
        connect_args.setdefault("timeout", settings.load().sqlite_timeout_s)
        # the coordinator's dispatcher thread and request threads share the engine
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(url, **kwargs)
    _dispose_after_fork(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker:
    """A ``sessionmaker`` bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)
