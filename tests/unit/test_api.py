"""The coordinator's REST API through Flask's test client (SQLite, fake broker, toy algorithm).

The whole service path runs in-process: POST a spec -> store + rows -> dispatch_once -> the worker's
run_frames -> finalisation; results are checked against values computed directly from the movie.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blockreg.db import ops, queries
from blockreg.store import open_store

from helpers import service_fakes as fakes


@pytest.fixture
def movie_path(tmp_path):
    path = tmp_path / "movie.npy"
    fakes.make_movie(path)
    return path


@pytest.fixture
def broker():
    return fakes.FakeBroker()


@pytest.fixture
def app(tmp_path, monkeypatch, broker):
    from blockreg_services.coordinator import create_app

    fakes.install(monkeypatch)
    app = create_app({
        "DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "DATA_DIR": str(tmp_path / "data"),
        "ALLOWED_ROOTS": None,
        "DISPATCHER": False,
        "CELERY": broker,
        "BATCH_FRAMES": 4,
        "MAX_BATCHES_PER_JOB": 2,
    })
    yield app
    app.extensions["blockreg"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def spec_for(path, **changes):
    spec = {"name": "test", "input": {"path": str(path)},
            "params": {"gridsize": [3, 2], "maxshift": [2, 2], "lambda": 0.01},
            "preprocess": {"bias": 100}}
    for key, value in changes.items():
        spec[key] = value
    return spec


def run_all(app, broker):
    """Dispatch and run every batch, as the dispatcher thread and Celery workers would."""
    from blockreg_services.coordinator.dispatcher import dispatch_once
    from blockreg_services.worker.tasks import run_frames

    sessions = app.extensions["blockreg"].sessions
    while True:
        with sessions() as session:
            sent = dispatch_once(session, broker, batch_frames=app.config["BATCH_FRAMES"],
                                 max_batches=app.config["MAX_BATCHES_PER_JOB"])
        if not sent:
            return
        for name, (job_id, frames), queue in broker.sent[-sent:]:
            assert name == "blockreg.register_frames" and queue == "cpu"
            run_frames(job_id, frames, worker="test-worker", sessions=sessions)


def test_submit_run_and_inspect(app, client, broker, movie_path):
    movie = np.load(movie_path)
    roi = [[2, 22], [1, 19]]
    spec = spec_for(movie_path, input={"path": str(movie_path), "roi": roi, "frames": [1, 11, 2]},
                    monitor=["u", "mismatch"])
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 201, response.json
    job_id = response.json["id"]
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job_id}")
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "queued" and status["frames_total"] == 5
    assert status["output_path"].endswith(f"job-{job_id}.zarr")

    store = open_store(status["output_path"])
    frames = list(range(1, 11, 2))
    fixed_index = frames[len(frames) // 2]  # default: the middle selected frame
    expected_fixed = fakes.shot_noise_flattened(movie[fixed_index, 2:22, 1:19], 100)
    np.testing.assert_array_equal(store["fixed"][...], expected_fixed)
    assert store["u"].shape == (5, 3, 2, 2) and store["u"].chunks == (1, 3, 2, 2)
    assert store.attrs["blockreg"]["frames"] == frames

    run_all(app, broker)
    # the dispatcher never had more than MAX_BATCHES_PER_JOB batches of 4 frames out at once
    assert all(len(args[1]) <= 4 for _, args, _ in broker.sent)

    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "succeeded", status
    assert (status["frames_done"], status["frames_failed"]) == (5, 0)
    assert status["finished_at"] is not None and status["elapsed_s"] >= 0
    u = open_store(status["output_path"])["u"][...]
    for i, t in enumerate(frames):
        np.testing.assert_allclose(u[i], fakes.expected_u(movie, t, fixed_index, roi, [3, 2], 100),
                                   rtol=1e-6)

    page = client.get(f"/api/v1/jobs/{job_id}/frames?limit=2&offset=1").json
    assert page["total"] == 5 and [f["index"] for f in page["frames"]] == [1, 2]
    window = fakes.shot_noise_flattened(movie[:, 2:22, 1:19], 100)
    for frame in page["frames"]:
        assert frame["state"] == "done" and frame["attempts"] == 1
        assert frame["source_t"] == frames[frame["index"]]
        diff = window[frame["source_t"]] - expected_fixed
        np.testing.assert_allclose(frame["scalars"]["mismatch"], np.mean(diff.astype(np.float64) ** 2),
                                   rtol=1e-6)
    assert client.get(f"/api/v1/jobs/{job_id}/frames?state=failed").json["total"] == 0


def test_responses_match_the_openapi_models(app, client, broker, movie_path):
    from blockreg_services.coordinator import openapi

    created = client.post("/api/v1/jobs", json=spec_for(movie_path)).json
    openapi.Created.model_validate(created)
    run_all(app, broker)
    openapi.Job.model_validate(client.get(f"/api/v1/jobs/{created['id']}").json)
    openapi.JobList.model_validate(client.get("/api/v1/jobs").json)
    openapi.FrameList.model_validate(client.get(f"/api/v1/jobs/{created['id']}/frames").json)
    openapi.Health.model_validate(client.get("/api/v1/health").json)
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)  # a well-formed OpenAPI 3.1 document
    assert "lambda" in doc["components"]["schemas"]["ParamsSpec"]["properties"]
    for path in ("/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/frames",
                 "/api/v1/jobs/{job_id}/cancel", "/api/v1/health"):
        assert path in doc["paths"]


@pytest.mark.parametrize("change, field", [
    ({"params": {"gridsize": [3, 2], "maxshift": [2, 2], "lambda": 0.01, "bogus": 1}}, "params.bogus"),
    ({"params": {"gridsize": [30, 2], "maxshift": [2, 2], "lambda": 0.01}}, "params.gridsize.0"),
    ({"params": {"gridsize": [3], "maxshift": [2], "lambda": 0.01}}, "params.gridsize"),
    ({"params": {"gridsize": [3, 2], "maxshift": [2, 2], "lambda": [1, 0.1]}}, "params.lambda"),
    ({"params": {"gridsize": [3, 2], "maxshift": [2, 2]}}, "params.lambda"),
    ({"fixed_index": 50}, "fixed_index"),
    ({"monitor": ["u", "nonsense"]}, "monitor.1"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_spec_is_422_naming_the_field(client, broker, movie_path, change, field):
    response = client.post("/api/v1/jobs", json=spec_for(movie_path, **change))
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json["errors"]], response.json
    assert client.get("/api/v1/jobs").json["total"] == 0  # nothing recorded, nothing queued
    assert broker.sent == []


def test_bad_input_is_422(client, tmp_path, movie_path):
    missing = client.post("/api/v1/jobs", json=spec_for(tmp_path / "nope.npy")).json
    assert missing["errors"][0]["field"] == "input.path" and "does not exist" in missing["errors"][0]["problem"]
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not an array")
    unreadable = client.post("/api/v1/jobs", json=spec_for(garbage))
    assert unreadable.status_code == 422
    assert unreadable.json["errors"][0]["field"] == "input.path"
    frames = client.post("/api/v1/jobs", json=spec_for(
        movie_path, input={"path": str(movie_path), "frames": [0, 40]}))
    assert [e["field"] for e in frames.json["errors"]] == ["input.frames"]


def test_malformed_body_is_400(client):
    response = client.post("/api/v1/jobs", data=b"{not json", content_type="application/json")
    assert response.status_code == 400 and response.json["errors"][0]["field"] == "body"
    listed = client.post("/api/v1/jobs", json=[1, 2])
    assert listed.status_code == 422 and listed.json["errors"][0]["field"] == "spec"


def test_allowed_roots(app, client, movie_path, tmp_path):
    app.config["ALLOWED_ROOTS"] = [str(tmp_path / "elsewhere")]
    response = client.post("/api/v1/jobs", json=spec_for(movie_path))
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "input.path"


def test_existing_output_is_rejected(client, movie_path, tmp_path):
    out = tmp_path / "out.zarr"
    out.mkdir()
    response = client.post("/api/v1/jobs", json=spec_for(movie_path, output={"path": str(out)}))
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "output.path"


def test_cancel(app, client, broker, movie_path):
    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    response = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.json["state"] == "cancelled"
    run_all(app, broker)
    assert broker.sent == []  # nothing is dispatched for a cancelled job
    again = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json["message"]
    frames = client.get(f"/api/v1/jobs/{job_id}/frames?state=done").json
    assert frames["total"] == 0


def test_cancel_stops_workers_midway(app, client, broker, movie_path):
    from blockreg_services.coordinator.dispatcher import dispatch_once
    from blockreg_services.worker.tasks import run_frames

    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    sessions = app.extensions["blockreg"].sessions
    with sessions() as session:
        dispatch_once(session, broker, batch_frames=4, max_batches=2)
    first, second = broker.sent[0][1][1], broker.sent[1][1][1]
    assert run_frames(job_id, first, worker="w", sessions=sessions)["done"] == 4
    client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert run_frames(job_id, second, worker="w", sessions=sessions) == {
        "done": 0, "failed": 0, "skipped": 4}
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "cancelled" and status["frames_done"] == 4


def test_failed_frames_fail_the_job_once_all_are_accounted_for(app, client, broker, tmp_path):
    movie = fakes.make_movie(tmp_path / "m.npy", shape=(6, 16, 16)).astype(np.float32)
    movie[4, 3, 3] = np.nan  # the toy algorithm raises on non-finite pixels
    np.save(tmp_path / "m.npy", movie)
    job_id = client.post("/api/v1/jobs", json=spec_for(tmp_path / "m.npy", fixed_index=0)).json["id"]
    run_all(app, broker)
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "failed"
    assert (status["frames_done"], status["frames_failed"]) == (5, 1)
    assert "1 of 6 frames failed" in status["error"] and "frame 4" in status["error"]
    failed = client.get(f"/api/v1/jobs/{job_id}/frames?state=failed").json["frames"]
    assert [f["index"] for f in failed] == [4] and "FloatingPointError" in failed[0]["error"]


def test_redelivered_batch_changes_nothing(app, client, broker, movie_path):
    from blockreg_services.worker.tasks import run_frames

    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    run_all(app, broker)
    before = client.get(f"/api/v1/jobs/{job_id}").json
    path = before["output_path"]
    u_before = open_store(path)["u"][...]
    name, (jid, frames), _ = broker.sent[0]
    counts = run_frames(jid, frames, worker="late", sessions=app.extensions["blockreg"].sessions)
    assert counts["skipped"] == len(frames)
    after = client.get(f"/api/v1/jobs/{job_id}").json
    assert after["frames_done"] == before["frames_done"] == 12
    assert after["finished_at"] == before["finished_at"]
    np.testing.assert_array_equal(open_store(path)["u"][...], u_before)


def test_lost_messages_are_sent_again(app, client, broker, movie_path):
    from blockreg_services.coordinator.dispatcher import dispatch_once

    client.post("/api/v1/jobs", json=spec_for(movie_path))
    sessions = app.extensions["blockreg"].sessions
    with sessions() as session:
        assert dispatch_once(session, broker, batch_frames=4, max_batches=2) == 2
        # bounded: nothing more while two batches are outstanding
        assert dispatch_once(session, broker, batch_frames=4, max_batches=2) == 0
        # with a zero lease the outstanding frames count as lost and go out again
        assert dispatch_once(session, broker, batch_frames=4, max_batches=2,
                             queued_lease_s=0.0) == 2
    assert broker.sent[2][1] == broker.sent[0][1]


def test_broker_down_keeps_frames_pending(app, client, movie_path):
    from blockreg_services.coordinator.dispatcher import dispatch_once

    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    down = fakes.FakeBroker(fail_sends=True)
    with app.extensions["blockreg"].sessions() as session:
        assert dispatch_once(session, down, batch_frames=4, max_batches=2) == 0
        assert queries.count_frames(session, job_id, "pending") == 12


def test_not_found_and_method_errors_are_json(client):
    for response, code in ((client.get("/api/v1/jobs/999"), 404),
                           (client.get("/api/v1/jobs/999/frames"), 404),
                           (client.post("/api/v1/jobs/999/cancel"), 404),
                           (client.get("/api/v1/nothing-here"), 404),
                           (client.delete("/api/v1/jobs"), 405)):
        assert response.status_code == code
        assert response.is_json and response.json["message"]


def test_bad_query_parameters_are_400(client):
    for url, field in (("/api/v1/jobs?limit=0", "limit"), ("/api/v1/jobs?offset=x", "offset"),
                       ("/api/v1/jobs?state=bogus", "state")):
        response = client.get(url)
        assert response.status_code == 400 and response.json["errors"][0]["field"] == field


def test_jobs_are_listed_newest_first(client, movie_path):
    ids = [client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"] for _ in range(3)]
    listed = client.get("/api/v1/jobs?limit=2").json
    assert listed["total"] == 3 and [j["id"] for j in listed["jobs"]] == ids[::-1][:2]


def test_health(app, client, broker):
    assert client.get("/api/v1/health").json == {
        "status": "ok", "database": True, "broker": True, "version": app.config["VERSION"]}
    broker.reachable = False
    response = client.get("/api/v1/health")
    assert response.status_code == 503 and response.json["broker"] is False


def test_spec_is_stored_and_round_trips(client, movie_path):
    from blockreg.jobspec import JobSpec

    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    stored = client.get(f"/api/v1/jobs/{job_id}").json["spec"]
    json.dumps(stored, allow_nan=False)  # PostgreSQL's JSON type accepts no Infinity/NaN
    assert JobSpec.model_validate(stored).params.lam == 0.01


def test_dispatcher_thread_sends_after_submit(tmp_path, monkeypatch, movie_path):
    """With the background dispatcher on, a submit is enqueued without waiting for a tick."""
    import time

    from blockreg_services.coordinator import create_app

    fakes.install(monkeypatch)
    broker = fakes.FakeBroker()
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'bg.db'}",
                      "DATA_DIR": str(tmp_path / "data"), "ALLOWED_ROOTS": None,
                      "CELERY": broker, "BATCH_FRAMES": 4, "MAX_BATCHES_PER_JOB": 2,
                      "DISPATCH_INTERVAL_S": 60.0})
    services = app.extensions["blockreg"]
    try:
        job_id = app.test_client().post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
        deadline = time.monotonic() + 10
        while len(broker.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [args for _, args, _ in broker.sent] == [(job_id, [0, 1, 2, 3]), (job_id, [4, 5, 6, 7])]
        assert app.test_client().get(f"/api/v1/jobs/{job_id}").json["state"] == "running"
    finally:
        services.dispatcher.stop()
        services.engine.dispose()
    assert not services.dispatcher.is_alive()


def test_missing_store_fails_every_frame_with_the_reason(app, client, broker, movie_path):
    import shutil

    created = client.post("/api/v1/jobs", json=spec_for(movie_path)).json
    shutil.rmtree(created["output_path"])  # e.g. the shared volume is not mounted on the worker
    run_all(app, broker)
    status = client.get(f"/api/v1/jobs/{created['id']}").json
    assert status["state"] == "failed" and status["frames_failed"] == 12
    assert "does not exist" in status["error"]


@pytest.mark.slow
def test_submit_of_100k_frames_records_without_sending(app, client, broker, tmp_path):
    """A 100,000-frame POST records every frame and sends nothing yet (its latency is measured
    by benchmarks/bench_service.py, not here)."""
    movie = tmp_path / "long.npy"
    np.save(movie, np.random.default_rng(0).integers(100, 200, size=(100_000, 8, 8)).astype(np.uint16))
    spec = {"input": {"path": str(movie)},
            "params": {"gridsize": [2, 2], "maxshift": [3, 3], "lambda": 0.1}}
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 201
    assert broker.sent == []  # submit only records; the dispatcher sends a bounded number later
    assert client.get(f"/api/v1/jobs/{response.json['id']}").json["frames_total"] == 100_000


def test_time_limit_fails_the_frame_and_releases_the_rest(app, client, broker, movie_path,
                                                           monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from blockreg_services.coordinator.dispatcher import dispatch_once
    from blockreg_services.worker.tasks import run_frames

    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    sessions = app.extensions["blockreg"].sessions
    with sessions() as session:
        dispatch_once(session, broker, batch_frames=4, max_batches=1)
    batch = broker.sent[0][1][1]

    def too_slow(self, frame, t, wanted):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(fakes.MeanShiftAlgorithm, "run_frame", too_slow)
    counts = run_frames(job_id, batch, worker="w", sessions=sessions)
    assert counts == {"done": 0, "failed": 1, "skipped": 0}
    with sessions() as session:
        assert queries.count_frames(session, job_id, "failed") == 1
        assert queries.count_frames(session, job_id, "queued") == 0
        assert queries.count_frames(session, job_id, "pending") == 11


def test_submit_rejects_what_would_only_fail_later(client, broker, tmp_path, movie_path):
    # Each of these used to be accepted (201) and could only fail in the workers, or worse.
    nan_movie = tmp_path / "nan.npy"
    np.save(nan_movie, np.full((3, 40, 40), np.nan, dtype=np.float32))
    base = {"params": {"gridsize": [3, 3], "maxshift": [4, 4], "lambda": 0.01}}
    cases = {
        "fixed_index": {**base, "input": {"path": str(nan_movie)}},
        "params.overlap": {"input": {"path": str(movie_path)},
                           "params": {**base["params"], "overlap": 10**9}},
        "output.path": {**base, "input": {"path": str(movie_path)}, "output": {"path": "rel.zarr"}},
        "input.path": {**base, "input": {"path": "relative/movie.npy"}},
    }
    for field, spec in cases.items():
        response = client.post("/api/v1/jobs", json=spec)
        assert response.status_code == 422, (field, response.json)
        assert [e["field"] for e in response.json["errors"]] == [field], response.json
    assert client.get("/api/v1/jobs").json["jobs"] == []
    assert broker.sent == []


@pytest.mark.parametrize("url", ["/api/v1/jobs/{}", "/api/v1/jobs/{}/frames"])
@pytest.mark.parametrize("job_id", [2**31, 2**70])
def test_huge_job_id_is_404(client, url, job_id):
    # an id past the INTEGER column used to reach the database and overflow there (500)
    response = client.get(url.format(job_id))
    assert response.status_code == 404
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 404


@pytest.mark.parametrize("field", ["input", "output"])
@pytest.mark.parametrize("bad", ["~nosuchuser_blockreg/x.npy", "/tmp/a\x00b.npy"])
def test_unusable_paths_are_422_naming_the_field(client, movie_path, field, bad):
    spec = spec_for(movie_path, **{field: {"path": bad}})
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == [f"{field}.path"]


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_uncreatable_output_is_422_and_leaves_nothing(app, client, movie_path, tmp_path, where):
    if where == "under_a_file":
        (tmp_path / "plain").write_text("x")
        out = tmp_path / "plain" / "sub" / "out.zarr"
    else:
        out = "/proc/blockreg-out.zarr"
    response = client.post("/api/v1/jobs", json=spec_for(movie_path, output={"path": str(out)}))
    assert response.status_code == 422, response.json
    assert [e["field"] for e in response.json["errors"]] == ["output.path"]
    assert not Path(out).exists() and not Path(out).parent.exists() or where == "proc"
    with app.extensions["blockreg"].sessions() as session:
        assert queries.list_jobs(session)[1] == 0


def test_failed_store_removes_the_folders_it_made(app, client, movie_path, tmp_path, monkeypatch):
    import blockreg.store

    def broken(path, *args, **kwargs):
        Path(path).mkdir()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blockreg.store, "create_store", broken)
    out = tmp_path / "new" / "deeper" / "out.zarr"
    response = client.post("/api/v1/jobs", json=spec_for(movie_path, output={"path": str(out)}))
    assert response.status_code == 422 and "No space" in response.json["errors"][0]["problem"]
    assert not (tmp_path / "new").exists()


def test_output_created_by_a_racing_submit_is_409_and_kept(app, client, movie_path, tmp_path,
                                                           monkeypatch):
    out = tmp_path / "out.zarr"
    real_create_job = ops.create_job

    def racing(*args, **kwargs):  # another submit creates the store after validation
        out.mkdir()
        (out / "theirs").write_text("keep")
        return real_create_job(*args, **kwargs)

    monkeypatch.setattr(ops, "create_job", racing)
    response = client.post("/api/v1/jobs", json=spec_for(movie_path, output={"path": str(out)}))
    assert response.status_code == 409
    assert response.json["errors"][0]["field"] == "output.path"
    assert (out / "theirs").read_text() == "keep"


def test_default_output_avoids_a_leftover_store(app, client, broker, movie_path, tmp_path):
    # a data folder kept from an earlier database already holds job-1.zarr (and -2)
    results = tmp_path / "data" / "results"
    for name in ("job-1.zarr", "job-1-2.zarr"):
        (results / name).mkdir(parents=True)
        (results / name / "old").write_text("keep")
    response = client.post("/api/v1/jobs", json=spec_for(movie_path))
    assert response.status_code == 201, response.json
    job_id = response.json["id"]
    assert job_id == 1  # a fresh database
    assert response.json["output_path"] == str((results / "job-1-3.zarr").resolve())
    assert client.get(f"/api/v1/jobs/{job_id}").json["output_path"] == response.json["output_path"]
    open_store(response.json["output_path"])  # the store is where the job says
    assert (results / "job-1.zarr" / "old").read_text() == "keep"
    run_all(app, broker)
    assert client.get(f"/api/v1/jobs/{job_id}").json["state"] == "succeeded"
