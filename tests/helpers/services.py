"""Access to the real PostgreSQL and Redis that the integration tests use (127.0.0.1)."""
from __future__ import annotations

import contextlib
import os
import socket
import uuid

import pytest

PG_HOST, PG_PORT, PG_ADMIN_DB = "127.0.0.1", 5432, "test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def require_reachable(what: str, host: str, port: int) -> None:
    """Skip the test when the service is down, except under CI (``$CI`` set), where it fails."""
    try:
        socket.create_connection((host, port), timeout=2).close()
        return
    except OSError as exc:
        message = f"{what} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("CI"):
        pytest.fail(message + "; under CI the integration tests must run")
    pytest.skip(message)


@contextlib.contextmanager
def fresh_postgres_database():
    """Yield the SQLAlchemy URL of a new, empty PostgreSQL database; drop it afterwards."""
    require_reachable("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    name = f"blockreg_it_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
