"""Data roots at submit (issue 8): inputs and outputs resolve inside a root, an output never goes
inside another job's store, and a refusal reads the same whether an outside file exists or not."""
from __future__ import annotations

import json

import numpy as np
import pytest

from blockreg.paths import REFUSED, check_still_inside
from blockreg.errors import ParameterError

from helpers.api_app import toy_spec_for
from helpers import service_fakes as fakes


@pytest.fixture
def root(app, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    app.config["ALLOWED_ROOTS"] = [str(root)]
    return root


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    fakes.make_movie(folder / "secret.npy")
    return folder


def problems(response):
    assert response.status_code == 422, response.get_json()
    return {(e["field"], e["problem"]) for e in response.get_json()["errors"]}


def submit(client, spec):
    return client.post("/api/v1/jobs", json=spec)


def test_an_outside_input_is_refused_like_a_missing_one(client, root, outside):
    existing = problems(submit(client, toy_spec_for(outside / "secret.npy")))
    missing = problems(submit(client, toy_spec_for(outside / "nothing.npy")))
    missing_inside = problems(submit(client, toy_spec_for(root / "nothing.npy")))
    assert existing == missing == missing_inside == {("input.path", REFUSED)}


def test_a_symlink_leaving_the_roots_is_refused(client, root, outside):
    (root / "link.npy").symlink_to(outside / "secret.npy")
    (root / "dangling.npy").symlink_to(outside / "nothing.npy")
    (root / "up").symlink_to(outside)
    for path in (root / "link.npy", root / "dangling.npy", root / "up" / "secret.npy",
                 root / ".." / "outside" / "secret.npy"):
        assert problems(submit(client, toy_spec_for(path))) == {("input.path", REFUSED)}, path


def test_a_zarr_input_with_a_link_leaving_the_roots_is_refused(client, root, outside):
    import zarr

    store = root / "movie.zarr"
    zarr.save_array(str(store), np.load(outside / "secret.npy"), zarr_format=3)
    chunk = next(p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.unlink()
    chunk.symlink_to(outside / "secret.npy")
    assert problems(submit(client, toy_spec_for(store))) == {("input.path", REFUSED)}


def test_an_output_outside_the_roots_is_refused(client, root, movie_path, outside):
    (root / "movie.npy").write_bytes(movie_path.read_bytes())
    (root / "out").symlink_to(outside)
    for out in (outside / "x.zarr", root / "out" / "x.zarr", "/etc/x.zarr"):
        spec = toy_spec_for(root / "movie.npy", output={"path": str(out)})
        assert problems(submit(client, spec)) == {("output.path", REFUSED)}, out
    assert not (outside / "x.zarr").exists()


def test_the_stored_input_path_is_resolved(app, client, root, movie_path):
    (root / "movie.npy").write_bytes(movie_path.read_bytes())
    (root / "alias.npy").symlink_to(root / "movie.npy")
    response = submit(client, toy_spec_for(root / "alias.npy"))
    assert response.status_code == 201
    job = client.get(f"/api/v1/jobs/{response.get_json()['id']}").get_json()
    assert job["spec"]["input"]["path"] == str((root / "movie.npy").resolve())


def test_an_output_inside_another_jobs_store_is_refused(client, root, movie_path):
    (root / "movie.npy").write_bytes(movie_path.read_bytes())
    first = root / "job-1.zarr"
    spec = toy_spec_for(root / "movie.npy", output={"path": str(first)})
    assert submit(client, spec).status_code == 201
    for inner in (first / "evil", first / "u" / "deeper.zarr"):
        spec = toy_spec_for(root / "movie.npy", output={"path": str(inner)})
        assert problems(submit(client, spec)) == {
            ("output.path", "is inside another job's output store")}, inner
    # a blockreg store the database does not know (another server's, a moved one)
    (first.rename(root / "moved.zarr"))
    spec = toy_spec_for(root / "movie.npy", output={"path": str(root / "moved.zarr" / "x")})
    assert problems(submit(client, spec)) == {
        ("output.path", "is inside another job's output store")}
    assert "blockreg" in json.loads((root / "moved.zarr" / "zarr.json").read_text())["attributes"]


def test_a_tiff_link_to_a_text_file_never_echoes_its_content(client, tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "movie.tif").symlink_to(secret)
    body = json.dumps(submit(client, toy_spec_for(tmp_path / "movie.tif")).get_json())
    assert "root:" not in body and "b'" not in body


def test_check_still_inside_refuses_a_swapped_link(root, outside):
    movie = root / "movie.npy"
    movie.write_bytes((outside / "secret.npy").read_bytes())
    check_still_inside(str(movie), "input.path", roots=[root])  # unchanged: fine
    movie.unlink()
    movie.symlink_to(outside / "secret.npy")
    with pytest.raises(ParameterError, match="checked again before opening") as info:
        check_still_inside(str(movie), "input.path", roots=[root])
    assert info.value.field == "input.path"
    check_still_inside(str(movie), "input.path", roots=None)  # no roots configured: no check


def test_default_outputs_in_the_results_folder_pass_the_workers_check(tmp_path, monkeypatch):
    data = tmp_path / "home" / "data"
    store = data / "results" / "job-1.zarr"
    store.mkdir(parents=True)
    monkeypatch.setenv("BLOCKREG_DATA_DIR", str(data))
    root = tmp_path / "root"
    root.mkdir()
    check_still_inside(str(store), "output.path", roots=[root])  # the server's own results
    with pytest.raises(ParameterError):  # ... but not an input there, nor another folder
        check_still_inside(str(store), "input.path", roots=[root])
    with pytest.raises(ParameterError):
        check_still_inside(str(tmp_path / "elsewhere.zarr"), "output.path", roots=[root])
