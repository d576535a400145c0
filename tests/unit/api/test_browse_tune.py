"""The API routes the dashboard needs: file picker, preview, frame pictures, tune batches, and
the dashboard page itself (its modules all ship)."""
from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from helpers.api_app import run_all, spec_for

STATIC = Path(__file__).resolve().parents[3] / "services/blockreg_services/coordinator/static"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return height, width


@pytest.fixture
def roots_app(app, tmp_path, movie_path):
    """The app with its data roots set to the folder holding the movie."""
    app.config.update(DATA_ROOTS=[str(tmp_path)], ALLOWED_ROOTS=[str(tmp_path)])
    (tmp_path / "sub").mkdir()
    (tmp_path / "notes.txt").write_text("not a series")
    (tmp_path / "escape").symlink_to("/")
    return app


def test_files_lists_folders_then_series_with_their_geometry(roots_app, tmp_path):
    client = roots_app.test_client()
    top = client.get("/api/v1/files").json
    assert top["roots"] == [str(tmp_path)] and top["entries"][0]["path"] == str(tmp_path)
    listing = client.get(f"/api/v1/files?path={tmp_path}").json
    kinds = {e["name"]: e for e in listing["entries"]}
    assert kinds["sub"]["kind"] == "directory"
    assert kinds["movie.npy"]["kind"] == "series" and kinds["movie.npy"]["shape"] == [12, 24, 20]
    assert kinds["movie.npy"]["axes"] == "tyx" and kinds["movie.npy"]["dtype"] == "uint16"
    assert kinds["notes.txt"]["kind"] == "file"
    assert listing["parent"] is None  # a root has no parent to go to
    assert "escape" not in kinds  # a link leading out of the roots is not shown
    assert client.get(f"/api/v1/files?path={tmp_path / 'sub'}").json["parent"] == str(tmp_path)


@pytest.mark.parametrize("path, status, field", [
    ("/", 403, "path"), ("relative/folder", 400, "path"), ("{root}/../..", 403, "path"),
    ("{root}/movie.npy", 404, "path"), ("/tmp/\x00", 400, "path")])
def test_files_refuses_paths_outside_the_roots_and_non_folders(roots_app, tmp_path, path, status,
                                                               field):
    response = roots_app.test_client().get("/api/v1/files", query_string={
        "path": path.format(root=tmp_path)})
    assert response.status_code == status
    assert response.json["errors"][0]["field"] == field


def test_preview_draws_the_fixed_frame_and_its_aperture_grid(roots_app, movie_path):
    client = roots_app.test_client()
    body = client.get("/api/v1/preview", query_string={
        "path": str(movie_path), "gridsize": "3,2", "maxshift": "2,2", "fixed_index": 4}).json
    assert body["shape"] == [24, 20] and body["fixed_index"] == 4 and body["frames"] == 12
    assert [len(n) for n in body["nodes"]] == [3, 2]
    assert body["nodes"][0] == [0.0, 11.5, 23.0] and body["aperture_width"] == [11.5, 19.0]
    assert body["maxshift"] == [2, 2]
    png = base64.b64decode(body["image"].removeprefix("data:image/png;base64,"))
    assert png_size(png) == (24, 20)


@pytest.mark.parametrize("query, field", [
    ({}, "input.path"), ({"gridsize": "3,2,1"}, "params.gridsize"),
    ({"gridsize": "a,b"}, "gridsize"), ({"maxshift": "2"}, "params.maxshift"),
    ({"fixed_index": "99"}, "fixed_index")])
def test_preview_names_the_bad_field(roots_app, movie_path, query, field):
    if query:
        query = {"path": str(movie_path), **query}
    response = roots_app.test_client().get("/api/v1/preview", query_string=query)
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == field


def test_frame_pictures_and_deformation_of_a_finished_job(app, client, broker, movie_path):
    job_id = client.post("/api/v1/jobs", json=spec_for(movie_path)).json["id"]
    assert client.get(f"/api/v1/jobs/{job_id}/frames/0/image?which=registered").status_code == 409
    run_all(app, broker)
    for which in ("raw", "registered", "fixed"):
        response = client.get(f"/api/v1/jobs/{job_id}/frames/3/image?which={which}")
        assert response.status_code == 200 and response.mimetype == "image/png"
        assert png_size(response.data) == (24, 20)
    raw = client.get(f"/api/v1/jobs/{job_id}/frames/3/image?which=raw").data
    assert raw != client.get(f"/api/v1/jobs/{job_id}/frames/3/image?which=registered").data
    deformation = client.get(f"/api/v1/jobs/{job_id}/frames/3/deformation").json
    assert np.asarray(deformation["u"]).shape == (3, 2, 2)
    assert deformation["shape"] == [24, 20] and deformation["source_t"] == 3
    assert client.get(f"/api/v1/jobs/{job_id}/frames/12/image").status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}/frames/0/image?which=x").status_code == 400
    assert client.get("/api/v1/jobs/999/frames/0/image").status_code == 404


def tune_request(movie_path, **grid):
    base = spec_for(movie_path)
    del base["params"]["lambda"]
    return {"spec": base, "frames": [2, 6], "grid": grid or {"lambda": [0.001, 0.1]}}


def test_a_tune_batch_with_one_bad_value_queues_nothing(client, movie_path):
    request = tune_request(movie_path, **{"lambda": [0.01, -1.0], "maxshift": [[2, 2]]})
    response = client.post("/api/v1/tune", json=request)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json["errors"]}
    assert fields == {"params.lambda"}
    assert "lambda=-1.0" in response.json["errors"][0]["problem"]
    assert client.get("/api/v1/jobs").json["total"] == 0


@pytest.mark.parametrize("change, field", [
    ({"frames": [0, 40]}, "frames"), ({"grid": {"lambda": [0.1] * 5, "maxshift": [[1, 1]] * 5}}, "grid"),
    ({"grid": {"speed": [1]}}, "grid.speed"), ({"frames": [0]}, "frames"),
    ({"spec": {"input": "movie.npy"}}, "spec.input"), ({"spec": {"params": [1]}}, "spec.params")])
def test_tune_requests_out_of_bounds_are_refused(client, movie_path, change, field):
    response = client.post("/api/v1/tune", json={**tune_request(movie_path), **change})
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == field
    assert client.get("/api/v1/jobs").json["total"] == 0


def test_a_tune_batch_runs_every_combination_and_reports_each(app, client, broker, movie_path):
    request = tune_request(movie_path, **{"lambda": [0.001, [1e-4, 10.0]],
                                          "maxshift": [[2, 2], [3, 3]]})
    request["spec"]["input"]["frames"] = [0, 12]
    created = client.post("/api/v1/tune", json=request)
    assert created.status_code == 201, created.json
    tune = created.json
    assert len(tune["runs"]) == 4 and tune["base_frames"] == [0, 12]
    values = [run["values"] for run in tune["runs"]]
    assert {"lambda": 0.001, "maxshift": [3, 3]} in values
    for run in tune["runs"]:
        assert run["spec"]["input"]["frames"] == [2, 6] and run["frames_total"] == 4
        assert run["spec"]["params"]["maxshift"] == run["values"]["maxshift"]
    run_all(app, broker)
    tune = client.get(created.headers["Location"]).json
    for run in tune["runs"]:
        assert run["state"] == "succeeded"
        assert run["mismatch_after"] < run["mismatch_before"]
        assert 0 < run["reduction"] < 1 and 0 <= run["folds"] <= 1
    curve = tune["lambda_curve"]
    assert len(curve["lambdas"]) == len(curve["datapenalty"]) == len(curve["fitted"]) >= 4
    assert curve["lambdas"][0] == pytest.approx(1e-4)
    assert client.get("/api/v1/tune/99").status_code == 404


def test_the_openapi_document_is_json_and_lists_the_dashboards_routes(client):
    text = client.get("/api/v1/openapi.json").get_data(as_text=True)
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    for path in ("/api/v1/files", "/api/v1/preview", "/api/v1/tune", "/api/v1/tune/{tune_id}",
                 "/api/v1/jobs/{job_id}/frames/{index}/image"):
        assert path in doc["paths"]
    assert {"FileListing", "Preview", "Tune", "TuneRequest"} <= set(doc["components"]["schemas"])


def test_the_dashboard_page_and_every_module_it_imports_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'type="module"' in page.get_data(as_text=True)
    modules = {"app.js"}
    seen = set()
    while modules:
        name = modules.pop()
        seen.add(name)
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        source = response.get_data(as_text=True)
        assert "http://" not in source.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
        modules |= set(re.findall(r'from "\./([\w.]+)"', source)) - seen
    assert seen == {p.name for p in STATIC.glob("*.js")}
    assert client.get("/static/style.css").status_code == 200


def _zarr_with_a_chunk_outside(root: Path, outside: Path) -> Path:
    """A Zarr store inside ``root`` whose chunks are links to files in ``outside``."""
    import zarr

    store = root / "linked.zarr"
    zarr.save_array(str(store), np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5))
    outside.mkdir()
    for chunk in [p for p in store.rglob("*") if p.is_file() and not p.name.startswith("zarr")
                  and not p.name.startswith(".")]:
        moved = outside / f"chunk{len(list(outside.iterdir()))}"
        chunk.rename(moved)
        chunk.symlink_to(moved)
    return store


def test_preview_refuses_a_store_whose_links_leave_the_roots(roots_app, tmp_path,
                                                            tmp_path_factory):
    # the submit refuses such a store (paths.links_leaving); the preview reads its pixels, so it must too
    store = _zarr_with_a_chunk_outside(tmp_path, tmp_path_factory.mktemp("elsewhere") / "out")
    response = roots_app.test_client().get("/api/v1/preview", query_string={"path": str(store)})
    assert response.status_code == 403
    assert response.json["errors"][0]["field"] == "input.path"


def test_files_lists_a_folder_holding_a_link_loop(roots_app, tmp_path):
    # anyone who can write in a data root can leave such a pair of links; the folder still lists
    (tmp_path / "sub" / "a").symlink_to(tmp_path / "sub" / "b")
    (tmp_path / "sub" / "b").symlink_to(tmp_path / "sub" / "a")
    (tmp_path / "sub" / "kept.txt").write_text("x")
    response = roots_app.test_client().get("/api/v1/files", query_string={"path": str(tmp_path / "sub")})
    assert response.status_code == 200
    assert [e["name"] for e in response.json["entries"]] == ["kept.txt"]


def test_a_link_loop_outside_the_roots_reads_like_any_outside_path(roots_app, tmp_path_factory):
    # 403 whatever lies outside: a loop there must not answer differently (400) and so show it exists
    outside = tmp_path_factory.mktemp("outside")
    (outside / "a").symlink_to(outside / "b")
    (outside / "b").symlink_to(outside / "a")
    for route in ("/api/v1/files", "/api/v1/preview"):
        answers = [roots_app.test_client().get(route, query_string={"path": str(p)})
                   for p in (outside / "a", outside / "missing")]
        assert [a.status_code for a in answers] == [403, 403]
