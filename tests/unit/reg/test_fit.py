"""Quadratic fits: ports of RegisterFit's tests (for opt=True, the original's default, and where they
apply for the heuristic opt=False) and agreement of the vectorised mms_to_fit with qfit."""
import numpy as np
import pytest

from blockreg.reg.fit import mms_to_fit, qbuild, qfit, uclamp, uisvalid


def quadratic(m, n, shift, Q):
    """RegisterUtilities.quadratic, 0-based: v^T Q v with v = (i, j) - (m//2, n//2) - shift."""
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    v = np.stack([i - m // 2 - shift[0], j - n // 2 - shift[1]], axis=-1)
    return np.einsum("...i,ij,...j->...", v, np.asarray(Q, dtype=float), v)


def random_psd(rng):
    q = rng.random((2, 2))
    return q.T @ q


def as_mm(num, denom):
    return np.stack([num, denom])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qfit_exact_quadratic_opt(seed):
    rng = np.random.default_rng(seed)
    Q = random_psd(rng)
    num = quadratic(11, 11, [1, -2], Q)
    E0, u0, Qf = qfit(as_mm(num, np.ones((11, 11))), 1e-3, opt=True)
    assert abs(E0) < np.finfo(float).eps
    np.testing.assert_allclose(u0, [1, -2])
    np.testing.assert_allclose(Qf, Q, rtol=1e-8, atol=1e-12)

    E0, u0, Qf = qfit(as_mm(num + 5, np.ones((11, 11))), 1e-3, opt=True)
    assert E0 == pytest.approx(5)
    np.testing.assert_allclose(u0, [1, -2])
    np.testing.assert_allclose(Qf, Q, rtol=1e-8, atol=1e-12)

    # num and denom scaled by the same random positive factor: the ratio is unchanged.
    thresh = 1e-3
    num = quadratic(11, 13, [2, -4], Q)
    scale = rng.random(num.shape) + thresh
    E0, u0, Qf = qfit(as_mm(num * scale, scale), thresh, opt=True)
    assert abs(E0) < np.finfo(float).eps
    np.testing.assert_allclose(u0, [2, -4])
    np.testing.assert_allclose(Qf, Q, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("opt", [False, True])
def test_qfit_minimum_and_isotropic_curvature(opt):
    # The heuristic is exact when Q is a multiple of the identity (dE = c V4 = M (cI) M).
    num = 2.5 * quadratic(11, 13, [2, -4], np.eye(2)) + 1.0
    E0, u0, Qf = qfit(as_mm(num, np.ones(num.shape)), 1e-3, opt=opt)
    assert E0 == pytest.approx(1.0)
    np.testing.assert_array_equal(u0, [2, -4])
    np.testing.assert_allclose(Qf, 2.5 * np.eye(2), rtol=1e-10, atol=1e-12)


def test_qfit_heuristic_is_psd_and_close_to_truth():
    rng = np.random.default_rng(3)
    Q = random_psd(rng) + 0.2 * np.eye(2)
    num = quadratic(11, 11, [1, -2], Q)
    _, u0, Qf = qfit(as_mm(num, np.ones(num.shape)), 1e-3, opt=False)
    np.testing.assert_array_equal(u0, [1, -2])
    assert np.linalg.eigvalsh(Qf).min() >= -1e-12
    # A moment estimate, not a fit: right scale, not exact.
    assert 0.3 < np.trace(Qf) / np.trace(Q) < 3


def test_qfit_degenerate_axis():
    Q = np.array([[1.0, 0.0], [0.0, 0.0]])
    num = quadratic(13, 11, [2, -4], Q)
    E0, u0, Qf = qfit(as_mm(num, np.ones(num.shape)), 1e-3, opt=True)
    assert abs(E0) < np.finfo(float).eps
    assert u0[0] == pytest.approx(2)
    np.testing.assert_allclose(Qf, Q, atol=1e-12)


def test_qfit_rank_one():
    a = np.random.default_rng(4).random(2) + 0.1
    Q = np.outer(a, a)
    num = quadratic(13, 11, [2, -4], Q)
    E0, u0, Qf = qfit(as_mm(num, np.ones(num.shape)), 1e-3, opt=True)
    assert abs(E0) < np.finfo(float).eps
    # the minimum is a valley: u0 may sit anywhere along it
    assert abs(np.dot(u0 - [2, -4], a)) < np.finfo(float).eps
    np.testing.assert_allclose(Qf, Q, atol=1e-12)


@pytest.mark.parametrize("opt", [False, True])
def test_qfit_few_supra_threshold_points_do_not_raise(opt):
    rng = np.random.default_rng(5)
    Q = random_psd(rng)
    denom = np.ones((5, 5))
    num = quadratic(5, 5, [0, 0], Q)
    for idx in [(0, 0), (1, 0), (4, 4)]:
        denom[idx] *= 100
        num[idx] *= 100
    E0, u0, Qf = qfit(as_mm(num, denom), 2, opt=opt)
    assert np.isfinite(E0) and np.isfinite(u0).all() and np.isfinite(Qf).all()


def test_qfit_nothing_above_threshold():
    E0, u0, Q = qfit(as_mm(np.random.default_rng(6).random((5, 5)), np.zeros((5, 5))), 1.0)
    assert E0 == 0 and not u0.any() and not Q.any()


def test_qfit_column_major_tie_breaking():
    # Two equal minima, at (0, 1) and (1, 0) relative to the centre; column-major order meets
    # (1, 0) first (it lies in an earlier column).
    num = np.ones((5, 5))
    num[2, 3] = num[3, 2] = 0
    E0, u0, _ = qfit(as_mm(num, np.ones((5, 5))), 0.5)
    assert E0 == 0
    np.testing.assert_array_equal(u0, [1, 0])
    E0s, cs, _ = mms_to_fit(as_mm(num, np.ones((5, 5)))[None, None], 0.5)
    np.testing.assert_array_equal(cs[0, 0], [1, 0])


def test_qfit_maxsep_limits_the_fit():
    num = quadratic(11, 11, [0, 0], np.eye(2))
    num[0, :] = 1000  # far-away junk that maxsep excludes
    _, _, Qfar = qfit(as_mm(num, np.ones(num.shape)), 0.5, opt=True)
    _, _, Qnear = qfit(as_mm(num, np.ones(num.shape)), 0.5, maxsep=(3, 3), opt=True)
    np.testing.assert_allclose(Qnear, np.eye(2), atol=1e-10)
    assert not np.allclose(Qfar, np.eye(2), atol=1e-3)


def test_qbuild():
    A = qbuild(2, [-1, 1], np.diag([0.3, 0.5]), (5, 5))
    s = np.arange(-5, 6)
    np.testing.assert_allclose(A, 0.3 * (s[:, None] + 1) ** 2 + 0.5 * (s[None, :] - 1) ** 2 + 2)


def test_qbuild_roundtrip_through_qfit():
    Q = np.array([[0.7, 0.2], [0.2, 0.4]])
    A = qbuild(1.5, [1, -2], Q, (4, 5))
    E0, u0, Qf = qfit(as_mm(A, np.ones(A.shape)), 0.5, opt=True)
    assert E0 == pytest.approx(1.5)
    np.testing.assert_array_equal(u0, [1, -2])
    np.testing.assert_allclose(Qf, Q, atol=1e-10)


def test_uisvalid_and_uclamp():
    maxshift = (3, 3, 4)
    assert uisvalid(np.array([1.0, -2.0, 0.5]), maxshift)
    assert not uisvalid(np.array([2.6, -2.0, 0.5]), maxshift)
    u = np.array([[5.0, -6.0, 0.1], [0.0, 2.0, -3.6]])
    snapshot = u.copy()
    c = uclamp(u, maxshift)
    np.testing.assert_array_equal(u, snapshot)  # non-mutating
    np.testing.assert_allclose(c, [[2.49, -2.49, 0.1], [0.0, 2.0, -3.49]])
    assert uisvalid(c, maxshift)
    with pytest.raises(ValueError, match="maxshift"):
        uclamp(u, 3)


def quadratic_mms(rng, gridsize, m, n):
    """Random quadratic mismatches (exact integer centres, random PSD Q, random positive scale)."""
    shape = tuple(2 * k + 1 for k in m)
    coords = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in m], indexing="ij"), axis=-1)
    mms = np.empty(gridsize + (2,) + shape)
    for idx in np.ndindex(*gridsize):
        c = rng.integers(-np.array(m), np.array(m) + 1)
        a = rng.standard_normal((n, n))
        Q = a @ a.T + 0.1 * np.eye(n)
        v = coords - c
        num = np.einsum("...i,ij,...j->...", v, Q, v) + rng.random()
        scale = rng.random(shape) + 0.5
        mms[idx] = np.stack([num * scale, scale])
    return mms


@pytest.mark.parametrize("gridsize, m", [((3, 4), (3, 2)), ((2, 2, 3), (1, 2, 2))])
@pytest.mark.parametrize("opt", [False, True])
def test_mms_to_fit_equals_qfit_per_aperture(gridsize, m, opt):
    rng = np.random.default_rng(7)
    mms = quadratic_mms(rng, gridsize, m, len(m))
    # aperture (0, ...) has nothing above threshold, aperture (1, ...) a degenerate flat mismatch
    mms[(0,) * len(gridsize)][1] = 0
    mms[(1,) + (0,) * (len(gridsize) - 1)][0] = 1.0
    mms[(1,) + (0,) * (len(gridsize) - 1)][1] = 1.0
    thresh = 0.6
    mms[..., 1, :][mms[..., 1, :] < 0.6] = 0  # some entries below threshold
    E0s, cs, Qs = mms_to_fit(mms, thresh, opt=opt)
    assert E0s.shape == gridsize and cs.shape == gridsize + (len(m),)
    assert Qs.shape == gridsize + (len(m), len(m))
    for idx in np.ndindex(*gridsize):
        E0, u0, Q = qfit(mms[idx], thresh, opt=opt)
        assert E0s[idx] == pytest.approx(E0, abs=1e-12)
        np.testing.assert_array_equal(cs[idx], u0)
        np.testing.assert_allclose(Qs[idx], Q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("opt", [False, True])
def test_mms_to_fit_per_aperture_thresholds(opt):
    rng = np.random.default_rng(11)
    gridsize, m = (3, 2), (2, 3)
    mms = quadratic_mms(rng, gridsize, m, 2)
    thresh = rng.random(gridsize) + 0.2          # the scale factors are in [0.5, 1.5)
    E0s, cs, Qs = mms_to_fit(mms, thresh, opt=opt)
    for idx in np.ndindex(*gridsize):
        E0, u0, Q = qfit(mms[idx], thresh[idx], opt=opt)
        assert E0s[idx] == pytest.approx(E0, abs=1e-12)
        np.testing.assert_array_equal(cs[idx], u0)
        np.testing.assert_allclose(Qs[idx], Q, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        mms_to_fit(mms, np.ones((2, 2)))


def test_mms_to_fit_float32_uses_float32_eps():
    rng = np.random.default_rng(8)
    mms = quadratic_mms(rng, (2, 2), (2, 2), 2).astype(np.float32)
    E0s, cs, Qs = mms_to_fit(mms, 0.1)
    for idx in np.ndindex(2, 2):
        E0, u0, Q = qfit(mms[idx], 0.1)
        np.testing.assert_array_equal(cs[idx], u0)
        np.testing.assert_allclose(Qs[idx], Q, rtol=1e-9, atol=1e-12)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="mm"):
        qfit(np.ones((3, 5, 5)), 0.1)
    with pytest.raises(ValueError, match="mms"):
        mms_to_fit(np.ones((2, 2, 3, 5, 5)), 0.1)
