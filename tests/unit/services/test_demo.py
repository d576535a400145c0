"""The demo's movie and quality summary, checked against the generator's ground truth."""
from __future__ import annotations

import numpy as np
import pytest

from blockreg_services import demo


class _Results(dict):
    """A results store as the demo reads it: arrays by name plus ``attrs``."""

    def __init__(self, arrays, attrs):
        super().__init__(arrays)
        self.attrs = attrs


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    path, u_true = demo.write_demo_movie(folder, frames=3)
    return path, u_true


def test_demo_movie_is_the_template_then_deformed_frames(movie):
    from blockreg import open_series

    path, u_true = movie
    series = open_series(path)
    assert series.shape == (4, *demo.DEMO_SHAPE)
    assert u_true.shape == (3, *demo.DEMO_SHAPE, 2)
    np.testing.assert_array_equal(np.load(path.parent / "u_true.npy"), u_true.astype(np.float32))
    # the motion stays inside the searched shifts, or the demo could not recover it
    assert np.abs(u_true).max() < min(demo.DEMO_MAXSHIFT)


def test_demo_spec_registers_every_deformed_frame_to_the_template(movie):
    from blockreg.jobspec import validate_spec

    path, _ = movie
    spec = validate_spec(demo.demo_spec(path, 3))
    assert spec.fixed_index == 0
    assert list(spec.frame_indices(4)) == [1, 2, 3]
    assert {"u", "mismatch", "warped"} <= set(spec.monitor)


def test_quality_of_a_perfect_registration_is_zero_error(movie):
    from blockreg import PreprocessSNF, open_series
    from blockreg.jobs import grid_nodes
    from blockreg.synthetic import grid_truth

    path, u_true = movie
    spec = demo.demo_spec(path, 3)
    series = open_series(path)
    preprocess = PreprocessSNF.from_dict(spec["preprocess"])
    fixed = preprocess(series[0])
    nodes = grid_nodes(demo.DEMO_SHAPE, demo.DEMO_GRIDSIZE)
    perfect = _Results({"fixed": fixed, "u": grid_truth(u_true, nodes),
                        "warped": np.stack([fixed] * 3)},
                       {"blockreg": {"nodes": [n.tolist() for n in nodes]}})
    q = demo.quality_summary(perfect, path, spec, u_true)
    assert q["u_rmse"] == pytest.approx(0.0, abs=1e-12)
    assert q["mismatch_after"] == pytest.approx(0.0, abs=1e-12)
    assert q["mismatch_before"] > 0.01
    assert q["motion_rms"] > 1.0


def test_doing_nothing_scores_the_true_motion_as_error(movie):
    from blockreg.jobs import grid_nodes

    path, u_true = movie
    spec = demo.demo_spec(path, 3)
    nodes = grid_nodes(demo.DEMO_SHAPE, demo.DEMO_GRIDSIZE)
    fixed = np.ones(demo.DEMO_SHAPE, dtype=np.float32)
    idle = _Results({"fixed": fixed, "u": np.zeros((3, *demo.DEMO_GRIDSIZE, 2)),
                     "warped": np.stack([fixed] * 3)},
                    {"blockreg": {"nodes": [n.tolist() for n in nodes]}})
    q = demo.quality_summary(idle, path, spec, u_true)
    assert q["u_rmse"] == pytest.approx(q["motion_rms"])


def test_write_demo_movie_rejects_no_frames(tmp_path):
    with pytest.raises(ValueError, match="frames"):
        demo.write_demo_movie(tmp_path, frames=0)
