"""medfilt and tinterpolate (ports of RegisterDeformation's time-series tests)."""
import numpy as np
import pytest

from blockreg.reg.deformation import GridDeformation, grid_deformations
from blockreg.reg.timeseries import medfilt, tinterpolate

NODES = (np.linspace(0, 9, 3), np.linspace(0, 10, 3))


def test_tinterpolate_original_case():
    # u = 1 at frame 1 and u = 3 at frame 3 (0-based), five frames
    nodes = (np.linspace(0, 19, 2),)
    phis = [GridDeformation(np.full((2, 1), 1.0), nodes), GridDeformation(np.full((2, 1), 3.0), nodes)]
    out = tinterpolate(phis, [1, 3], 5)
    assert len(out) == 5 and all(isinstance(p, GridDeformation) for p in out)
    expected = [1.0, 1.0, 2.0, 3.0, 3.0]
    for phi, e in zip(out, expected):
        assert np.all(phi.u == e)


def test_tinterpolate_array_matches_per_entry_interpolation():
    rng = np.random.default_rng(0)
    tindex = np.array([2, 3, 7, 11])
    us = rng.normal(size=(4, 3, 2, 2))
    out = tinterpolate(us, tindex, 14)
    assert out.shape == (14, 3, 2, 2)
    for idx in np.ndindex(us.shape[1:]):
        np.testing.assert_allclose(out[(slice(None),) + idx], np.interp(np.arange(14), tindex, us[(slice(None),) + idx]),
                                   rtol=1e-12, atol=1e-12)


def test_tinterpolate_single_frame_is_constant():
    us = np.random.default_rng(1).normal(size=(1, 3, 2, 2))
    out = tinterpolate(us, [4], 6)
    np.testing.assert_array_equal(out, np.broadcast_to(us, (6, 3, 2, 2)))


@pytest.mark.parametrize("tindex,nframes", [([3, 3], 5), ([3, 1], 5), ([0, 5], 5), ([-1, 2], 5), ([0.5, 2], 5)])
def test_tinterpolate_bad_tindex(tindex, nframes):
    with pytest.raises(ValueError, match="tindex"):
        tinterpolate(np.zeros((2, 2, 1)), tindex, nframes)


def test_medfilt_original_case():
    u = np.random.default_rng(2).random((9, 3, 3, 2))
    phis = grid_deformations(u, NODES)
    filtered = medfilt(phis, 3)
    assert len(filtered) == 9 and isinstance(filtered[0], GridDeformation)
    v = filtered[2].u[1, 1]
    assert v[0] == np.median(u[1:4, 1, 1, 0]) and v[1] == np.median(u[1:4, 1, 1, 1])


@pytest.mark.parametrize("n", [1, 3, 5])
def test_medfilt_array_window_and_untouched_ends(n):
    u = np.random.default_rng(3).normal(size=(10, 2, 3, 2))
    out = medfilt(u, n)
    h = n // 2
    for t in range(10):
        if h <= t < 10 - h:
            expected = np.sort(u[t - h:t + h + 1], axis=0)[h]
        else:
            expected = u[t]
        np.testing.assert_array_equal(out[t], expected)
    assert out is not u


def test_medfilt_shorter_series_than_window_is_unchanged():
    u = np.random.default_rng(4).normal(size=(2, 2, 2, 2))
    np.testing.assert_array_equal(medfilt(u, 5), u)


@pytest.mark.parametrize("n", [0, 2, -3, 2.0])
def test_medfilt_bad_window(n):
    with pytest.raises(ValueError, match="n: must"):
        medfilt(np.zeros((5, 2, 1)), n)


def test_bad_series_shape():
    with pytest.raises(ValueError, match="us"):
        medfilt(np.zeros((5, 2, 3)), 3)
