"""Applying stored deformations (blockreg.apply): another channel, output types, the subset workflow."""
import numpy as np
import pytest

from blockreg.algorithms.apertures import Apertures
from blockreg.apply import (
    apply_deformations,
    deformations_for_frames,
    select_frames,
    to_output_dtype,
    warp_frame,
)
from blockreg.errors import ParameterError
from blockreg.reg.deformation import nodes_for_shape
from blockreg.reg.preprocess import PreprocessSNF
from blockreg.reg.warp import warp
from blockreg.synthetic import make_movie, make_texture
from helpers.smooth_motion import make_smooth_movie

SHAPE, GRID, MAXSHIFT = (64, 64), (3, 3), (6, 6)


def register_all(movie, fixed_clean, nodes, frames=None):
    pp = PreprocessSNF(bias=100, sigma_lp=0, sigma_hp=np.inf)
    alg = Apertures(pp(fixed_clean), nodes, MAXSHIFT, 1e-3, pp)
    frames = range(len(movie)) if frames is None else frames
    return np.stack([alg.run_frame(movie[t], t, ["u"])["u"] for t in frames])


def test_deformations_of_channel_0_applied_to_channel_1():
    # Two channels of one sample (two textures, one motion): register channel 0, warp channel 1.
    rng = np.random.default_rng(11)
    big = tuple(n + 2 * 10 for n in SHAPE)
    textures = [make_texture(big, rng) for _ in range(2)]
    channels = [make_movie(SHAPE, 4, max_translation=3, max_local=1.5, texture=tx, seed=5, photons=500)
                for tx in textures]
    np.testing.assert_array_equal(channels[0][2], channels[1][2])  # the same motion
    movie = np.stack([channels[0][0], channels[1][0]], axis=1)     # (T, C, y, x), uint16
    nodes = nodes_for_shape(SHAPE, GRID)
    us = register_all(movie[:, 0], channels[0][1], nodes)

    warped = apply_deformations(movie[:, 1], us, nodes)
    by_hand = np.stack([warp_frame(movie[t, 1], us[t], nodes) for t in range(len(movie))])
    np.testing.assert_array_equal(warped, by_hand)  # bit-identical: one function both ways
    assert warped.dtype == np.float32
    # and it registers channel 1: closer to channel 1's fixed image than the raw frames
    fixed1 = channels[1][1]
    inner = (slice(8, -8), slice(8, -8))
    err_raw = np.nanmean((movie[:, 1].astype(float) - fixed1)[(slice(None),) + inner] ** 2)
    err_warped = np.nanmean((warped - fixed1)[(slice(None),) + inner] ** 2)
    assert err_warped < 0.5 * err_raw
    # integer output in the input's type: the float result rounded, NaN -> 0
    as_input = apply_deformations(movie[:, 1], us, nodes, dtype="input", frames=[1, 3],
                                  out=np.zeros(movie[:, 1].shape, np.uint16))
    assert as_input.dtype == np.uint16 and not as_input[0].any()
    np.testing.assert_array_equal(as_input[3], np.nan_to_num(np.rint(by_hand[3])).astype(np.uint16))


def test_subset_workflow_every_4th_frame_is_within_0p1_px_of_registering_all():
    # A slowly moving sample (period 96 frames): register every 4th frame (and the last),
    # interpolate the deformations in time, and compare with registering every frame, at the
    # frames that were interpolated.  "Within 0.1 px" is the RMS over those frames and all nodes
    # (measured 0.033 px); single nodes differ by up to 0.11 px, about the frame-to-frame jitter of
    # registering every frame on its own (its second difference in time is 0.1-0.3 px here).
    T = 17
    movie, fixed_clean, _ = make_smooth_movie(SHAPE, T, period=96.0, max_translation=3.0, max_local=1.0,
                                              photons=2000, seed=4)
    nodes = nodes_for_shape(SHAPE, GRID)
    subset = select_frames(T, every=4)
    np.testing.assert_array_equal(subset, [0, 4, 8, 12, 16])
    us_all = register_all(movie, fixed_clean, nodes)
    us_subset = deformations_for_frames(register_all(movie, fixed_clean, nodes, subset), T, tindex=subset)
    interpolated = np.setdiff1d(np.arange(T), subset)
    diff = us_subset[interpolated] - us_all[interpolated]
    assert np.sqrt(np.mean(diff**2)) < 0.1
    assert np.abs(diff).max() < 0.2
    np.testing.assert_array_equal(us_subset[subset], us_all[subset])
    # warping with the interpolated deformations: same function as for registered frames
    warped = apply_deformations(movie, us_subset, nodes, frames=[5])
    np.testing.assert_array_equal(warped[5], warp(movie[5], us_subset[5], nodes).astype(np.float32))


def test_deformations_for_frames_interpolates_and_filters():
    us = np.ones((2, 2, 2, 2)) * np.array([1.0, 3.0]).reshape(2, 1, 1, 1)
    # the original's tinterpolate test: u=1 at frame 1, u=3 at frame 3
    out = deformations_for_frames(us, 5, tindex=[1, 3])
    np.testing.assert_allclose(out[:, 0, 0, 0], [1, 1, 2, 3, 3])
    rng = np.random.default_rng(0)
    series = rng.standard_normal((7, 2, 2, 2))
    filtered = deformations_for_frames(series, 7, medfilt=3)
    np.testing.assert_allclose(filtered[3], np.median(series[2:5], axis=0))
    np.testing.assert_array_equal(filtered[0], series[0])
    with pytest.raises(ParameterError, match="tindex"):
        deformations_for_frames(series, 9)
    with pytest.raises(ParameterError, match="tindex"):
        deformations_for_frames(series[:2], 9, tindex=[3, 1])


def test_output_types_round_clip_and_fill():
    values = np.array([-200.4, 3.5, 2.5, np.nan, 300.0, 7.2], dtype=np.float32)
    np.testing.assert_array_equal(to_output_dtype(values, np.int8), [-128, 4, 2, 0, 127, 7])
    np.testing.assert_array_equal(to_output_dtype(values, np.uint16), [0, 4, 2, 0, 300, 7])
    assert to_output_dtype(values, np.float64).dtype == np.float64
    with pytest.raises(ParameterError, match="dtype"):
        to_output_dtype(values, np.complex64)


def test_output_types_clip_32_bit_bounds_without_wrapping():
    # float32 cannot hold int32's max: clipping there rounds the bound up and the cast wraps
    values = np.array([3e9, -3e9, np.inf, -np.inf], dtype=np.float32)
    np.testing.assert_array_equal(to_output_dtype(values, np.int32),
                                  [2**31 - 1, -2**31, 2**31 - 1, -2**31])
    np.testing.assert_array_equal(to_output_dtype(values, np.uint32), [3e9, 0, 2**32 - 1, 0])


def test_select_frames():
    np.testing.assert_array_equal(select_frames(10, every=4), [0, 4, 8, 9])
    np.testing.assert_array_equal(select_frames(9, every=4), [0, 4, 8])
    np.testing.assert_array_equal(select_frames(10, every=4, include_last=False), [0, 4, 8])
    np.testing.assert_array_equal(select_frames(10, frames=[7, 2, 2, 5]), [2, 5, 7])
    for kwargs, field in [(dict(every=0), "every"), (dict(frames=[3, 12]), "frames"), ({}, "frames"),
                          (dict(every=2, frames=[1]), "frames"), (dict(frames=[1.5]), "frames")]:
        with pytest.raises(ParameterError) as info:
            select_frames(10, **kwargs)
        assert info.value.field == field
