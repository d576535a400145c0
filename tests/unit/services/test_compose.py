"""docker-compose.yml: valid against the Compose specification, and the deployment rules hold.

No Docker engine runs here, so the file is checked statically: the JSON schema of the Compose
specification (vendored by check-jsonschema) plus the project's own rules.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.paths import ROOT

COMPOSE = ROOT / "docker-compose.yml"
BLOCKREG_SERVICES = ("migrate", "dispatcher", "coordinator", "worker-cpu", "worker-gpu")
LONG_RUNNING = ("dispatcher", "coordinator", "worker-cpu", "worker-gpu")
WORKERS = ("worker-cpu", "worker-gpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("check_jsonschema")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_specification():
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_gpu_reservation_without_capabilities(tmp_path):
    # the validator must be able to fail on the mistake it is here to catch
    broken = COMPOSE.read_text().replace("capabilities: [gpu]", "capabilites: [gpu]")
    assert broken != COMPOSE.read_text()
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = check_compose_schema(tmp_path / "docker-compose.yml")
    assert result.returncode != 0
    assert "capabilities" in result.stdout + result.stderr


def _mounts(service: dict) -> dict[str, str]:
    """target path -> source, for short ("src:dst[:mode]") and long volume syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source"), volume["target"]
        mounts[target] = source
    return mounts


@pytest.mark.parametrize("name", BLOCKREG_SERVICES)
def test_blockreg_containers_share_one_data_volume_at_slash_data(compose, name):
    service = compose["services"][name]
    assert "/data" in _mounts(service), f"{name} does not mount /data"
    sources = {_mounts(compose["services"][n])["/data"] for n in BLOCKREG_SERVICES}
    assert len(sources) == 1, f"/data comes from different sources: {sources}"
    assert service["environment"]["BLOCKREG_DATA_DIR"] == "/data"


@pytest.mark.parametrize("name", BLOCKREG_SERVICES)
def test_blockreg_containers_run_as_the_lab_user(compose, name):
    assert compose["services"][name]["user"] == "${UID:-1000}:${GID:-1000}"


def test_gpu_worker_reserves_one_nvidia_device(compose):
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    (device,) = devices
    assert device["driver"] == "nvidia"
    assert device["count"] == 1
    assert "gpu" in device["capabilities"]


@pytest.mark.parametrize("name, queue", [("worker-cpu", "cpu"), ("worker-gpu", "gpu")])
def test_workers_consume_their_queue_one_frame_at_a_time(compose, name, queue):
    command = compose["services"][name]["command"]
    assert command[command.index("--queues") + 1] == queue
    assert command[command.index("--concurrency") + 1] == "1"
    assert command[command.index("-A") + 1] == "blockreg_services.worker"


@pytest.mark.parametrize("name", ["redis", "postgres", *LONG_RUNNING])
def test_every_service_has_a_healthcheck(compose, name):
    test = compose["services"][name]["healthcheck"]["test"]
    assert test and test[0] in ("CMD", "CMD-SHELL")


def test_coordinator_waits_for_healthy_redis_and_postgres(compose):
    depends = compose["services"]["coordinator"]["depends_on"]
    for name in ("redis", "postgres"):
        assert depends[name]["condition"] == "service_healthy"
    assert "/api/v1/health" in " ".join(compose["services"]["coordinator"]["healthcheck"]["test"])


def test_the_schema_is_migrated_once_before_anything_uses_it(compose):
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["blockreg", "db", "upgrade"]
    assert migrate["restart"] == "no"  # a one-shot job, not a service to keep up
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in LONG_RUNNING:
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_the_dispatcher_is_its_own_service_and_the_api_a_wsgi_server(compose):
    assert compose["services"]["dispatcher"]["command"][:3] == [
        "python", "-m", "blockreg_services.dispatcher"]
    health = compose["services"]["dispatcher"]["healthcheck"]["test"]
    assert "--check-heartbeat" in health
    # the coordinator's entry point serves with waitress, not werkzeug's development server
    command = compose["services"]["coordinator"]["command"]
    assert command[:3] == ["python", "-m", "blockreg_services.coordinator"]
    main = (ROOT / "services/blockreg_services/coordinator/__main__.py").read_text()
    assert "waitress.serve(" in main and "run_simple" not in main


def test_compose_sets_only_known_settings(compose):
    from blockreg.settings import Settings, env_name

    known = {env_name(name) for name in Settings.__dataclass_fields__}
    for name in BLOCKREG_SERVICES:
        for variable in compose["services"][name]["environment"]:
            if variable.startswith("BLOCKREG_"):
                assert variable in known, f"{name}: {variable} is no setting"


def test_redis_keeps_its_queue_and_never_evicts(compose):
    command = compose["services"]["redis"]["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert _mounts(compose["services"]["redis"])["/data"] in compose["volumes"]


def test_postgres_keeps_its_data_in_a_named_volume(compose):
    source = _mounts(compose["services"]["postgres"])["/var/lib/postgresql/data"]
    assert source in compose["volumes"]


def test_dockerfile_has_the_targets_compose_builds(compose):
    dockerfile = (ROOT / compose["services"]["coordinator"]["build"]["dockerfile"]).read_text()
    stages = {line.split()[-1] for line in dockerfile.splitlines() if line.upper().startswith("FROM ")}
    for name in BLOCKREG_SERVICES:
        assert compose["services"][name]["build"]["target"] in stages


def test_images_install_a_built_wheel_not_the_checkout(compose):
    dockerfile = (ROOT / compose["services"]["coordinator"]["build"]["dockerfile"]).read_text()
    installs = [line for line in dockerfile.splitlines()
                if line.startswith("RUN") and "pip install" in line]
    assert installs and all(".whl" in line and " -e " not in line for line in installs)


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for char in str(duration):
        if char.isdigit() or char == ".":
            number += char
        else:
            total, number = total + float(number) * units[char], ""
    return total + (float(number) if number else 0.0)


@pytest.mark.parametrize("name", WORKERS)
def test_docker_stop_gets_celerys_soft_shutdown(compose, name):
    # `docker stop` sends SIGTERM; only a cold shutdown (SIGQUIT) runs the soft shutdown that
    # returns the running frame's message to the queue, so SIGTERM is remapped
    from blockreg.celery_app import make_celery

    service = compose["services"][name]
    assert service["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    soft = make_celery("redis://localhost:1/0").conf.worker_soft_shutdown_timeout
    assert _seconds(service["stop_grace_period"]) > soft > 0
