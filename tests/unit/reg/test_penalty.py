"""Tests of blockreg.reg.penalty, ported from RegisterPenalty.jl's test suite (reference §8).

Gradients are checked against central finite differences of the value (an independent
computation); the analytic cases (1x1 grid, biquadratic 2x2 grid) against closed forms.
"""
import math

import numpy as np
import pytest

from blockreg.reg import deformation
from blockreg.reg.penalty import (
    AffinePenalty,
    data_penalty,
    interpolate_mm,
    temporal_penalty,
    total_penalty,
    total_penalty_series,
)
from helpers.quadratics import nodes_over, quadratic_mms


def numeric_grad(f, u, h=1e-6):
    """Central finite differences of the scalar function ``f`` at ``u``."""
    g = np.zeros_like(u)
    for idx in np.ndindex(u.shape):
        up = u.copy()
        um = u.copy()
        up[idx] += h
        um[idx] -= h
        g[idx] = (f(up) - f(um)) / (2 * h)
    return g


# ---------------------------------------------------------------- AffinePenalty


def affine_u(nodes, A, b):
    X = np.stack(np.meshgrid(*nodes, indexing="ij"), -1)
    return X @ (A - np.eye(len(nodes))).T + b


@pytest.mark.parametrize("kind", ["translation", "rotation", "stretch"])
def test_affine_penalty_zero_for_affine(kind):
    nodes = nodes_over((1000, 1002), (9, 7))
    ap = AffinePenalty(nodes, 1.0)
    rng = np.random.default_rng(1)
    if kind == "translation":
        A, b = np.eye(2), np.array([3.3, -2.6])
    elif kind == "rotation":
        t = np.deg2rad(10)
        A, b = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]), np.zeros(2)
    else:
        A, b = np.eye(2) + 0.1 * rng.standard_normal((2, 2)), rng.standard_normal(2)
    u = affine_u(nodes, A, b)
    value, grad = ap(u)
    assert abs(value) < 1e-12
    assert np.max(np.abs(grad)) < 1e-12
    # ... and it is not zero for a non-affine field, so the check above can fail
    assert ap(u + rng.standard_normal(u.shape))[0] > 1e-3


def test_affine_penalty_gradient_and_lam():
    nodes = nodes_over((100, 80), (4, 3))
    rng = np.random.default_rng(2)
    u = rng.standard_normal((4, 3, 2))
    ap = AffinePenalty(nodes, 0.7)
    value, grad = ap(u)
    np.testing.assert_allclose(grad, numeric_grad(lambda v: ap(v)[0], u), rtol=1e-6, atol=1e-8)
    ap.lam = 1.4
    assert ap(u)[0] == pytest.approx(2 * value)
    ap.lam = 0
    assert ap(u)[0] == 0
    with pytest.raises(ValueError, match="lam"):
        ap.lam = -1
    with pytest.raises(ValueError, match="u: must have shape"):
        ap(u[:3])


# ---------------------------------------------------------------- data penalty


def one_aperture_case():
    # num = p p^T with p = (x - 1.75)^2 over the 1-based shift index x = 1..7 (maxshift 3)
    p = (np.arange(1, 8) - 1.75) ** 2
    num = np.outer(p, p)
    mms = np.stack([num, np.ones_like(num)])[None, None]
    return interpolate_mm(mms, bc="quadratic")


def test_data_penalty_one_aperture():
    mmis = one_aperture_case()
    value, grad = data_penalty(np.zeros((1, 1, 2)), mmis)
    assert value == pytest.approx(2.25**4, rel=1e-12)
    assert grad[0, 0, 0] == pytest.approx(2 * 2.25**3, rel=1e-12)
    value, _ = data_penalty(np.full((1, 1, 2), -2.25), mmis)
    assert abs(value) < np.finfo(float).eps
    value, grad = data_penalty(np.array([[[5.0, 0.0]]]), mmis)
    assert not math.isfinite(value)


def test_data_penalty_biquadratic_grid():
    maxshift = (3, 4)
    rng = np.random.default_rng(3)
    centers = rng.uniform(1, 4, size=(2, 2, 2))  # 1-based index of each block's minimum
    idx = np.stack(np.meshgrid(*[np.arange(1, 2 * m + 2) for m in maxshift], indexing="ij"), -1)
    mms = np.empty((2, 2, 2, 7, 9))
    for k in np.ndindex(2, 2):
        mms[k][0] = np.prod((idx - centers[k]) ** 2, axis=-1)
        mms[k][1] = 1.0
    mmis = interpolate_mm(mms, bc="quadratic")
    u = rng.uniform(-2.4, 2.4, size=(2, 2, 2))
    value, grad = data_penalty(u, mmis)
    d = np.asarray(maxshift) + 1 + u - centers
    assert value == pytest.approx(np.mean(np.prod(d**2, axis=-1)), abs=1e-12, rel=1e-12)
    expected = np.stack([2 * d[..., 0] * d[..., 1] ** 2, 2 * d[..., 1] * d[..., 0] ** 2], -1) / 4
    np.testing.assert_allclose(grad, expected, atol=1e-10, rtol=1e-12)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_data_penalty_gradient_with_and_without_keep(ndim):
    rng = np.random.default_rng(ndim)
    gridsize, maxshift = (3, 2, 2)[:ndim], (4, 3, 2)[:ndim]
    cs = rng.uniform(-1, 1, gridsize + (ndim,))
    Qs = np.broadcast_to(np.eye(ndim), gridsize + (ndim, ndim))
    denom = rng.uniform(0.5, 2, gridsize)
    mmis = interpolate_mm(quadratic_mms(cs, Qs, maxshift, denom))
    u = rng.uniform(-1.2, 1.2, gridsize + (ndim,))
    value, grad = data_penalty(u, mmis)
    np.testing.assert_allclose(grad, numeric_grad(lambda v: data_penalty(v, mmis)[0], u), atol=1e-7)

    # Exclude the worst aperture: its gradient is zero and the value drops.
    num_k = np.einsum("...i,...i->...", u - cs, u - cs)
    keep = np.ones(gridsize, bool)
    keep[np.unravel_index(np.argmax(num_k / denom), gridsize)] = False
    kvalue, kgrad = data_penalty(u, mmis, keep)
    assert kvalue < value
    assert np.all(kgrad[~keep] == 0)
    np.testing.assert_allclose(
        kgrad, numeric_grad(lambda v: data_penalty(v, mmis, keep)[0], u), atol=1e-7
    )
    # An excluded aperture may sit outside the interpolant without making the value NaN.
    u_out = u.copy()
    u_out[~keep] = 100.0
    assert data_penalty(u_out, mmis, keep)[0] == pytest.approx(kvalue)
    assert not math.isfinite(data_penalty(u_out, mmis)[0])


def test_data_penalty_rejects_bad_shapes():
    mmis = one_aperture_case()
    with pytest.raises(ValueError, match="u: must have shape"):
        data_penalty(np.zeros((1, 1, 3)), mmis)
    with pytest.raises(ValueError, match="keep"):
        data_penalty(np.zeros((1, 1, 2)), mmis, keep=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="mms"):
        interpolate_mm(np.zeros((2, 7, 7)))


# ---------------------------------------------------------------- total penalty


def _total_case(ndim, seed=0):
    rng = np.random.default_rng(seed)
    gridsize, maxshift = (3, 3, 2)[:ndim], (4, 3, 3)[:ndim]
    shape = (40, 30, 20)[:ndim]
    cs = rng.uniform(-1.5, 1.5, gridsize + (ndim,))
    Qs = np.empty(gridsize + (ndim, ndim))
    for k in np.ndindex(gridsize):
        a = rng.standard_normal((ndim, ndim))
        Qs[k] = a @ a.T + np.eye(ndim)
    mmis = interpolate_mm(quadratic_mms(cs, Qs, maxshift), bc="quadratic")
    return nodes_over(shape, gridsize), cs, mmis, rng


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_total_penalty_minimum_and_lambda(ndim):
    nodes, cs, mmis, rng = _total_case(ndim)
    ap = AffinePenalty(nodes, 0.0)
    value, grad = total_penalty(cs, ap, mmis)
    assert abs(value) < 1e-10
    assert np.max(np.abs(grad)) < 1e-8

    u = cs + 0.3 * rng.standard_normal(cs.shape)
    data, _ = data_penalty(u, mmis)
    ap.lam = 1.0
    affine, _ = ap(u)
    ap.lam = data / affine
    assert total_penalty(u, ap, mmis)[0] == pytest.approx(2 * data, rel=1e-10)
    value, grad = total_penalty(u, ap, mmis)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda v: total_penalty(v, ap, mmis)[0], u), rtol=1e-5, atol=1e-7
    )
    ap.lam = math.inf
    assert not math.isfinite(total_penalty(u, ap, mmis)[0])


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_total_penalty_gradient_through_composition(ndim):
    nodes, cs, mmis, rng = _total_case(ndim, seed=10 + ndim)
    ap = AffinePenalty(nodes, 0.5)
    phi_old = deformation.GridDeformation(rng.uniform(-1, 1, cs.shape), nodes)
    u = cs + 0.3 * rng.standard_normal(cs.shape)
    value, grad = total_penalty(u, ap, mmis, phi_old)
    assert math.isfinite(value)
    np.testing.assert_allclose(
        grad,
        numeric_grad(lambda v: total_penalty(v, ap, mmis, phi_old)[0], u),
        rtol=1e-5,
        atol=1e-6,
    )


def test_affine_penalty_zero_for_translation_through_composition():
    nodes = nodes_over((1000, 1002), (9, 7))
    ap = AffinePenalty(nodes, 1.0)
    phi_old = deformation.GridDeformation(np.full((9, 7, 2), 1.5), nodes)
    u = np.broadcast_to(np.array([3.3, -2.6]), (9, 7, 2)).copy()
    phi_c, _ = deformation.compose(phi_old, deformation.GridDeformation(u, nodes), jacobians=True)
    value, grad = ap(np.asarray(phi_c.u))
    assert abs(value) < 1e-12
    assert np.max(np.abs(grad)) < 1e-12


# ---------------------------------------------------------------- temporal penalty


def test_temporal_penalty_value_and_gradient():
    rng = np.random.default_rng(5)
    us = rng.standard_normal((4, 3, 2, 2))
    value, grad = temporal_penalty(us, 0.8)
    assert value == pytest.approx(0.4 * sum(np.sum((us[t + 1] - us[t]) ** 2) for t in range(3)))
    np.testing.assert_allclose(grad, numeric_grad(lambda v: temporal_penalty(v, 0.8)[0], us), atol=1e-7)
    with pytest.raises(ValueError, match="lam_t"):
        temporal_penalty(us, -1)


def test_total_penalty_series_gradient():
    nodes, cs, mmis, rng = _total_case(2, seed=7)
    ap = AffinePenalty(nodes, 0.3)
    mmis_series = np.stack([mmis, mmis[::-1, ::-1], mmis])
    us = cs + 0.3 * rng.standard_normal((3,) + cs.shape)
    value, grad = total_penalty_series(us, ap, mmis_series, 2.0)
    expected = temporal_penalty(us, 2.0)[0] + sum(
        total_penalty(us[t], ap, mmis_series[t])[0] for t in range(3)
    )
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(
        grad,
        numeric_grad(lambda v: total_penalty_series(v, ap, mmis_series, 2.0)[0], us),
        rtol=1e-5,
        atol=1e-6,
    )


def test_affine_penalty_on_a_grid_with_a_single_row():
    # C has rank N (not N + 1) when a grid axis has one node; affine fields must still cost 0.
    nodes = (np.array([24.5]), np.linspace(0, 99, 5))
    ap = AffinePenalty(nodes, 1.0)
    u = affine_u(nodes, np.array([[1.0, 0.02], [0.0, 1.05]]), np.array([1.0, -2.0]))
    value, grad = ap(u)
    assert abs(value) < 1e-12 and np.max(np.abs(grad)) < 1e-12
    u[0, 2, 1] += 1.0
    assert ap(u)[0] > 1e-3
