"""GET /api/v1/jobs/<id>/report: the report the finished job stored, as JSON or one HTML page."""
from __future__ import annotations

import pytest

from helpers.api_app import run_all, spec_for, toy_spec_for


def test_finished_job_serves_its_report_as_json_and_html(app, client, broker, movie_path,
                                                        job_reports):
    pytest.importorskip("matplotlib")
    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path, fixed_index=3)).json["id"]
    running = client.get(f"/api/v1/jobs/{job_id}/report")
    assert running.status_code == 409 and "computed when it finishes" in running.json["message"]
    run_all(app, broker)  # the worker that finishes the job computes the report
    assert client.get(f"/api/v1/jobs/{job_id}").json["state"] == "succeeded"

    answer = client.get(f"/api/v1/jobs/{job_id}/report")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    body = answer.json
    assert body["job_id"] == job_id
    summary = body["report"]["summary"]
    assert summary["frames"] == 12 and summary["frames_with_results"] == 12
    assert summary["correlation_after_median"] is not None

    for response in (client.get(f"/api/v1/jobs/{job_id}/report?format=html"),
                     client.get(f"/api/v1/jobs/{job_id}/report",
                                headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})):
        assert response.status_code == 200 and response.mimetype == "text/html"
        page = response.get_data(as_text=True)
        assert page.lstrip().lower().startswith("<!doctype html")
        assert "data:image/png;base64," in page and "http://" not in page
        # served from the API's origin: whatever got into the page, no script of it runs there
        policy = response.headers.get("Content-Security-Policy", "")
        assert "sandbox" in policy and "default-src 'none'" in policy

    bad = client.get(f"/api/v1/jobs/{job_id}/report?format=pdf")
    assert bad.status_code == 400 and bad.json["errors"][0]["field"] == "format"


def test_report_route_is_in_the_openapi_document(client):
    doc = client.get("/api/v1/openapi.json").json
    get = doc["paths"]["/api/v1/jobs/{job_id}/report"]["get"]
    assert set(get["responses"]["200"]["content"]) == {"application/json", "text/html"}
    assert "QualityReport" in doc["components"]["schemas"]


def test_cancelled_and_unknown_jobs_have_no_report(app, client, broker, movie_path):
    assert client.get("/api/v1/jobs/999/report").status_code == 404
    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    client.post(f"/api/v1/jobs/{job_id}/cancel")
    answer = client.get(f"/api/v1/jobs/{job_id}/report")
    assert answer.status_code == 404 and "cancelled" in answer.json["message"]


def test_a_report_that_failed_is_a_404_with_the_reason(app, client, broker, movie_path,
                                                       monkeypatch, job_reports):
    from blockreg import qc

    def broken(path, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(qc, "write_report", broken)
    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    run_all(app, broker)
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "succeeded"  # the report never fails the job
    answer = client.get(f"/api/v1/jobs/{job_id}/report")
    assert answer.status_code == 404 and "disk on fire" in answer.json["message"]


def test_an_unreadable_results_store_is_a_404_not_a_500(app, client, broker, movie_path,
                                                        monkeypatch):
    from blockreg import qc

    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    run_all(app, broker)

    def unreadable(path, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(qc, "load_report", unreadable)
    answer = client.get(f"/api/v1/jobs/{job_id}/report")
    assert answer.status_code == 404 and "cannot be read" in answer.json["message"]
