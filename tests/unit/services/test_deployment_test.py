"""The deployment test's files (docker/test/) stay in step with docker-compose.yml and the Dockerfile.

The deployment test itself (docker/test/run.sh) needs root and a container engine and takes
minutes, so it is not collected here (docs/deployment.md, "Deployment test"); these checks catch,
in milliseconds, the drift that would only show there.
"""
from __future__ import annotations

import re

import yaml
from helpers.paths import ROOT



def load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def mounts_data_volume(service: dict) -> bool:
    return any(str(v).split(":")[0] == "data" for v in service.get("volumes", []))


def test_override_gives_every_service_on_the_data_volume_the_test_storage():
    # a service reading /data but not the test's shared folder would not find the demo's movie
    compose, override = load("docker-compose.yml"), load("docker/test/compose.override.yml")
    tested = {name for name, service in compose["services"].items()
              if mounts_data_volume(service) and "profiles" not in service}
    assert tested, "no service mounts the data volume"
    for name in tested:
        service = override["services"].get(name) or {}
        assert "${BLOCKREG_TEST_DATA:?}:${BLOCKREG_TEST_DATA:?}" in service.get("volumes", []), name
        assert set(service.get("environment", {})) >= {"BLOCKREG_DATA_DIR", "BLOCKREG_DATA_ROOTS"}


def test_override_replaces_only_images_that_are_pulled():
    compose, override = load("docker-compose.yml"), load("docker/test/compose.override.yml")
    assert set(override["services"]) <= set(compose["services"])
    for name, service in override["services"].items():
        if "image" in service:
            assert "image" in compose["services"][name] and "build" not in compose["services"][name]


def test_dockerfile_bases_every_cpu_stage_on_the_base_image_argument():
    text = (ROOT / "docker/Dockerfile").read_text()
    first_from = text.index("\nFROM ")
    assert re.search(r"^ARG BASE_IMAGE=\S+", text[:first_from], re.M)
    stages = {name: base for base, name in re.findall(r"^FROM (\S+) AS (\S+)$", text, re.M)}

    def root(name):
        while stages.get(name) in stages:
            name = stages[name]
        return stages[name]

    for target in ("coordinator", "worker-cpu"):
        assert root(target) == "${BASE_IMAGE}", target
