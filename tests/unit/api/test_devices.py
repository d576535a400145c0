"""Where a job's frames go (``resources.device``) and which workers and devices are alive."""
from __future__ import annotations

import pytest

from blockreg.db import workers
from helpers.api_app import spec_for


def _submit(client, movie_path, device=None):
    spec = spec_for(movie_path)
    if device is not None:
        spec["resources"] = {"device": device}
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 201, response.json
    return client.get(f"/api/v1/jobs/{response.json['id']}").json


def _beat(app, name, queues, device):
    with app.extensions["blockreg"].sessions() as session:
        workers.record_heartbeat(session, hostname=name, pid=7, queues=queues, device=device)


@pytest.fixture
def broker_up(app, monkeypatch):
    services = app.extensions["blockreg"]
    monkeypatch.setattr(type(services), "broker_reachable", lambda self, timeout=2.0: True)


def test_without_a_gpu_worker_auto_goes_to_cpu_and_a_gpu_job_waits_saying_why(
        client, app, movie_path, broker_up):
    _beat(app, "cpu@h:7", "cpu", "cpu")
    auto = _submit(client, movie_path)
    assert auto["queue"] == "cpu" and auto["spec"]["resources"] == {"device": "auto"}
    gpu = _submit(client, movie_path, "gpu")
    assert gpu["queue"] == "gpu" and gpu["state"] == "queued"
    assert (gpu["waiting"], gpu["waiting_reason"]) == (True, "no live worker on queue gpu")


def test_with_a_gpu_worker_alive_auto_and_gpu_go_to_it_and_cpu_stays(client, app, movie_path,
                                                                      broker_up):
    _beat(app, "gpu@h:7", "gpu", "gpu:0 NVIDIA H200")
    assert _submit(client, movie_path)["queue"] == "gpu"
    gpu = _submit(client, movie_path, "gpu")
    assert (gpu["queue"], gpu["waiting"]) == ("gpu", False)
    assert _submit(client, movie_path, "cpu")["queue"] == "cpu"


def test_health_lists_live_workers_and_their_devices(client, app, broker_up):
    _beat(app, "gpu@h:7", "gpu", "gpu:0 NVIDIA H200")
    _beat(app, "cpu@h:8", "cpu", "cpu")
    workers = client.get("/api/v1/health").json["workers"]
    assert [(w["name"], w["queues"], w["device"]) for w in workers] == [
        ("cpu@h:8", "cpu", "cpu"), ("gpu@h:7", "gpu", "gpu:0 NVIDIA H200")]


def test_an_unknown_device_is_a_422_naming_the_field(client, movie_path):
    spec = spec_for(movie_path)
    spec["resources"] = {"device": "tpu"}
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 422
    assert "resources.device" in [e["field"] for e in response.json["errors"]]


def test_a_device_error_fails_its_frame_and_the_worker_goes_on(client, app, broker, movie_path,
                                                               monkeypatch):
    # a GPU worker process (the strict stand-in as its device): the first frame hits a device
    # error; it fails with the message, the job's device state is released and rebuilt, and the
    # other frames of the batch are registered on the device
    from blockreg.algorithms.apertures import Apertures
    from blockreg.orchestrate import device, frames
    from blockreg.orchestrate.dispatch import dispatch_once
    from helpers import strict_cupy

    cp = strict_cupy.install(monkeypatch)
    monkeypatch.setattr(device, "_state", dict(device._state))
    assert device.setup("gpu") == "gpu:0 strict-cupy stand-in"
    frames.forget_contexts()
    builds, freed = [], cp.get_default_memory_pool().freed
    real_build, real_run = frames._build_context, Apertures.run_frame
    monkeypatch.setattr(frames, "_build_context", lambda job: builds.append(1) or real_build(job))

    def run_frame(self, frame, t, wanted):
        assert isinstance(self.fixed, cp.ndarray)           # the plans live on the device
        if len(builds) == 1:
            raise cp.cuda.runtime.CUDARuntimeError("cudaErrorIllegalAddress: an illegal memory "
                                                   "access was encountered")
        return real_run(self, frame, t, wanted)

    monkeypatch.setattr(Apertures, "run_frame", run_frame)
    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path,
                                                       resources={"device": "gpu"})).json["id"]
    sessions = app.extensions["blockreg"].sessions
    with sessions() as session:
        dispatch_once(session, broker, max_batches=2)
    first, second = broker.sent[0][1][1], broker.sent[1][1][1]
    counts = frames.run_frames(job_id, first, worker="gpu@h:1", sessions=sessions, queue="gpu")
    assert (counts["failed"], counts["done"]) == (1, len(first) - 1)
    counts = frames.run_frames(job_id, second, worker="gpu@h:1", sessions=sessions, queue="gpu")
    assert counts == {"done": len(second), "failed": 0, "skipped": 0}
    failed = [f for f in client.get(f"/api/v1/jobs/{job_id}/frames").json["frames"]
              if f["state"] == "failed"]
    assert len(failed) == 1 and "cudaErrorIllegalAddress" in failed[0]["error"]
    assert len(builds) == 2 and cp.get_default_memory_pool().freed > freed
    frames.forget_contexts()
