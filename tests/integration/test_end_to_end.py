"""End to end on the real parts: PostgreSQL, Redis, the coordinator and two Celery worker processes.

A job submitted over HTTP must compute exactly what the in-process runner computes for the same
spec, record every frame and its scalars in the database, finish exactly once, and a bad spec must
be refused with the field named and nothing recorded or queued.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

pytestmark = pytest.mark.integration

SHAPE, NFRAMES = (96, 96), 12


def _spec(movie, **changes) -> dict:
    spec = {
        "input": {"path": str(movie)},
        "fixed_index": 0,
        "preprocess": {"bias": 100.0, "sigma_lp": 1.0, "sigma_hp": 12.0},
        "params": {"gridsize": [3, 3], "maxshift": [6, 6], "lambda": 1e-3},
        "monitor": ["u", "mismatch"],
    }
    spec.update(changes)
    return spec


@pytest.fixture(scope="module")
def movie(service):
    from blockreg.synthetic import make_movie

    folder = service.data_dir / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    frames, _, _ = make_movie(SHAPE, NFRAMES, max_translation=3, max_local=1.5, seed=1)
    np.save(folder / "movie.npy", frames)
    return folder / "movie.npy"


@pytest.fixture(scope="module")
def engine(database_url):
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _rows(engine, statement):
    with engine.connect() as conn:
        return conn.execute(statement).all()


@pytest.fixture(scope="module")
def finished_job(client, movie):
    """One job submitted through the API and waited for."""
    spec = _spec(movie)
    job_id = client.submit(spec)
    status = client.wait(job_id, timeout=180)
    return job_id, spec, status


def test_submitted_job_succeeds_with_every_frame_done(finished_job):
    job_id, _, status = finished_job
    assert status["state"] == "succeeded", status
    assert status["frames_total"] == NFRAMES
    assert status["frames_done"] == NFRAMES
    assert status["frames_failed"] == 0


def test_service_u_equals_the_inprocess_result(finished_job, client):
    from blockreg.jobs import run_inprocess

    job_id, spec, _ = finished_job
    results = client.results(job_id)
    expected = run_inprocess(spec)
    u = np.asarray(results["u"][:])
    assert u.shape == expected["u"].shape == (NFRAMES, 3, 3, 2)
    assert np.all(np.isfinite(u))
    # same pixels, same preprocessing, same algorithm: equal up to float rounding
    np.testing.assert_allclose(u, expected["u"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(results["mismatch"][:]), expected["mismatch"],
                               rtol=1e-6, atol=1e-9)


def test_frame_rows_and_scalars_are_in_the_database(finished_job, client, engine):
    from sqlalchemy import select

    from blockreg.db.models import Frame, FrameScalar

    job_id, _, _ = finished_job
    frames = _rows(engine, select(Frame.index, Frame.state, Frame.attempts)
                   .where(Frame.job_id == job_id).order_by(Frame.index))
    assert [f.index for f in frames] == list(range(NFRAMES))
    assert {f.state for f in frames} == {"done"}
    assert all(f.attempts >= 1 for f in frames)
    # the scalar monitored per frame is in the DB, with the value written to the store
    scalars = dict(_rows(engine, select(FrameScalar.index, FrameScalar.value)
                         .where(FrameScalar.job_id == job_id, FrameScalar.name == "mismatch")))
    stored = np.asarray(client.results(job_id)["mismatch"][:])
    assert sorted(scalars) == list(range(NFRAMES))
    np.testing.assert_allclose([scalars[i] for i in range(NFRAMES)], stored, rtol=1e-6)
    # and the API pages through the same rows
    listed = client.frames(job_id)
    items = listed["items"] if isinstance(listed, dict) else listed
    assert len(items) == NFRAMES


def test_job_is_finalised_exactly_once(finished_job, service, engine):
    from sqlalchemy import select

    from blockreg.db.models import Job

    job_id, _, _ = finished_job
    (job,) = _rows(engine, select(Job.state, Job.finished_at).where(Job.id == job_id))
    assert job.state == "succeeded" and job.finished_at is not None
    logs = "".join(p.read_text(errors="replace") for p in service.log_dir.glob("worker-*.log"))
    assert logs.count(f"job {job_id} finished: succeeded") == 1
    # both workers took part (the frames were spread over the queue)
    assert all(f"job {job_id} frames" in p.read_text(errors="replace")
               for p in service.log_dir.glob("worker-*.log"))


@pytest.mark.parametrize("change, field", [
    ({"params": {"gridsize": [200, 3], "maxshift": [6, 6], "lambda": 1e-3}}, "params.gridsize"),
    ({"input": {"path": "MOVIE", "frames": [0, 99]}}, "input.frames"),
    ({"input": {"path": "/nonexistent/movie.npy"}}, "input.path"),
    ({"input": {"path": "/etc/hostname"}}, "input.path"),  # outside the allowed roots
    ({"params": {"gridsize": [3, 3], "maxshift": [6, 6], "lambda": -1}}, "params.lambda"),
    ({"monitor": ["u", "nonsense"]}, "monitor"),
    ({"bogus": True}, "bogus"),
], ids=["gridsize", "frames", "missing-input", "outside-roots", "lambda", "monitor", "unknown"])
def test_bad_spec_is_refused_naming_the_field_and_nothing_is_recorded(service, movie, engine,
                                                                      change, field):
    from sqlalchemy import func, select

    from blockreg.db.models import Frame, Job

    spec = _spec(movie, **change)
    if spec["input"]["path"] == "MOVIE":
        spec["input"]["path"] = str(movie)
    before = _rows(engine, select(func.count(Job.id)))[0][0], _rows(engine, select(func.count()).select_from(Frame))[0][0]
    response = requests.post(f"{service.url}/api/v1/jobs", json=spec, timeout=30)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"]
    assert any(e["field"].startswith(field) for e in body["errors"]), body
    after = _rows(engine, select(func.count(Job.id)))[0][0], _rows(engine, select(func.count()).select_from(Frame))[0][0]
    assert after == before


@pytest.mark.parametrize("body", ["not json", "[1, 2]"])
def test_malformed_body_is_a_4xx_json_error(service, body):
    response = requests.post(f"{service.url}/api/v1/jobs", data=body, timeout=30,
                             headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert response.json()["message"]


def test_unknown_job_is_404(client):
    from blockreg.client import ApiError

    with pytest.raises(ApiError) as info:
        client.status(10**9)
    assert "404" in str(info.value) or getattr(info.value, "status_code", None) == 404


def test_cancel_stops_a_job(client, service, movie):
    from blockreg.synthetic import make_movie

    frames, _, _ = make_movie(SHAPE, 60, max_translation=3, max_local=1.5, seed=2)
    long_movie = service.data_dir / "inputs" / "long.npy"
    np.save(long_movie, frames)
    job_id = client.submit(_spec(long_movie))
    client.cancel(job_id)
    status = client.wait(job_id, timeout=60)
    assert status["state"] == "cancelled"
    # frames already running finish; the rest never run, and the job stays cancelled
    time.sleep(3)
    later = client.status(job_id)
    assert later["state"] == "cancelled"
    assert later["frames_done"] < later["frames_total"]


def _blockreg(*args, server, cwd):
    env = dict(os.environ, BLOCKREG_SERVER=server)
    return subprocess.run([sys.executable, "-m", "blockreg_services.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=240)


def test_cli_submit_bad_spec_exits_2_naming_the_field(service, movie, tmp_path):
    spec = _spec(movie, params={"gridsize": [3, 3], "maxshift": [100, 6], "lambda": 1e-3})
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    result = _blockreg("submit", "bad.json", server=service.url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "params.maxshift.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_submit_wait_status_and_list(service, movie, tmp_path):
    import yaml

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(_spec(movie)))
    result = _blockreg("submit", "spec.yaml", "--wait", server=service.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout.strip())
    assert f"{NFRAMES}/{NFRAMES} frames" in result.stderr
    status = _blockreg("status", str(job_id), server=service.url, cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "succeeded"
    listing = _blockreg("list", server=service.url, cwd=tmp_path)
    assert listing.returncode == 0
    assert any(line.split()[:2] == [str(job_id), "succeeded"] for line in listing.stdout.splitlines())
    missing = _blockreg("status", str(10**9), server=service.url, cwd=tmp_path)
    assert missing.returncode == 2 and "404" in missing.stderr
