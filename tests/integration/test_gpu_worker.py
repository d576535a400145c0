"""A GPU job through the real service, on a GPU worker that runs the strict CuPy stand-in.

CI has no GPU: the worker process started here consumes the ``gpu`` queue with
``BLOCKREG_WORKER_DEVICE=gpu`` and ``BLOCKREG_TEST_ARRAY_MODULE=helpers.strict_cupy``, so it
selects its "device", holds the job's fixed image and plans there and computes every frame on the
stand-in's device arrays (which refuse any hidden host round trip), exactly the path a CuPy worker
takes.  Before it starts, a ``resources.device: gpu`` job stays queued and says why.
"""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import service_fakes as fakes

pytestmark = pytest.mark.integration


def _spec(path, device):
    return {"input": {"path": str(path)}, "fixed_index": 2, "preprocess": {"bias": 100},
            "params": {"gridsize": [3, 3], "maxshift": [3, 3], "lambda": 1e-3},
            "monitor": ["u", "mismatch"], "resources": {"device": device}}


def _start_gpu_worker(service):
    env = dict(service.worker_environment(), BLOCKREG_WORKER_DEVICE="gpu",
               BLOCKREG_TEST_ARRAY_MODULE="helpers.strict_cupy")
    log = open(service.log_dir / "worker-gpu-test.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "blockreg_services.worker", "worker", "--queues",
         "gpu", "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO",
         "--hostname", "gpu-test@%h"],
        env=env, cwd=service.home, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def test_a_gpu_job_waits_for_a_gpu_worker_then_runs_on_it(service, client):
    folder = service.data_dir / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    fakes.make_movie(folder / "gpu.npy", shape=(5, 40, 44), seed=6)
    cpu_job = client.submit(_spec(folder / "gpu.npy", "cpu"))
    gpu_job = client.submit(_spec(folder / "gpu.npy", "gpu"))
    status = client.status(gpu_job)
    assert status["queue"] == "gpu"
    time.sleep(3)                               # a few dispatcher rounds: still nobody to run it
    status = client.status(gpu_job)
    # dispatched to the gpu queue (the job is active), but no frame has started
    assert status["frames_done"] == 0
    assert {f["state"] for f in client.frames(gpu_job)} <= {"pending", "queued"}
    assert (status["waiting"], status["waiting_reason"]) == (True, "no live worker on queue gpu")

    worker = _start_gpu_worker(service)
    try:
        status = client.wait(gpu_job, timeout=120)
        assert status["state"] == "succeeded", status
        devices = {w["device"] for w in client.health()["workers"] if "gpu" in w["queues"]}
        assert devices == {"gpu:0 strict-cupy stand-in"}
        frames = client.frames(gpu_job)
        assert {f["worker"].split("@")[0] for f in frames} == {"gpu-test"}
        assert client.wait(cpu_job, timeout=120)["state"] == "succeeded"
        np.testing.assert_allclose(client.results(gpu_job)["u"][...],
                                   client.results(cpu_job)["u"][...], rtol=1e-6, atol=1e-9)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
