"""``blockreg register --algorithm apertures_mismatch|rigid``: the new algorithms in process."""
from __future__ import annotations

import numpy as np
import pytest

from blockreg.jobspec import SpecError, validate_spec
from blockreg.store import open_store

from helpers.smooth_motion import make_smooth_movie


@pytest.fixture(scope="module")
def movie_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("two_stage") / "m.npy"
    np.save(path, make_smooth_movie((40, 48), 12, photons=1000, seed=1)[0])
    return path


def test_register_two_stage_solves_the_series(movie_path, tmp_path):
    from blockreg.commandline import add_register_parser, run_register
    from blockreg.reg.series import optimize_series_windowed
    import argparse

    parser = argparse.ArgumentParser()
    add_register_parser(parser)
    out = tmp_path / "a.zarr"
    args = parser.parse_args([str(movie_path), "--out", str(out), "--algorithm",
                              "apertures_mismatch", "--gridsize", "3,3", "--maxshift", "5,5",
                              "--lambda", "0.001", "--lambda-t", "0.1", "--window", "8",
                              "--window-overlap", "4", "--bias", "100"])
    assert run_register(args) == 0
    store = open_store(out)
    cs, Qs, mmis, u = (np.asarray(store[n][...]) for n in ("cs", "Qs", "mmis", "u"))
    nodes = tuple(np.asarray(n) for n in store.attrs["blockreg"]["nodes"])
    np.testing.assert_allclose(u, optimize_series_windowed(cs, Qs, mmis, nodes, 1e-3, 0.1,
                                                           window=8, overlap=4), atol=1e-9)
    assert store.attrs["blockreg"]["series"] == {"lambda": 1e-3, "lambda_t": 0.1,
                                                 "windows": [[0, 8], [4, 12]]}


def test_register_rigid_stores_its_transform(movie_path, tmp_path):
    from blockreg.jobs import run_inprocess

    out = run_inprocess({"input": {"path": str(movie_path)}, "algorithm": "rigid",
                         "preprocess": {"bias": 100}, "params": {"maxshift": [5, 5]}})
    assert set(out) == {"tform", "mismatch", "u"} and out["tform"].shape == (12, 3, 3)
    np.testing.assert_allclose(out["tform"][:, 2], [[0, 0, 1]] * 12)


@pytest.mark.parametrize("change, field", [
    ({"input": {"register_every": 0}}, "input.register_every"),
    ({"algorithm": "apertures_mismatch", "params": {"gridsize": [3, 3], "maxshift": [5, 5],
                                                    "lambda": 1e-3, "lambda_frames": [40]}},
     "params.lambda_frames.0"),
    ({"algorithm": "rigid", "params": {"maxshift": [5, 5], "maxrot": -1}}, "params.maxrot"),
])
def test_bad_fields_are_named(movie_path, change, field):
    spec = {"input": {"path": str(movie_path)},
            "params": {"gridsize": [3, 3], "maxshift": [5, 5], "lambda": 1e-3}}
    for key, value in change.items():
        spec[key] = {**spec[key], **value} if key == "input" else value
    with pytest.raises(SpecError) as info:
        validate_spec(spec)
    assert field in [e["field"] for e in info.value.errors], info.value.errors


def test_two_stage_in_process_reports_progress(movie_path):
    from blockreg.jobs import run_inprocess

    calls = []
    out = run_inprocess({"input": {"path": str(movie_path)}, "algorithm": "apertures_mismatch",
                         "preprocess": {"bias": 100}, "monitor": ["cs", "Qs", "mmis"],
                         "params": {"gridsize": [3, 3], "maxshift": [5, 5], "lambda": 1e-3,
                                    "lambda_t": 0.1, "window": 8, "window_overlap": 4}},
                        progress=lambda done, total: calls.append((done, total)))
    assert out["u"].shape == (12, 3, 3, 2)
    assert calls == [(t, 12) for t in range(1, 13)]
