"""The hand-made bad inputs of issue 7, each refused with a 4xx naming the field, quickly: filter
widths far beyond a 64x64 frame, an absurd auto-lambda range, a truncated TIFF.  (Bodies too large
or nested too deeply: test_limits.py.)"""
from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile

from helpers.api_app import spec_for


@pytest.fixture
def frames64(tmp_path):
    path = tmp_path / "m64.npy"
    rng = np.random.default_rng(0)
    np.save(path, (100 + 50 * rng.random((4, 64, 64))).astype(np.float32))
    return path


def submit(client, spec):
    started = time.perf_counter()
    response = client.post("/api/v1/jobs", json=spec)
    assert time.perf_counter() - started < 5.0, "a bad spec must be refused quickly"
    return response


@pytest.mark.parametrize("field, value", [("sigma_lp", 1e7), ("sigma_lp", 1e9),
                                          ("sigma_hp", 1e9), ("sigma_lp", [2.0, 641.0])])
def test_filter_wider_than_the_frame_is_a_422(client, frames64, field, value):
    response = submit(client, spec_for(frames64, preprocess={"bias": 100, field: value}))
    assert response.status_code == 422, response.json
    error = response.json["errors"][0]
    assert error["field"] == f"preprocess.{field}"
    assert "times the image's size 64" in error["problem"] and "at most 640" in error["problem"]


def test_filter_ten_times_the_frame_is_accepted(client, frames64):
    spec = spec_for(frames64, preprocess={"bias": 100, "sigma_lp": 1.0, "sigma_hp": 640.0})
    assert submit(client, spec).status_code == 201


@pytest.mark.parametrize("lam", [[1e-300, 1e300], [1e-12, 1.0], [1.0, 1e7], 1e7])
def test_lambda_out_of_range_is_a_422(client, frames64, lam):
    spec = spec_for(frames64)
    spec["params"]["lambda"] = lam
    response = submit(client, spec)
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["field"].startswith("params.lambda")


def test_truncated_tiff_is_a_422(client, tmp_path):
    path = tmp_path / "cut.tif"
    movie = np.arange(6 * 64 * 64, dtype=np.uint16).reshape(6, 64, 64)
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TYX"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    response = submit(client, spec_for(path))
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["field"] == "input.path"


def test_the_openapi_document_states_the_limits(client):
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    text = str(schemas)
    assert "at most the image's size" in text and "at most 10 times the image's size" in text
    assert "1e+06" in text
    listing = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/jobs"]["get"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 500


def test_the_documented_limits_are_the_views_limits():
    from blockreg_services.coordinator import api, limits, openapi

    assert (openapi.MAX_JOBS_PAGE, openapi.MAX_FRAMES_PAGE, openapi.MAX_JOB_ID) == \
        (api.MAX_JOBS_PAGE, api.MAX_FRAMES_PAGE, api.MAX_JOB_ID)
    described = openapi.build_openapi()["paths"]["/api/v1/jobs"]["post"]["requestBody"]
    assert f"{limits.MAX_BODY_BYTES >> 20} MiB" in described["description"]
    assert f"{limits.MAX_JSON_DEPTH} levels" in described["description"]
