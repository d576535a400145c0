"""A worker meeting EIO/ESTALE while reading frames still completes them (retried with backoff);
a frame whose input stays unreadable fails with the error instead of hanging."""
from __future__ import annotations

import errno

from helpers.api_app import run_all, toy_spec_for


def test_a_flaky_file_system_does_not_fail_frames(app, client, broker, movie_path, monkeypatch):
    import blockreg.jobs
    from blockreg.orchestrate import retry

    monkeypatch.setattr(retry, "DELAYS_S", (0.0, 0.0, 0.0))  # 4 attempts, no waiting
    real, failures = blockreg.jobs.read_frame, {"left": 0}

    def flaky_read(plan, t):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.ESTALE if failures["left"] % 2 else errno.EIO, "flaky NFS")
        return real(plan, t)

    def run_job(failing):
        monkeypatch.setattr(blockreg.jobs, "read_frame", real)  # the submit reads the fixed frame
        job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
        monkeypatch.setattr(blockreg.jobs, "read_frame", flaky_read)
        failures["left"] = failing
        run_all(app, broker)
        return client.get(f"/api/v1/jobs/{job_id}").json

    status = run_job(failing=3)  # three failures of one read, the fourth attempt succeeds
    assert failures["left"] == 0
    assert (status["state"], status["frames_failed"]) == ("succeeded", 0), status
    status = run_job(failing=10**6)  # unreadable for good: frames fail with the error
    assert status["state"] == "failed" and "flaky NFS" in status["error"]
