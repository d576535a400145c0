"""The ground-truth generator, checked independently of the registration code."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from blockreg.reg.deformation import nodes_for_shape
from blockreg.reg.warp import interpolate_linear
from blockreg.synthetic import grid_truth, make_movie, make_texture


def _interior(shape, margins):
    return tuple(slice(m, n - m) for m, n in zip(margins, shape))


def _warp_dense(img, u, order):
    """Sample ``img`` at x + u(x) with scipy (independent of blockreg's warp)."""
    coords = np.indices(img.shape, dtype=np.float64) + np.moveaxis(u, -1, 0)
    return ndi.map_coordinates(np.asarray(img, dtype=np.float64), coords, order=order, mode="nearest")


@pytest.mark.parametrize("shape,mt,ml", [((80, 96), 6, 2), ((12, 48, 56), (1, 4, 4), (0.5, 2, 2))])
def test_u_true_undoes_the_deformation(shape, mt, ml):
    movie, fixed, u_true = make_movie(shape, 3, max_translation=mt, max_local=ml, seed=2, noise=False)
    assert movie.shape == (3,) + shape and u_true.shape == (3,) + shape + (len(shape),)
    margins = np.broadcast_to(np.ceil(np.asarray(mt) + np.asarray(ml)).astype(int) + 1, (len(shape),))
    inner = _interior(shape, margins)
    scale = fixed[inner].std()
    for t in range(3):
        # cubic sampling isolates the generator's map: only interpolation error of the texture
        cubic = _warp_dense(movie[t], u_true[t], order=3)
        assert np.abs(cubic - fixed)[inner].max() < 0.05 * scale
        # the package's convention: warp(moving, u_true) ~ fixed (linear interpolation)
        linear = interpolate_linear(movie[t].astype(np.float64), tuple(np.moveaxis(u_true[t], -1, 0)))
        rms_true = np.sqrt(np.mean((linear - fixed)[inner] ** 2))
        assert rms_true < 0.05 * scale
        # ...and a field off by half a pixel is clearly worse: the check can fail
        off = _warp_dense(movie[t], u_true[t] + 0.5, order=3)
        assert np.sqrt(np.mean((off - fixed)[inner] ** 2)) > 3 * rms_true


def test_amplitudes_and_reproducibility():
    kw = dict(max_translation=(1, 5), max_local=(0.5, 2), seed=7)
    movie, fixed, u = make_movie((64, 80), 6, **kw)
    movie2, _, u2 = make_movie((64, 80), 6, **kw)
    np.testing.assert_array_equal(movie, movie2)
    np.testing.assert_array_equal(u, u2)
    peak = np.abs(u).reshape(6, -1, 2).max(axis=1)
    assert (peak <= np.array([1.5, 7.0]) + 1e-6).all()
    assert (peak[:, 1] > 0.5).any()                      # something actually moves
    assert not np.array_equal(make_movie((64, 80), 1, seed=8)[0], movie[:1])


def test_shot_noise_statistics():
    movie, fixed, u = make_movie((64, 64), 1, max_translation=0, max_local=0, photons=50, bias=100,
                                 seed=3)
    assert movie.dtype == np.uint16
    counts = movie[0].astype(np.float64) - 100
    expected = fixed - 100
    # Poisson: mean equals variance; compare residual variance with the mean count
    resid = counts - expected
    assert abs(resid.mean()) < 0.1
    assert resid.var() == pytest.approx(expected.mean(), rel=0.1)


def test_texture_has_cells_and_dark_vessels():
    rng = np.random.default_rng(0)
    tex = make_texture((128, 128), rng)
    assert tex.min() == 0 and tex.max() == 1
    # bright cell bodies and a dark background/neuropil: a skewed histogram
    assert tex.mean() > np.median(tex) and np.percentile(tex, 99) > 3 * np.median(tex)


def test_real_texture_is_used():
    tex = np.add.outer(np.arange(100.0), np.arange(120.0))
    movie, fixed, u = make_movie((60, 70), 1, max_translation=3, max_local=1, texture=tex, noise=False)
    g = np.gradient(fixed)
    assert np.allclose(g[0][2:-2, 2:-2], g[0][5, 5]) and np.allclose(g[1][2:-2, 2:-2], g[1][5, 5])
    with pytest.raises(ValueError, match="texture"):
        make_movie((90, 70), 1, max_translation=10, texture=tex)


def test_grid_truth_samples_nodes():
    u = np.zeros((2, 21, 31, 2))
    yy, xx = np.indices((21, 31), dtype=float)
    u[1, ..., 0] = 0.5 * yy
    u[1, ..., 1] = -0.25 * xx + 1
    nodes = nodes_for_shape((21, 31), (3, 4))
    g = grid_truth(u, nodes)
    assert g.shape == (2, 3, 4, 2)
    ny, nx = np.meshgrid(*nodes, indexing="ij")
    np.testing.assert_allclose(g[1, ..., 0], 0.5 * ny)
    np.testing.assert_allclose(g[1, ..., 1], -0.25 * nx + 1)
    np.testing.assert_allclose(grid_truth(u[1], nodes), g[1])


@pytest.mark.parametrize("kw", [dict(shape=(64,)), dict(nframes=0), dict(max_translation=-1),
                                dict(max_local=(1, 2, 3)), dict(photons=0)])
def test_bad_arguments(kw):
    args = dict(shape=(32, 32), nframes=1)
    args.update(kw)
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        make_movie(args.pop("shape"), args.pop("nframes"), **args)
