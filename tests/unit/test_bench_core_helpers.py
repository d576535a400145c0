"""The benchmark's own arithmetic: suite2p shifts -> dense field, and the displacement RMSE.

The suite2p comparison is only as honest as these conversions, so they are checked against
independent computations: torch's interpolation as suite2p calls it, and suite2p's own warp.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


peer = _load("suite2p_peer")
bench = _load("bench_core")


def _blocks(shape, block, nblocks):
    """Row-major block edges laid out as suite2p's make_blocks does (evenly spaced starts)."""
    ystart = np.linspace(0, shape[0] - block[0], nblocks[0]).astype(int)
    xstart = np.linspace(0, shape[1] - block[1], nblocks[1]).astype(int)
    yblock = [np.array([y, y + block[0]]) for y in ystart for _ in xstart]
    xblock = [np.array([x, x + block[1]]) for _ in ystart for x in xstart]
    return yblock, xblock


def test_rigid_only_gives_constant_field():
    u = peer.dense_field([2, -1], [3, 4], None, None, [], [], (1, 1), (16, 20))
    assert u.shape == (2, 16, 20, 2)
    assert np.all(u[0, ..., 0] == 2) and np.all(u[1, ..., 1] == 4)


def test_block_values_reached_at_outer_centres_and_replicated_outside():
    rng = np.random.default_rng(0)
    shape, block, nb = (96, 80), (32, 32), (4, 3)
    yblock, xblock = _blocks(shape, block, nb)
    y1 = rng.normal(size=(1, nb[0] * nb[1]))
    x1 = rng.normal(size=(1, nb[0] * nb[1]))
    u = peer.dense_field([0], [0], y1, x1, yblock, xblock, nb, shape)
    grid = y1.reshape(nb)
    yc = [int(np.mean(yblock[i * nb[1]])) for i in range(nb[0])]
    xc = [int(np.mean(xblock[j])) for j in range(nb[1])]
    # outside the span of centres suite2p replicates the outermost samples
    np.testing.assert_allclose(u[0, 0, 0, 0], grid[0, 0], rtol=1e-6)
    np.testing.assert_allclose(u[0, -1, -1, 0], grid[-1, -1], rtol=1e-6)
    np.testing.assert_allclose(u[0, yc[0], xc[0], 0], grid[0, 0], rtol=1e-6)
    assert np.all(u[0, : yc[0], xc[0], 0] == u[0, yc[0], xc[0], 0])


def test_bad_block_shift_shape_is_rejected():
    with pytest.raises(ValueError, match="yoff1"):
        peer.dense_field([0], [0], np.zeros((1, 5)), np.zeros((1, 5)), *_blocks((64, 64), (32, 32), (2, 2)),
                         (2, 2), (64, 64))


def test_dense_field_matches_torch_interpolation():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    shape, block, nb = (128, 100), (64, 64), (3, 3)
    yblock, xblock = _blocks(shape, block, nb)
    y1, x1 = rng.normal(size=(2, 2, nb[0] * nb[1]))
    u = peer.dense_field([1, 0], [0, -2], y1, x1, yblock, xblock, nb, shape)
    # suite2p's recipe: bilinear with align_corners to the span of centres, then replicate padding
    yb = np.array(yblock[:: nb[1]]).mean(axis=1).astype(int)
    xb = np.array(xblock[: nb[1]]).mean(axis=1).astype(int)
    stack = torch.from_numpy(np.stack([y1, x1], axis=1).reshape(2, 2, *nb))
    up = F.interpolate(stack, size=(int(np.ptp(yb)), int(np.ptp(xb))), mode="bilinear", align_corners=True)
    up = F.pad(up, (int(xb.min()), shape[1] - int(xb.max()), int(yb.min()), shape[0] - int(yb.max())),
               mode="replicate").numpy()
    np.testing.assert_allclose(u[..., 0], up[:, 0] + np.array([1, 0])[:, None, None], atol=1e-5)
    np.testing.assert_allclose(u[..., 1], up[:, 1] + np.array([0, -2])[:, None, None], atol=1e-5)


def test_dense_field_reproduces_suite2p_warp():
    pytest.importorskip("suite2p")
    torch = pytest.importorskip("torch")
    from scipy import ndimage
    from suite2p.registration import nonrigid

    rng = np.random.default_rng(2)
    shape = (128, 128)
    yblock, xblock, nb = nonrigid.make_blocks(*shape, block_size=(64, 64))[:3]
    img = ndimage.gaussian_filter(rng.normal(size=shape), 3) * 1000
    y1, x1 = rng.uniform(-3, 3, size=(2, 1, nb[0] * nb[1])).astype(np.float32)
    warped = nonrigid.transform_data(torch.from_numpy(img[None].astype(np.float32)), nb, xblock, yblock,
                                     torch.from_numpy(y1), torch.from_numpy(x1)).numpy()
    u = peer.dense_field([0], [0], y1, x1, yblock, xblock, nb, shape)[0]
    coords = np.indices(shape) + np.moveaxis(u, -1, 0)
    ours = ndimage.map_coordinates(img, coords, order=1, mode="nearest")
    inner = (slice(4, -4), slice(4, -4))
    # suite2p rounds its output to int16: one count of tolerance
    np.testing.assert_allclose(ours[inner], warped[inner], atol=1.0)


def test_rmse_ignores_the_border_and_measures_the_vector_error():
    shape, maxshift = (20, 30), (3, 4)
    u_true = np.zeros((2, *shape, 2))
    u_est = u_true.copy()
    u_est[..., 0] = 3.0
    u_est[..., 1] = 4.0
    u_est[:, :3] = 100.0        # border rows: excluded
    assert bench.displacement_rmse(u_est, u_true, maxshift) == pytest.approx(5.0)
    assert bench.displacement_rmse(u_est, u_true, maxshift, axes=(1,)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="u_est"):
        bench.displacement_rmse(u_est[:1], u_true, maxshift)


def test_to_int16_halves_only_when_uint16_would_overflow():
    small = np.array([0, 1000, 32767], dtype=np.uint16)
    np.testing.assert_array_equal(peer.to_int16(small), small.astype(np.int16))
    big = np.array([0, 1000, 65534], dtype=np.uint16)
    np.testing.assert_array_equal(peer.to_int16(big), [0, 500, 32767])
    # a template converted with its movie's decision gets the same mapping even when it is dim
    np.testing.assert_array_equal(peer.to_int16(small, halve=True), [0, 500, 16384])
