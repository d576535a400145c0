"""A job's status says what it waits for (no live worker on its queue, broker unreachable)."""
from __future__ import annotations

from blockreg.db import workers
from blockreg_services.coordinator.waiting import waiting_reason
from helpers.api_app import spec_for


def test_waiting_reason_names_what_is_missing():
    assert waiting_reason("running", "cpu", {"cpu"}, True) is None
    assert waiting_reason("running", "gpu", {"cpu"}, True) == "no live worker on queue gpu"
    assert waiting_reason("queued", "cpu", {"cpu"}, False) == "broker unreachable"
    assert waiting_reason("succeeded", "cpu", set(), False) is None


def test_a_job_without_worker_says_so_and_stops_saying_so_once_one_beats(client, app, movie_path,
                                                                          monkeypatch):
    services = app.extensions["blockreg"]
    monkeypatch.setattr(type(services), "broker_reachable", lambda self, timeout=2.0: True)
    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    body = client.get(f"/api/v1/jobs/{job_id}").json
    assert (body["waiting"], body["waiting_reason"]) == (True, "no live worker on queue cpu")
    assert client.get("/api/v1/jobs").json["jobs"][0]["waiting_reason"] == \
        "no live worker on queue cpu"
    with services.sessions() as session:
        workers.record_heartbeat(session, hostname="w@h:1", pid=1, queues="cpu")
    body = client.get(f"/api/v1/jobs/{job_id}").json
    assert (body["waiting"], body["waiting_reason"]) == (False, None)


def test_a_job_whose_broker_is_down_says_so(client, app, movie_path, monkeypatch):
    services = app.extensions["blockreg"]
    monkeypatch.setattr(type(services), "broker_reachable", lambda self, timeout=2.0: False)
    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    assert client.get(f"/api/v1/jobs/{job_id}").json["waiting_reason"] == "broker unreachable"


def test_a_listing_tells_the_user_limit_in_as_many_queries_for_many_jobs(client, app, tmp_path,
                                                                         movie_path, monkeypatch):
    from sqlalchemy import event

    services = app.extensions["blockreg"]
    monkeypatch.setattr(type(services), "broker_reachable", lambda self, timeout=2.0: True)
    monkeypatch.setenv("BLOCKREG_USER_MAX_JOBS", "2")
    with services.sessions() as session:
        workers.record_heartbeat(session, hostname="w@h:1", pid=1, queues="cpu")
    statements = []
    event.listen(services.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *a: statements.append(statement))
    counts = []
    for n in range(6):
        spec = spec_for(movie_path, output={"path": str(tmp_path / f"o{n}.zarr")})
        assert client.post("/api/v1/jobs", json=spec).status_code == 201
        if n in (2, 5):
            statements.clear()
            jobs = client.get("/api/v1/jobs").json["jobs"]
            counts.append(len(statements))
    reasons = [job["waiting_reason"] for job in reversed(jobs)]  # oldest first
    assert reasons == [None, None] + ["user limit"] * 4
    assert counts[0] == counts[1]  # three jobs or six: the same queries
