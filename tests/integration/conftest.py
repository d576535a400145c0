"""Real service parts for the integration tests: PostgreSQL, Redis, a coordinator, two workers.

Isolation: each test session gets a fresh PostgreSQL database (created from the ``test`` database
and dropped afterwards) and a Redis database number of its own (claimed with a marker key, flushed
afterwards; nothing else in that Redis is touched). When PostgreSQL or Redis is unreachable the
tests are skipped, except under CI (``$CI`` set), where they must run and so fail.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from helpers.services import REDIS_HOST, REDIS_PORT, fresh_postgres_database, require_reachable

CLAIM_KEY = "blockreg:integration-claim"
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def database_url():
    """URL of a fresh PostgreSQL database, dropped at the end of the session."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url():
    """URL of a Redis database number nobody else uses now; only that database is flushed."""
    require_reachable("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    token = uuid.uuid4().hex
    for db in range(15, 0, -1):  # db 0 is everyone's default: leave it alone
        client = redis.Redis(REDIS_HOST, REDIS_PORT, db=db)
        if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True, ex=3600):
            break
    else:
        pytest.skip("no free Redis database number (1..15) for the integration tests")
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        if client.get(CLAIM_KEY) == token.encode():
            client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def service(tmp_path_factory, database_url, redis_url):
    """A coordinator and two Celery worker processes on the session's PostgreSQL and Redis.

    Input and output paths are restricted to the session's data folder, as on the lab server.
    """
    from blockreg_services.embedded import EmbeddedStack

    home = tmp_path_factory.mktemp("service")
    env = {"BLOCKREG_ALLOWED_ROOTS": str(home / "data"),
           # the toy algorithm "mean-shift", which the coordinator and workers import as a plugin
           "BLOCKREG_ALGORITHM_MODULES": "helpers.toy_algorithm",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    stack = EmbeddedStack(home, port=0, workers=2, database_url=database_url, broker_url=redis_url,
                          env=env, stop_timeout=20)
    with stack:
        yield stack


@pytest.fixture(scope="session")
def client(service):
    from blockreg import Client

    return Client(service.url)
