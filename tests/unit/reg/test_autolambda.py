"""Tests of blockreg.reg.autolambda (RegisterOptimize.jl's auto_λ, auto_λt, fit_sigmoid)."""
import math

import numpy as np
import pytest

from blockreg.reg.autolambda import auto_lambda, auto_lambda_t, fit_sigmoid
from blockreg.reg.penalty import AffinePenalty, data_penalty, interpolate_mm
from helpers.quadratics import nodes_over, quadratic_mms


@pytest.mark.parametrize("params", [(0.2, 3.0, 14.3, 1.5), (5.0, 6.5, 16.0, 2.0)])
def test_fit_sigmoid_recovers_parameters(params):
    bottom, top, center, width = params
    k = np.arange(1, 31)
    data = bottom + (top - bottom) / (1 + np.exp(-(k - center) / width))
    b, t, c, w, objective = fit_sigmoid(data)
    span = abs(top - bottom)
    # bottom/top are bounded by the data range, which a finite sigmoid never quite reaches
    assert b == pytest.approx(bottom, abs=0.01 * span)
    assert t == pytest.approx(top, abs=0.01 * span)
    assert c == pytest.approx(center, abs=0.05)
    assert w == pytest.approx(width, rel=0.01)
    assert objective < 1e-4


def test_fit_sigmoid_rejects_short_or_nonfinite():
    with pytest.raises(ValueError, match="data"):
        fit_sigmoid([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="data"):
        fit_sigmoid([1.0, 2.0, np.nan, 4.0])


def _non_affine_case(seed=0):
    rng = np.random.default_rng(seed)
    gridsize, maxshift = (3, 3), (6, 6)
    nodes = nodes_over((60, 60), gridsize)
    cs = rng.uniform(-3, 3, gridsize + (2,))
    Qs = np.broadcast_to(np.eye(2), gridsize + (2, 2)).copy()
    mmis = interpolate_mm(quadratic_mms(cs, Qs, maxshift))
    return nodes, cs, Qs, mmis


def test_auto_lambda_on_synthetic_quadratics():
    nodes, cs, Qs, mmis = _non_affine_case()
    ap = AffinePenalty(nodes, 0.5)
    lam_range = (1e-3, 1e3)
    phi, penalty, lam, lams, datapenalty, quality = auto_lambda(cs, Qs, nodes, ap, mmis, lam_range)
    assert ap.lam == 0.5  # the sweep must not change the caller's penalty
    assert lams.size == math.ceil(math.log2(1e6))
    np.testing.assert_allclose(lams, 1e-3 * 2.0 ** np.arange(lams.size))
    assert lam_range[0] <= lam <= lam_range[1] and lam in lams
    assert math.isfinite(quality) and quality >= 0
    # quality is the original's scale-dependent quantity: the sigmoid fit's (already normalised)
    # residual divided once more by (top - bottom)**2, per lambda
    bottom, top, _, _, objective = fit_sigmoid(datapenalty)
    assert quality == pytest.approx(objective / (top - bottom) ** 2 / lams.size, rel=1e-12)
    # The data penalty rises from ~0 (u follows c) to the affine-fit residual as lambda grows.
    assert datapenalty[0] < 1e-3 < datapenalty[-1]
    assert np.all(np.diff(datapenalty) > -1e-6)
    assert data_penalty(np.asarray(phi.u), mmis)[0] == pytest.approx(datapenalty[lams == lam][0])
    ap.lam = lam
    assert penalty == pytest.approx(ap(np.asarray(phi.u))[0] + data_penalty(np.asarray(phi.u), mmis)[0])


def test_auto_lambda_needs_four_lambdas():
    nodes, cs, Qs, mmis = _non_affine_case()
    with pytest.raises(ValueError, match="lam_range"):
        auto_lambda(cs, Qs, nodes, AffinePenalty(nodes, 1.0), mmis, (1.0, 8.0))
    with pytest.raises(ValueError, match="lam_range"):
        auto_lambda(cs, Qs, nodes, AffinePenalty(nodes, 1.0), mmis, (1.0, 0.5))


def test_auto_lambda_t_limits():
    rng = np.random.default_rng(1)
    T, gridsize = 4, (2, 2)
    nodes = nodes_over((20, 20), gridsize)
    cs = rng.standard_normal((T,) + gridsize + (2,))
    Qs = np.broadcast_to(np.eye(2), cs.shape + (2,)).copy()
    Es = rng.uniform(0, 1, (T,) + gridsize)
    ap = AffinePenalty(nodes, 0.0)
    lam_ts, dp = auto_lambda_t(Es, cs, Qs, ap, (1e-6, 1e6))
    assert np.all(np.diff(dp) >= -1e-9)
    # weak temporal coupling: u0 = cs; strong: u0 = the temporal mean of cs at every node
    assert dp[0] == pytest.approx(Es.sum() / 4, rel=1e-4)
    d = cs - cs.mean(axis=0)
    assert dp[-1] == pytest.approx((Es.sum() + np.sum(d * d)) / 4, rel=1e-4)
