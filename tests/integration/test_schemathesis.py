"""Schemathesis against the live OpenAPI document of a real coordinator process (waitress, SQLite,
the session's Redis): generated requests, valid and not, get no 5xx and responses that match the
document.  Bounded: a few examples per operation, and the whole run under a minute.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (schemathesis brings hypothesis)
from helpers.services import free_port

pytestmark = [pytest.mark.integration]

EXAMPLES_PER_OPERATION = 10


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory, redis_url):
    """``python -m blockreg_services.coordinator`` on a migrated SQLite database."""
    from blockreg.db.migrate import migrate

    home = tmp_path_factory.mktemp("schemathesis")
    (home / "data").mkdir()
    url = f"sqlite:///{home / 'state.db'}"
    migrate(url)
    port = free_port()
    env = dict(os.environ, BLOCKREG_DATABASE_URL=url, BLOCKREG_BROKER_URL=redis_url,
               BLOCKREG_DATA_DIR=str(home / "data"), BLOCKREG_ALLOWED_ROOTS=str(home / "data"),
               BLOCKREG_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "blockreg_services.coordinator",
                             "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(home / "coordinator.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{base}/api/v1/health", timeout=2)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((home / "coordinator.log").read_text())
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def api_schema(coordinator):
    return schemathesis.openapi.from_url(f"{coordinator}/api/v1/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_responses_match_the_document(case):
    from schemathesis.checks import not_a_server_error, response_schema_conformance

    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance], timeout=30)
