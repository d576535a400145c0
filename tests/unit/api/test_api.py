"""The coordinator's REST API through Flask's test client (SQLite, fake broker, toy algorithm).

The whole service path runs in-process: POST a spec -> store + rows -> dispatch_once -> the worker's
run_frames -> finalisation; results are checked against values computed directly from the movie.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from blockreg.db import queries
from blockreg.store import member, open_store

from helpers import service_fakes as fakes
from helpers.api_app import run_all, spec_for, toy_spec_for


def test_submit_run_and_inspect(app, client, broker, movie_path):
    movie = np.load(movie_path)
    roi = [[2, 22], [1, 19]]
    spec = toy_spec_for(movie_path, input={"path": str(movie_path), "roi": roi, "frames": [1, 11, 2]},
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
    np.testing.assert_array_equal(member(store, "fixed")[...], expected_fixed)
    # 5 frames: shards of ceil(5 / 16) = 1 frame, so the frames still spread over workers
    assert store["u"].shape == (5, 3, 2, 2) and store["u"].chunks == (1, 3, 2, 2)
    assert store["u"].shards == (1, 3, 2, 2) and store.attrs["blockreg"]["shard_frames"] == 1
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


def test_responses_validate_against_the_openapi_document(app, client, broker, movie_path):
    jsonschema = pytest.importorskip("jsonschema")
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)  # a well-formed OpenAPI 3.1 document
    # one request variant per registered algorithm, its params model among the schemas
    schemas = doc["components"]["schemas"]
    assert set(schemas["JobSpec"]["discriminator"]["mapping"]) == {
        "apertures", "apertures_mismatch", "rigid", "mean-shift"}
    assert "lambda" in schemas["AperturesParams"]["properties"]
    assert set(schemas["MeanShiftParams"]["properties"]) == {"gridsize"}
    for path in ("/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/frames",
                 "/api/v1/jobs/{job_id}/cancel", "/api/v1/health"):
        assert path in doc["paths"]

    def check(response, path, method, status):
        assert response.status_code == status, response.json
        content = doc["paths"][path][method]["responses"][str(status)]["content"]
        # the document's components at the root resolve its "#/components/schemas/..." refs
        schema = {**content["application/json"]["schema"], "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(response.json)
        return response.json

    created = check(client.post("/api/v1/jobs", json=toy_spec_for(movie_path)), "/api/v1/jobs", "post", 201)
    job_id = created["id"]
    check(client.post("/api/v1/jobs", json={}), "/api/v1/jobs", "post", 422)
    run_all(app, broker)
    job = check(client.get(f"/api/v1/jobs/{job_id}"), "/api/v1/jobs/{job_id}", "get", 200)
    assert job["state"] == "succeeded" and job["spec"]["name"] == "test"
    for key in ("created_at", "started_at", "finished_at"):  # ISO 8601 in UTC, as before
        assert job[key].endswith("Z") and "+" not in job[key]
    listed = check(client.get("/api/v1/jobs?state=succeeded"), "/api/v1/jobs", "get", 200)
    assert "spec" not in listed["jobs"][0]  # listings stay small
    frames = check(client.get(f"/api/v1/jobs/{job_id}/frames?limit=3"),
                   "/api/v1/jobs/{job_id}/frames", "get", 200)["frames"]
    assert [f["state"] for f in frames] == ["done"] * 3 and frames[0]["enqueued_at"].endswith("Z")
    assert set(frames[0]["scalars"]) == {"mismatch"}
    check(client.get("/api/v1/jobs/999"), "/api/v1/jobs/{job_id}", "get", 404)
    check(client.post(f"/api/v1/jobs/{job_id}/cancel"), "/api/v1/jobs/{job_id}/cancel", "post", 409)
    check(client.get("/api/v1/health"), "/api/v1/health", "get", 200)
    other = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    cancelled = check(client.post(f"/api/v1/jobs/{other}/cancel"), "/api/v1/jobs/{job_id}/cancel",
                      "post", 202)
    assert cancelled["state"] == "cancelled" and cancelled["elapsed_s"] is None
    # the query parameters' states are the enums' values
    params = doc["paths"]["/api/v1/jobs"]["get"]["parameters"]
    state = next(p for p in params if p["name"] == "state")["schema"]["$ref"].rsplit("/", 1)[1]
    assert doc["components"]["schemas"][state]["enum"] == [
        "queued", "running", "succeeded", "failed", "cancelled"]


def test_cancel(app, client, broker, movie_path):
    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    response = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.json["state"] == "cancelled"
    run_all(app, broker)
    assert broker.sent == []  # nothing is dispatched for a cancelled job
    again = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json["message"]
    frames = client.get(f"/api/v1/jobs/{job_id}/frames?state=done").json
    assert frames["total"] == 0


def test_cancel_stops_workers_midway(app, client, broker, movie_path):
    from blockreg.orchestrate.dispatch import dispatch_once
    from blockreg.orchestrate.frames import run_frames

    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    sessions = app.extensions["blockreg"].sessions
    with sessions() as session:
        dispatch_once(session, broker, max_batches=2)
    first, second = broker.sent[0][1][1], broker.sent[1][1][1]
    assert run_frames(job_id, first, worker="w", sessions=sessions)["done"] == len(first)
    client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert run_frames(job_id, second, worker="w", sessions=sessions) == {
        "done": 0, "failed": 0, "skipped": len(second)}
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "cancelled" and status["frames_done"] == len(first)


def test_failed_frames_fail_the_job_once_all_are_accounted_for(app, client, broker, tmp_path):
    movie = fakes.make_movie(tmp_path / "m.npy", shape=(6, 16, 16)).astype(np.float32)
    movie[4, 3, 3] = np.nan  # the toy algorithm raises on non-finite pixels
    np.save(tmp_path / "m.npy", movie)
    job_id = client.post("/api/v1/jobs", json=toy_spec_for(tmp_path / "m.npy", fixed_index=0)).json["id"]
    run_all(app, broker)
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "failed"
    assert (status["frames_done"], status["frames_failed"]) == (5, 1)
    assert "1 of 6 frames failed" in status["error"] and "frame 4" in status["error"]
    failed = client.get(f"/api/v1/jobs/{job_id}/frames?state=failed").json["frames"]
    assert [f["index"] for f in failed] == [4] and "FloatingPointError" in failed[0]["error"]


def test_redelivered_batch_changes_nothing(app, client, broker, movie_path):
    from blockreg.orchestrate.frames import run_frames

    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
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
    from blockreg.orchestrate.dispatch import dispatch_once

    client.post("/api/v1/jobs", json=toy_spec_for(movie_path))
    sessions = app.extensions["blockreg"].sessions
    with sessions() as session:
        assert dispatch_once(session, broker, max_batches=2) == 2
        # bounded: nothing more while two batches are outstanding
        assert dispatch_once(session, broker, max_batches=2) == 0
        # with a zero lease the outstanding frames count as lost and go out again
        assert dispatch_once(session, broker, max_batches=2,
                             queued_lease_s=0.0) == 2
    assert broker.sent[2][1] == broker.sent[0][1]


def test_broker_down_keeps_frames_pending(app, client, movie_path):
    from blockreg.orchestrate.dispatch import dispatch_once

    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    down = fakes.FakeBroker(fail_sends=True)
    with app.extensions["blockreg"].sessions() as session:
        assert dispatch_once(session, down, max_batches=2) == 0
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
    ids = [client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"] for _ in range(3)]
    listed = client.get("/api/v1/jobs?limit=2").json
    assert listed["total"] == 3 and [j["id"] for j in listed["jobs"]] == ids[::-1][:2]


def test_health(app, client, broker):
    assert client.get("/api/v1/health").json == {
        "status": "ok", "database": True, "broker": True, "version": app.config["VERSION"],
        "workers": []}
    broker.reachable = False
    response = client.get("/api/v1/health")
    assert response.status_code == 503 and response.json["broker"] is False


def test_spec_is_stored_and_round_trips(client, movie_path):
    from blockreg.jobspec import JobSpec

    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    stored = client.get(f"/api/v1/jobs/{job_id}").json["spec"]
    json.dumps(stored, allow_nan=False)  # PostgreSQL's JSON type accepts no Infinity/NaN
    assert JobSpec.model_validate(stored).params.lam == 0.01


def test_create_app_neither_migrates_nor_starts_anything(tmp_path):
    """The app factory only builds the app: `blockreg db upgrade` migrates, the dispatcher is
    its own process (tests/unit/services/test_dispatcher.py)."""
    import threading

    from blockreg_services.coordinator import create_app

    threads = threading.active_count()
    url = f"sqlite:///{tmp_path / 'db' / 'state.db'}"
    app = create_app({"DATABASE_URL": url, "CELERY": fakes.FakeBroker()})
    assert threading.active_count() == threads
    assert not (tmp_path / "db").exists()  # not even the database's folder
    # views only (the API, the report, data views, tune, the web pages): no background part
    assert {"api", "browse", "tune", "dashboard"} <= set(app.blueprints)
    app.extensions["blockreg"].engine.dispose()


def test_missing_store_fails_every_frame_with_the_reason(app, client, broker, movie_path):
    import shutil

    created = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json
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

    from blockreg.orchestrate.frames import run_frames
    from blockreg.orchestrate.dispatch import dispatch_once
    from blockreg_services.worker.tasks import STOP_ON

    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    sessions = app.extensions["blockreg"].sessions
    with sessions() as session:
        dispatch_once(session, broker, max_batches=1)
    batch = broker.sent[0][1][1]

    def too_slow(self, frame, t, wanted):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(fakes.MeanShiftAlgorithm, "run_frame", too_slow)
    counts = run_frames(job_id, batch, worker="w", sessions=sessions, stop_on=STOP_ON)
    assert counts == {"done": 0, "failed": 1, "skipped": 0}
    with sessions() as session:
        failed, _ = queries.list_frames(session, job_id, state="failed")
        assert [(f.index, f.error) for f in failed] == [(batch[0], "task time limit exceeded")]
        assert queries.count_frames(session, job_id, "queued") == 0
        assert queries.count_frames(session, job_id, "pending") == 11
