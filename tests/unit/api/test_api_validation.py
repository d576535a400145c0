"""The coordinator's REST API: bad input is a 4xx naming the field, and leaves nothing behind."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blockreg.db import ops, queries
from blockreg.store import open_store

from helpers.api_app import run_all, spec_for


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


@pytest.mark.parametrize("outcome", ["succeeds", "fails"])
def test_submit_never_touches_a_user_folder_beside_the_output(app, client, movie_path, tmp_path,
                                                              monkeypatch, outcome):
    # the name the coordinator once used for its staging folder (and removed with its contents)
    out = tmp_path / "out.zarr"
    theirs = tmp_path / ".out.zarr.creating"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep")
    if outcome == "fails":
        import blockreg.store

        def full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(blockreg.store, "create_store", full)
    response = client.post("/api/v1/jobs", json=spec_for(movie_path, output={"path": str(out)}))
    assert response.status_code == (201 if outcome == "succeeds" else 422), response.json
    assert (theirs / "notes.txt").read_text() == "keep"
    assert out.is_dir() == (outcome == "succeeds")
    # the submit's own staging folder is gone either way
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_failed_submit_keeps_what_others_put_in_the_folders_it_made(app, client, movie_path,
                                                                     tmp_path, monkeypatch):
    import blockreg.store

    out = tmp_path / "new" / "out.zarr"

    def others_write_then_disk_full(*args, **kwargs):
        (tmp_path / "new" / "their-file").write_text("keep")  # another user, meanwhile
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blockreg.store, "create_store", others_write_then_disk_full)
    response = client.post("/api/v1/jobs", json=spec_for(movie_path, output={"path": str(out)}))
    assert response.status_code == 422
    # the folder this submit created stays because it is no longer empty; only its own are gone
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["their-file"]
