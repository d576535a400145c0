"""docker-compose.yml keeps the lab server up: every long-running service restarts by itself after
a crash (OOM kill, host reboot) and has a health check; the one-shot migration does not restart."""
from __future__ import annotations


import pytest
import yaml
from helpers.paths import ROOT as REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_long_running_service_restarts_and_is_health_checked(services):
    long_running = [name for name, svc in services.items() if name != "migrate"]
    assert {"redis", "postgres", "dispatcher", "coordinator", "worker-cpu"} <= set(long_running)
    for name in long_running:
        assert services[name].get("restart") in ("always", "unless-stopped"), name
        assert services[name].get("healthcheck", {}).get("test"), name
    assert services["migrate"]["restart"] == "no"
