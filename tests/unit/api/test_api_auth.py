"""Authentication and ownership on /api/v1: two users and an admin (issue 8).

Every route under /api/v1 but health answers 401 without a valid Bearer token; a user reads,
lists, inspects the frames of, and cancels only their own jobs (another's answers 404, like a job
that does not exist, and stays unchanged); an admin sees and cancels all.
"""
from __future__ import annotations

import re

import pytest

from blockreg import users
from blockreg.states import JobState

from helpers.api_app import toy_spec_for


@pytest.fixture
def auth_app(app, tmp_path):
    app.config.update(AUTH=True, ALLOWED_ROOTS=[str(tmp_path)])
    return app


@pytest.fixture
def tokens(auth_app):
    sessions = auth_app.extensions["blockreg"].sessions
    with sessions() as session:
        return {"alice": users.add_user(session, "alice")[1],
                "bob": users.add_user(session, "bob")[1],
                "root": users.add_user(session, "root", admin=True)[1]}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def jobs(auth_app, client, tokens, movie_path, tmp_path):
    """One job of alice's and one of bob's."""
    ids = {}
    for who in ("alice", "bob"):
        spec = toy_spec_for(movie_path, output={"path": str(tmp_path / f"{who}.zarr")})
        response = client.post("/api/v1/jobs", json=spec, headers=bearer(tokens[who]))
        assert response.status_code == 201, response.get_json()
        ids[who] = response.get_json()["id"]
    return ids


def api_routes(app):
    """(method, URL) of every /api/v1 route, path parameters filled with 1."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        url = re.sub(r"<(?:[^:>]+:)?[^>]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, url, rule.endpoint


def test_every_route_but_health_needs_a_valid_token(auth_app, client, tokens):
    routes = list(api_routes(auth_app))
    assert {e for _, _, e in routes} >= {"api.submit_job", "api.list_jobs", "api.get_job",
                                         "api.list_frames", "api.cancel_job"}
    for method, url, endpoint in routes:
        for headers in ({}, bearer("brk_not-a-token"), {"Authorization": "Basic YTpi"},
                        {"Authorization": f"Bearer {tokens['alice']}x"}):
            response = client.open(url, method=method, headers=headers, json={})
            if endpoint == "api.health":
                assert response.status_code != 401, url
            else:
                assert response.status_code == 401, (method, url, headers)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "authentication required" in response.get_json()["message"]


def test_the_job_records_its_owner(auth_app, jobs):
    from blockreg.db import queries

    with auth_app.extensions["blockreg"].sessions() as session:
        owners = {who: queries.get_job(session, job_id).owner_id for who, job_id in jobs.items()}
    assert None not in owners.values() and owners["alice"] != owners["bob"]


def _job_routes(app):
    """Every route about one job (read, frames, report, pictures, cancel...)."""
    return [(method, url, endpoint) for method, url, endpoint in api_routes(app)
            if "/jobs/1" in url]


def test_another_users_job_is_not_found_and_unchanged(auth_app, client, tokens, jobs):
    alice, bob = bearer(tokens["alice"]), bearer(tokens["bob"])
    before = client.get(f"/api/v1/jobs/{jobs['bob']}", headers=bob).get_json()
    frames_before = client.get(f"/api/v1/jobs/{jobs['bob']}/frames", headers=bob).get_json()
    answered = set()  # routes that answer alice on her own job: refused on bob's by ownership
    for method, url, endpoint in _job_routes(auth_app):
        theirs = client.open(url.replace("/jobs/1", f"/jobs/{jobs['bob']}", 1), method=method,
                             headers=alice, json={})
        assert theirs.status_code in (403, 404), (method, url)
        mine = client.open(url.replace("/jobs/1", f"/jobs/{jobs['alice']}", 1), method=method,
                           headers=alice, json={})
        if mine.status_code < 400:
            answered.add(endpoint)
    assert {"api.get_job", "api.list_frames", "api.cancel_job"} <= answered
    # bob's job is untouched, and reads the same to him
    after = client.get(f"/api/v1/jobs/{jobs['bob']}", headers=bob).get_json()
    assert after["state"] == before["state"] == JobState.QUEUED.value
    assert client.get(f"/api/v1/jobs/{jobs['bob']}/frames", headers=bob).get_json() == frames_before
    # a missing job and another's read alike
    missing = client.get("/api/v1/jobs/999999", headers=alice).get_json()["message"]
    theirs = client.get(f"/api/v1/jobs/{jobs['bob']}", headers=alice).get_json()["message"]
    assert theirs == missing.replace("999999", str(jobs["bob"]))


def test_a_report_route_if_any_refuses_another_users_job(auth_app, client, tokens, jobs):
    reports = [(m, u) for m, u, e in _job_routes(auth_app) if "report" in u]
    if not reports:
        pytest.skip("no report route in this version of the API")
    for method, url in reports:
        response = client.open(url.replace("/jobs/1", f"/jobs/{jobs['bob']}", 1), method=method,
                               headers=bearer(tokens["alice"]))
        assert response.status_code in (403, 404)


def test_listing_shows_only_ones_own_jobs(client, tokens, jobs):
    for who in ("alice", "bob"):
        body = client.get("/api/v1/jobs", headers=bearer(tokens[who])).get_json()
        assert [job["id"] for job in body["jobs"]] == [jobs[who]] and body["total"] == 1


def test_admin_sees_and_cancels_every_job(client, tokens, jobs):
    root = bearer(tokens["root"])
    body = client.get("/api/v1/jobs", headers=root).get_json()
    assert sorted(job["id"] for job in body["jobs"]) == sorted(jobs.values())
    for job_id in jobs.values():
        assert client.get(f"/api/v1/jobs/{job_id}", headers=root).status_code == 200
        assert client.get(f"/api/v1/jobs/{job_id}/frames", headers=root).status_code == 200
    assert client.post(f"/api/v1/jobs/{jobs['bob']}/cancel", headers=root).status_code == 202
    state = client.get(f"/api/v1/jobs/{jobs['bob']}", headers=bearer(tokens["bob"])).get_json()
    assert state["state"] == JobState.CANCELLED.value


def test_owner_cancels_own_job(client, tokens, jobs):
    alice = bearer(tokens["alice"])
    assert client.post(f"/api/v1/jobs/{jobs['alice']}/cancel", headers=alice).status_code == 202


def test_rotated_or_removed_user_is_refused(auth_app, client, tokens, jobs):
    sessions = auth_app.extensions["blockreg"].sessions
    with sessions() as session:
        new = users.rotate_token(session, "alice")
    assert client.get("/api/v1/jobs", headers=bearer(tokens["alice"])).status_code == 401
    assert client.get("/api/v1/jobs", headers=bearer(new)).status_code == 200
    with sessions() as session:
        users.remove_user(session, "bob")
    assert client.get("/api/v1/jobs", headers=bearer(tokens["bob"])).status_code == 401
    # bob's job stays, visible to the admin only
    body = client.get("/api/v1/jobs", headers=bearer(tokens["root"])).get_json()
    assert jobs["bob"] in [job["id"] for job in body["jobs"]]


def test_single_user_mode_needs_no_token(app, client, movie_path):
    assert client.get("/api/v1/jobs").status_code == 200
    response = client.post("/api/v1/jobs", json=toy_spec_for(movie_path))
    assert response.status_code == 201


def test_auth_without_data_roots_is_refused(tmp_path, broker):
    from blockreg_services.coordinator import create_app

    with pytest.raises(ValueError, match="BLOCKREG_AUTH needs at least one data root"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "AUTH": True,
                    "DATA_ROOTS": None, "ALLOWED_ROOTS": None, "CELERY": broker})


def test_a_job_past_its_owners_job_limit_says_user_limit(auth_app, client, tokens, movie_path,
                                                        tmp_path, monkeypatch):
    from blockreg.db import workers

    monkeypatch.setenv("BLOCKREG_USER_MAX_JOBS", "1")
    with auth_app.extensions["blockreg"].sessions() as session:  # a live worker on the queue
        workers.record_heartbeat(session, hostname="w@test", pid=1, queues="cpu")
    alice = bearer(tokens["alice"])
    ids = []
    for n in range(2):
        spec = toy_spec_for(movie_path, output={"path": str(tmp_path / f"a{n}.zarr")})
        ids.append(client.post("/api/v1/jobs", json=spec, headers=alice).get_json()["id"])
    first, second = (client.get(f"/api/v1/jobs/{i}", headers=alice).get_json() for i in ids)
    assert first["waiting_reason"] is None
    assert second["waiting"] is True and second["waiting_reason"] == "user limit"
    # bob's first job is not held back by alice's
    spec = toy_spec_for(movie_path, output={"path": str(tmp_path / "b.zarr")})
    bob = bearer(tokens["bob"])
    job = client.post("/api/v1/jobs", json=spec, headers=bob).get_json()["id"]
    assert client.get(f"/api/v1/jobs/{job}", headers=bob).get_json()["waiting_reason"] is None


def test_the_openapi_document_declares_the_bearer_token():
    from blockreg_services.coordinator.openapi import build_openapi

    doc = build_openapi()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path == "/api/v1/health":  # open to probes
                assert operation["security"] == [] and "401" not in operation["responses"]
            else:
                assert "401" in operation["responses"], (method, path)


def test_another_users_tune_batch_reads_like_a_missing_one(auth_app, client, tokens, movie_path):
    from helpers.api_app import spec_for

    base = spec_for(movie_path)
    del base["params"]["lambda"]
    created = client.post("/api/v1/tune", json={"spec": base, "frames": [2, 4],
                                                 "grid": {"lambda": [0.01]}},
                          headers=bearer(tokens["bob"]))
    assert created.status_code == 201, created.get_json()
    tune_id = created.get_json()["id"]
    assert client.get(f"/api/v1/tune/{tune_id}", headers=bearer(tokens["bob"])).status_code == 200
    theirs = client.get(f"/api/v1/tune/{tune_id}", headers=bearer(tokens["alice"]))
    missing = client.get("/api/v1/tune/999999", headers=bearer(tokens["alice"]))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json()["message"] == missing.get_json()["message"].replace("999999",
                                                                                str(tune_id))


def test_another_users_job_as_a_warp_source_reads_as_a_missing_one(auth_app, client, tokens,
                                                                   movie_path, tmp_path):
    spec = toy_spec_for(movie_path, output={"path": str(tmp_path / "alice.zarr")})
    alice = bearer(tokens["alice"])
    job_id = client.post("/api/v1/jobs", json=spec, headers=alice).get_json()["id"]
    answers = [client.post("/api/v1/jobs", json={"kind": "warp", "source": {"job": source}},
                           headers=bearer(tokens["bob"])) for source in (job_id, 999)]
    assert [a.status_code for a in answers] == [422, 422]
    theirs, missing = ([e for e in a.get_json()["errors"] if e["field"] == "source.job"]
                       for a in answers)
    assert theirs == [{"field": "source.job", "problem": f"no job {job_id}"}]
    assert missing == [{"field": "source.job", "problem": "no job 999"}]
