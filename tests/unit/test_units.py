"""Sizes in µm in a job spec (issue 9): converted with the input's voxel size, exactly one of the
pixel and µm forms, recorded in the results store."""
from __future__ import annotations

import numpy as np
import pytest

from blockreg.jobs import plan_job, run_inprocess
from blockreg.jobspec import SpecError, validate_spec
from blockreg.store import open_results

from helpers import service_fakes as fakes


@pytest.fixture
def tif(tmp_path):
    """A TYX movie whose file says 0.25 µm per pixel along y, 0.5 along x, 0.5 s per frame."""
    import tifffile

    movie = fakes.make_movie(tmp_path / "m.npy", shape=(4, 24, 20), seed=1)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, movie, imagej=True, resolution=(2.0, 4.0),
                     metadata={"unit": "um", "axes": "TYX", "finterval": 0.5})
    return path


def _spec(path, params, preprocess=None, output=None, **input_):
    spec = {"input": {"path": str(path), **input_}, "params": {"lambda": 0.01, **params},
            "preprocess": {"bias": 100, **(preprocess or {})}, "monitor": ["u", "warped"]}
    if output is not None:
        spec["output"] = output
    return spec


def test_um_sizes_are_converted_with_the_files_spacing(tif):
    spec = _spec(tif, {"maxshift_um": [0.6, 1.0], "aperture_um": [2.0, 5.0]},
                 {"sigma_hp_um": 2.0})
    plan = plan_job(validate_spec(spec))
    # y: 0.25 µm/px, x: 0.5 µm/px; image 24 x 20 px = 6 x 10 µm
    assert plan.spec.params.maxshift == [3, 2]       # ceil(0.6 / 0.25), ceil(1.0 / 0.5)
    assert plan.spec.params.gridsize == [3, 2]       # round(6 / 2), round(10 / 5)
    assert plan.spec.preprocess.sigma_hp == [8.0, 4.0]
    assert plan.spec.params.maxshift_um is None and plan.spacing == (0.25, 0.5)


def test_um_job_equals_the_pixel_job_and_the_store_records_units(tif, tmp_path):
    um = run_inprocess(_spec(tif, {"maxshift_um": [0.6, 1.0], "aperture_um": [2.0, 5.0]},
                             output={"path": str(tmp_path / "um.zarr")}))
    px = run_inprocess(_spec(tif, {"maxshift": [3, 2], "gridsize": [3, 2]},
                             output={"path": str(tmp_path / "px.zarr")}))
    np.testing.assert_array_equal(um["u"], px["u"])
    meta = open_results(tmp_path / "um.zarr").attrs["blockreg"]
    assert meta["spacing"] == [0.25, 0.5] and meta["time_step_s"] == 0.5
    assert meta["units"]["spacing"] == "micrometer" and meta["units"]["displacements"] == "pixel"
    assert meta["converted_from_um"] == {"params.maxshift_um": [0.6, 1.0],
                                         "params.aperture_um": [2.0, 5.0]}
    assert meta["spec"]["params"]["maxshift"] == [3, 2]


def test_explicit_spacing_overrides_the_files(tif):
    spec = _spec(tif, {"maxshift_um": [2.0], "gridsize": [3, 2]}, spacing_um=[1.0])
    plan = plan_job(validate_spec(spec))
    assert plan.spacing == (1.0, 1.0) and plan.spec.params.maxshift == [2, 2]


@pytest.mark.parametrize("params, preprocess, field", [
    ({"maxshift": [2, 2], "maxshift_um": [1.0], "gridsize": [3, 2]}, None, "params.maxshift"),
    ({"gridsize": [3, 2]}, None, "params.maxshift"),
    ({"maxshift": [2, 2], "gridsize": [3, 2], "aperture_um": [2.0]}, None, "params.gridsize"),
    ({"maxshift": [2, 2], "gridsize": [3, 2]}, {"sigma_hp": 3, "sigma_hp_um": 2.0},
     "preprocess.sigma_hp_um"),
])
def test_exactly_one_of_pixels_and_um(tif, params, preprocess, field):
    with pytest.raises(SpecError) as info:
        validate_spec(_spec(tif, params, preprocess), check_input=False)
    assert [e["field"] for e in info.value.errors] == [field]


def test_um_without_a_known_spacing_names_the_field(tmp_path):
    fakes.make_movie(tmp_path / "m.npy", shape=(4, 24, 20))   # .npy: no voxel size
    with pytest.raises(SpecError) as info:
        validate_spec(_spec(tmp_path / "m.npy", {"maxshift_um": [1.0], "gridsize": [3, 2]}))
    (error,) = info.value.errors
    assert error["field"] == "params.maxshift_um" and "spacing_um" in error["problem"]
    # with the spacing given it is accepted
    validate_spec(_spec(tmp_path / "m.npy", {"maxshift_um": [1.0], "gridsize": [3, 2]},
                        spacing_um=[0.5, 0.5]))


@pytest.mark.parametrize("params, preprocess, spacing, field", [
    ({"maxshift_um": [1e308], "gridsize": [3, 2]}, None, 1e-300, "params.maxshift_um"),
    ({"maxshift": [2, 2], "aperture_um": [1e-300]}, None, 1e300, "params.aperture_um"),
    ({"maxshift": [2, 2], "gridsize": [3, 2]}, {"sigma_hp_um": 1e308}, 1e-300,
     "preprocess.sigma_hp_um"),
])
def test_um_sizes_too_large_in_pixels_name_the_field(tmp_path, params, preprocess, spacing,
                                                     field):
    # a µm size over a tiny voxel size is not a number of pixels (infinity): a 422, never a crash
    fakes.make_movie(tmp_path / "m.npy", shape=(4, 24, 20))
    with pytest.raises(SpecError) as info:
        validate_spec(_spec(tmp_path / "m.npy", params, preprocess, spacing_um=[spacing]))
    assert [e["field"] for e in info.value.errors] == [field]


def test_api_refuses_a_bad_unit_choice_with_a_422(tmp_path):
    from blockreg_services.coordinator import create_app

    from blockreg.db.migrate import migrate

    url = f"sqlite:///{tmp_path / 's.db'}"
    migrate(url)
    app = create_app({"DATABASE_URL": url, "DATA_DIR": str(tmp_path / "data"),
                      "ALLOWED_ROOTS": None, "CELERY": fakes.FakeBroker()})
    fakes.make_movie(tmp_path / "m.npy", shape=(4, 24, 20))
    answer = app.test_client().post("/api/v1/jobs", json=_spec(
        tmp_path / "m.npy", {"aperture_um": [3.0], "maxshift": [2, 2]}))
    assert answer.status_code == 422
    assert answer.json["errors"][0]["field"] == "params.aperture_um"  # no voxel size known
