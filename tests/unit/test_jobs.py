"""Job planning: frames, ROI, fixed image and algorithm from a spec, on the real core."""
from __future__ import annotations

import numpy as np
import pytest

from blockreg.jobs import grid_nodes, plan_job, read_frame, run_inprocess
from blockreg.store import member, open_results

BIAS = 100


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small synthetic movie with known displacements, saved as .npy."""
    from blockreg.synthetic import make_movie

    movie, _, u_true = make_movie((40, 36), 7, max_translation=2, max_local=0.5, seed=3, bias=BIAS)
    path = tmp_path_factory.mktemp("jobs") / "movie.npy"
    np.save(path, movie)
    return path, movie, u_true


def spec_for(path, **extra):
    spec = {"input": {"path": str(path)}, "preprocess": {"bias": BIAS},
            "params": {"gridsize": [3, 3], "maxshift": [6, 6], "lambda": 0.01}}
    spec.update(extra)
    return spec


def test_plan_selects_frames_roi_and_fixed(synthetic):
    path, movie, _ = synthetic
    roi = [[3, 37], [2, 30]]
    plan = plan_job(spec_for(path, input={"path": str(path), "roi": roi, "frames": [1, 7, 2]}))
    assert plan.frames == [1, 3, 5]
    assert plan.fixed_index == 3  # the middle of the selected frames
    assert plan.image_shape == (34, 28)
    np.testing.assert_array_equal(read_frame(plan, 5), movie[5, 3:37, 2:30])
    # PreprocessSNF without filters is sqrt(max(0, A - bias)), computed here independently
    expected = np.sqrt(np.maximum(movie[3, 3:37, 2:30].astype(np.float32) - BIAS, 0))
    np.testing.assert_allclose(plan.load_fixed(), expected, rtol=1e-6)
    assert plan.load_fixed().dtype == np.float32
    # nodes span the ROI's corners
    assert [n.tolist() for n in plan.nodes] == [[0.0, 16.5, 33.0], [0.0, 13.5, 27.0]]


def test_explicit_fixed_index_and_given_fixed(synthetic):
    path, movie, _ = synthetic
    plan = plan_job(spec_for(path, fixed_index=0))
    assert plan.fixed_index == 0 and plan.frames == list(range(7))
    stored = np.ones((40, 36), dtype=np.float32)
    assert plan_job(spec_for(path), fixed=stored).load_fixed() is not None
    np.testing.assert_array_equal(plan_job(spec_for(path), fixed=stored).load_fixed(), stored)


def test_declarations_are_the_monitored_ones(synthetic):
    path, _, _ = synthetic
    plan = plan_job(spec_for(path, monitor=["u", "warped", "lambda"]))
    decls = plan.declarations()
    assert list(decls) == ["u", "warped", "lambda"]
    assert decls["u"].shape == (3, 3, 2) and decls["warped"].shape == (40, 36)
    assert decls["lambda"].shape == ()


def test_store_attrs(synthetic):
    path, _, _ = synthetic
    plan = plan_job(spec_for(path, input={"path": str(path), "frames": [2, 6]}))
    attrs = plan.store_attrs()
    assert attrs["frames"] == [2, 3, 4, 5] and attrs["fixed_index"] == 4
    assert attrs["axes"] == "tyx" and attrs["spec"]["params"]["lambda"] == 0.01
    assert attrs["nodes"] == [n.tolist() for n in grid_nodes((40, 36), (3, 3))]


def test_service_path_equals_inprocess_runner(synthetic, tmp_path):
    """What a worker does per frame (plan, fixed from the store, run_frame) equals register()."""
    path, movie, u_true = synthetic
    out = tmp_path / "inproc.zarr"
    spec = spec_for(path, input={"path": str(path), "frames": [0, 7, 2]})
    results = run_inprocess(spec, out=out)
    plan = plan_job(spec)
    stored = open_results(out)
    fixed = np.asarray(member(stored, "fixed")[...])
    worker_plan = plan_job(spec, fixed=fixed)
    algorithm = worker_plan.make_algorithm(fixed)
    u = np.stack([algorithm.run_frame(read_frame(worker_plan, t), t, ("u",))["u"]
                  for t in plan.frames])
    np.testing.assert_array_equal(u, results["u"])
    np.testing.assert_array_equal(stored["u"][...], results["u"])
    assert stored.attrs["blockreg"]["frames"] == plan.frames == [0, 2, 4, 6]


def test_inprocess_recovers_known_displacements(synthetic):
    """u at the interior node approximates the ground truth relative to the fixed frame."""
    path, _, u_true = synthetic
    # shifts between two frames reach 2 * (2 + 0.5) px: search beyond that
    spec = spec_for(path, fixed_index=3)
    spec["params"]["maxshift"] = [8, 8]
    results = run_inprocess(spec)
    # u_true[t] maps frame t onto the clean image; relative to frame 3 the field is the difference
    centre = (20, 18)
    largest = 0.0
    for t in range(7):
        truth = u_true[t][centre] - u_true[3][centre]
        np.testing.assert_allclose(results["u"][t, 1, 1], truth, atol=0.5)
        largest = max(largest, float(np.abs(truth).max()))
    assert largest > 1.0  # the check is not vacuous: some frames moved by more than a pixel


def test_run_inprocess_validates(synthetic):
    from blockreg.jobspec import SpecError

    path, _, _ = synthetic
    with pytest.raises(SpecError) as info:
        run_inprocess(spec_for(path, fixed_index=99))
    assert info.value.errors[0]["field"] == "fixed_index"


def test_fixed_frame_without_a_finite_pixel_is_refused_everywhere(tmp_path):
    # the check once lived only in the API: run_inprocess (and `blockreg register`) went on to
    # fail every frame against an all-NaN fixed image
    from blockreg.jobs import FixedFrameError

    movie = np.random.default_rng(1).random((4, 24, 24)).astype(np.float32)
    movie[2] = np.nan
    path = tmp_path / "holes.npy"
    np.save(path, movie)
    spec = spec_for(path, fixed_index=2)
    with pytest.raises(FixedFrameError, match="^fixed_index: frame 2 has no finite pixel"):
        plan_job(spec).load_fixed()
    with pytest.raises(ValueError, match="^fixed_index:"):
        run_inprocess(spec, out=tmp_path / "out.zarr")
    assert plan_job(spec_for(path, fixed_index=1)).load_fixed().shape == (24, 24)
