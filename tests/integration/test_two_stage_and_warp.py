"""Issue 12 through the real parts (PostgreSQL, Redis, the dispatcher process, Celery workers).

- a two-stage job (``apertures_mismatch`` with ``lambda``): frame tasks store cs/Qs/mmis, then
  the dispatcher starts the series phase, window tasks run on the workers and one stitcher writes
  ``u``, equal to the in-process windowed solve and close to the one-shot solve;
- a warp job applying the ``u`` of a job registered on channel 0 to channel 1 of the same file
  gives exactly the bytes of warping channel 1 in-process with the stored ``u``;
- the subset workflow: register every 4th frame, then warp every frame with ``tinterpolate``.
"""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from helpers.smooth_motion import make_smooth_movie

pytestmark = pytest.mark.integration


def _folder(service):
    folder = service.data_dir / "issue12"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_two_stage_job_end_to_end(service, client):
    from blockreg.jobs import plan_job
    from blockreg.reg.series import optimize_series, optimize_series_windowed

    path = _folder(service) / "smooth.npy"
    np.save(path, make_smooth_movie((40, 48), 24, photons=1000, seed=3, period=30)[0])
    params = {"gridsize": [3, 3], "maxshift": [5, 5], "lambda": 1e-3, "lambda_t": 0.01,
              "window": 12, "window_overlap": 6}
    spec = {"input": {"path": str(path)}, "algorithm": "apertures_mismatch", "params": params,
            "preprocess": {"bias": 100, "sigma_hp": 10}}
    status = client.wait(client.submit(spec), timeout=180)
    assert status["state"] == "succeeded", status
    assert (status["phase"], status["phase_done"], status["phase_total"]) == ("done", 3, 3)
    store = client.results(status["id"])
    cs, Qs, mmis, u = (np.asarray(store[name][...]) for name in ("cs", "Qs", "mmis", "u"))
    assert np.isfinite(mmis).all() and u.shape == (24, 3, 3, 2)
    nodes = plan_job(spec).nodes
    windowed = optimize_series_windowed(cs, Qs, mmis, nodes, 1e-3, 0.01, window=12, overlap=6)
    np.testing.assert_allclose(u, windowed, rtol=0, atol=1e-9)
    one_shot, _ = optimize_series(cs, Qs, mmis, nodes, 1e-3, 0.01)
    assert np.abs(u - one_shot).max() < 0.1  # stitched windows vs the whole series at once (px)


def test_warp_channel_1_with_channel_0s_deformations(service, client):
    from blockreg.apply import apply_deformations
    from blockreg.io import open_series

    movie = make_smooth_movie((32, 40), 6, photons=800, seed=5, period=12)[0]
    path = _folder(service) / "two_channels.zarr"
    data = np.stack([movie, (movie // 3 + 7).astype(movie.dtype)], axis=1)  # t c y x
    arr = zarr.create_array(path, shape=data.shape, dtype=data.dtype,
                            dimension_names=("t", "c", "y", "x"))
    arr[...] = data
    spec = {"input": {"path": str(path), "channel": 0}, "preprocess": {"bias": 100},
            "params": {"gridsize": [3, 3], "maxshift": [4, 4], "lambda": 0.01}}
    registered = client.wait(client.submit(spec), timeout=120)
    assert registered["state"] == "succeeded", registered
    warp_id = client.warp(registered["id"], input={"channel": 1}, dtype="input")
    warped = client.wait(warp_id, timeout=120)
    assert warped["state"] == "succeeded", warped
    source = client.results(registered["id"])
    nodes = tuple(np.asarray(n) for n in source.attrs["blockreg"]["nodes"])
    expected = apply_deformations(open_series(path, channel=1), np.asarray(source["u"][...]),
                                  nodes, dtype="input")
    got = np.asarray(client.results(warp_id)["registered"][...])
    assert got.dtype == movie.dtype and np.array_equal(got, expected)
    assert client.status(warp_id)["spec"]["input"]["channel"] == 1


def test_subset_workflow_every_4th_frame(service, client):
    from blockreg.apply import deformations_for_frames, warp_frame

    movie = make_smooth_movie((32, 40), 13, photons=800, seed=6, period=40)[0]
    path = _folder(service) / "subset.npy"
    np.save(path, movie)
    spec = {"input": {"path": str(path), "register_every": 4}, "preprocess": {"bias": 100},
            "params": {"gridsize": [3, 3], "maxshift": [4, 4], "lambda": 0.01}}
    registered = client.wait(client.submit(spec), timeout=120)
    assert registered["state"] == "succeeded" and registered["frames_total"] == 4, registered
    source = client.results(registered["id"])
    assert source.attrs["blockreg"]["frames"] == [0, 4, 8, 12]
    warp_id = client.submit({"kind": "warp", "source": {"job": registered["id"]},
                             "tinterpolate": True})
    warped = client.wait(warp_id, timeout=120)
    assert warped["state"] == "succeeded" and warped["frames_total"] == 13, warped
    nodes = tuple(np.asarray(n) for n in source.attrs["blockreg"]["nodes"])
    us = deformations_for_frames(np.asarray(source["u"][...]), 13, tindex=[0, 4, 8, 12])
    got = np.asarray(client.results(warp_id)["registered"][...])
    for t in range(13):
        assert np.array_equal(got[t], warp_frame(movie[t], us[t], nodes), equal_nan=True), t
