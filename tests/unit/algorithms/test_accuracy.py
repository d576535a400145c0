"""Registration accuracy against the synthetic ground truth, and the original's worker tests.

Targets (the issue's): 2-D 512x512, grid 8x8, maxshift 15, translations up to 10 px plus local
deformation up to 3 px, shot noise: dense displacement RMSE <= 0.25 px (one pass) and <= 0.15 px
(two passes); 3-D 24x256x256, grid (4, 8, 8), maxshift (3, 10, 10): RMSE <= 0.3 px.  The RMSE is
over pixels more than ``maxshift`` from the border (where the moving frame covers the fixed one).
Every frame must also match the fixed image better after warping than before.

The ports of RegisterWorkerApertures' ``apertured.jl`` use a synthetic texture instead of the
cameraman image, with the original's grid, maxshift, lambda and pass criteria.
"""
import numpy as np
import pytest

from blockreg.algorithms.apertures import Apertures
from blockreg.reg.deformation import GridDeformation, nodes_for_shape
from blockreg.reg.mismatch import mismatch_zeroshift
from blockreg.reg.preprocess import PreprocessSNF
from blockreg.reg.warp import warp
from blockreg.runner import register
from blockreg.synthetic import make_movie, make_texture

BIAS = 100
CELL_RADIUS = 5.0


def _mismatch(fixed, img):
    num, denom = np.asarray(mismatch_zeroshift(fixed, img, normalization="intensity"))
    return num / denom


def _preprocess(ndim):
    # sqrt-flattened shot noise; high-pass of about three cell diameters removes the neuropil haze
    return PreprocessSNF(bias=BIAS, sigma_lp=0, sigma_hp=[6 * CELL_RADIUS] * ndim)


def _make(shape, nframes, mt, ml, seed, smoothness=None):
    return make_movie(shape, nframes, max_translation=mt, max_local=ml, bias=BIAS, seed=seed,
                      cell_radius=CELL_RADIUS, smoothness=smoothness)


def _evaluate(data, gridsize, maxshift, passes=1, lam=1e-3):
    """Register a synthetic movie; return per-frame dense RMSE and mismatches (raw, warped)."""
    movie, fixed_clean, u_true = data
    shape = fixed_clean.shape
    pp = _preprocess(len(shape))
    fixed = pp(fixed_clean)
    nodes = nodes_for_shape(shape, gridsize)
    alg = Apertures(fixed, nodes, maxshift, lam, preprocess=pp, passes=passes)
    out = register(movie, alg, monitor=("u", "warped"))
    inner = tuple(slice(m, n - m) for m, n in zip(maxshift, shape))
    rmse, before, after = [], [], []
    for t in range(movie.shape[0]):
        est = np.stack(GridDeformation(out["u"][t], nodes).field(shape, dtype=np.float64), axis=-1)
        err = (est - u_true[t])[inner]
        rmse.append(float(np.sqrt(np.mean(np.sum(err**2, axis=-1)))))
        before.append(_mismatch(fixed, pp(movie[t])))
        after.append(_mismatch(fixed, out["warped"][t]))
    return np.array(rmse), np.array(before), np.array(after)


# --- fast versions (every CI run) ------------------------------------------------------------

# The local field varies on the scale ``smoothness``; the grid must sample it (as in the full-size
# runs, smoothness is about 2.3 node spacings), or the error measures the model, not the algorithm.

def test_small_2d_accuracy():
    data = _make((128, 128), 2, mt=4, ml=1.5, seed=11, smoothness=100)
    rmse, before, after = _evaluate(data, (4, 4), (8, 8))
    assert (rmse <= 0.25).all(), rmse
    assert (after < before).all()


def test_small_3d_accuracy():
    data = _make((12, 64, 64), 2, mt=(1, 3, 3), ml=(0.5, 1, 1), seed=12, smoothness=50)
    rmse, before, after = _evaluate(data, (3, 4, 4), (2, 6, 6))
    assert (rmse <= 0.3).all(), rmse
    assert (after < before).all()


# --- full size (the targets) ---------------------------------------------------------

@pytest.fixture(scope="module")
def movie_2d():
    return _make((512, 512), 3, mt=10, ml=3, seed=1)


@pytest.mark.slow
def test_2d_512_single_pass(movie_2d):
    rmse, before, after = _evaluate(movie_2d, (8, 8), (15, 15))
    assert (rmse <= 0.25).all(), rmse
    assert (after < before).all()


@pytest.mark.slow
def test_2d_512_two_passes(movie_2d):
    rmse, before, after = _evaluate(movie_2d, (8, 8), (15, 15), passes=2)
    assert (rmse <= 0.15).all(), rmse
    assert (after < before).all()


@pytest.mark.slow
def test_3d_24x256x256():
    # y/x translation up to 6 plus local 3 stays inside maxshift 10 (13 would not be findable)
    data = _make((24, 256, 256), 3, mt=(2, 6, 6), ml=(1, 3, 3), seed=2)
    rmse, before, after = _evaluate(data, (4, 8, 8), (3, 10, 10))
    assert (rmse <= 0.3).all(), rmse
    assert (after < before).all()


# --- ports of RegisterWorkerApertures test/apertured.jl --------------------------------------

@pytest.fixture(scope="module")
def textured():
    rng = np.random.default_rng(123)
    big = make_texture((260, 260), rng, cell_radius=CELL_RADIUS) * 1000 + 10
    return big


def test_original_constant_shifts(textured):
    """Shifts (t, 5 - t), 5x5 grid, maxshift 15, lambda 0.001: |u - u_true| < 0.5, mismatch drops."""
    off = 30
    fixed = textured[off:off + 200, off:off + 200]
    nodes = nodes_for_shape(fixed.shape, (5, 5))
    shifts = np.array([(t, 5 - t) for t in range(1, 5)])
    # moving(x) = fixed(x + s)  =>  warp(moving, -s) = fixed, so u_true = -s
    movie = np.stack([textured[off + a:off + a + 200, off + b:off + b + 200] for a, b in shifts])
    alg = Apertures(fixed, nodes, (15, 15), 1e-3)
    out = register(movie, alg, monitor=("u", "warped"))
    for t, s in enumerate(shifts):
        assert np.abs(out["u"][t] + s).max() < 0.5
        assert _mismatch(fixed, out["warped"][t]) < _mismatch(fixed, movie[t])


@pytest.mark.parametrize("preprocessed", [False, True])
def test_original_random_deformations(textured, preprocessed):
    """4 frames warped by 5*randn on the 5x5 grid: at most 2 fail to improve (warped and warped0)."""
    fixed0 = textured[30:230, 30:230]
    nodes = nodes_for_shape(fixed0.shape, (5, 5))
    rng = np.random.default_rng(0)
    movie = np.stack([warp(fixed0, GridDeformation(5 * rng.standard_normal((5, 5, 2)), nodes))
                      for _ in range(4)])
    if preprocessed:
        pp = PreprocessSNF(0.1, [2, 2], [10, 10])
        fixed, monitor = pp(fixed0), ("warped", "warped0")
    else:
        pp, fixed, monitor = None, fixed0, ("warped",)
    alg = Apertures(fixed, nodes, (15, 15), 1e-3, preprocess=pp)
    out = register(movie, alg, monitor=monitor)
    moving_pp = [movie[t] if pp is None else pp(movie[t]) for t in range(4)]
    fails = sum(_mismatch(fixed, out["warped"][t]) >= _mismatch(fixed, moving_pp[t]) for t in range(4))
    assert fails <= 2
    if preprocessed:
        fails0 = sum(_mismatch(fixed0, out["warped0"][t]) >= _mismatch(fixed0, movie[t]) for t in range(4))
        assert fails0 <= 2
