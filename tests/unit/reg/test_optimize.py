"""Tests of blockreg.reg.optimize, ported from RegisterOptimize.jl's test suite (reference §8)."""
import math

import numpy as np
import pytest

from blockreg.reg.optimize import fixed_lambda, initial_deformation, optimize_deformation
from blockreg.reg.penalty import AffinePenalty, interpolate_mm, total_penalty
from helpers.quadratics import nodes_over, quadratic_mms


def node_positions(nodes):
    return np.stack(np.meshgrid(*nodes, indexing="ij"), -1)


def random_psd(rng, gridsize, N):
    Qs = np.empty(gridsize + (N, N))
    for k in np.ndindex(gridsize):
        a = rng.standard_normal((N, N))
        Qs[k] = a @ a.T
    return Qs


def dense_hessian(ap, Qs, eps):
    """H = lam (I - F F^T) (x) I_N + blockdiag(Q_k) + eps I, assembled element by element."""
    n, N = math.prod(Qs.shape[:-2]), Qs.shape[-1]
    P = np.eye(n) - ap.F @ ap.F.T
    Qf = Qs.reshape(n, N, N)
    H = np.zeros((n * N, n * N))
    for i in range(n):
        for j in range(n):
            for a in range(N):
                H[i * N + a, j * N + a] += ap.lam * P[i, j]
        H[i * N : i * N + N, i * N : i * N + N] += Qf[i]
    return H + eps * np.eye(n * N)


@pytest.mark.parametrize("lam, singular", [(2.0, False), (1e3, True), (1e-3, True)])
def test_initial_deformation_matches_direct_solve(lam, singular):
    rng = np.random.default_rng(0)
    gridsize = (4, 3)
    ap = AffinePenalty(nodes_over((50, 40), gridsize), lam)
    Qs = random_psd(rng, gridsize, 2)
    if singular:  # apertures without signal, and one with a rank-1 fit
        Qs[0, 0] = 0
        Qs[2, 1] = 0
        Qs[1, 1] = np.outer([1.0, 2.0], [1.0, 2.0])
    cs = rng.standard_normal(gridsize + (2,))
    eps = np.cbrt(np.finfo(float).eps) * np.einsum("...ii->...", Qs).sum() / 12
    b = np.einsum("...ij,...j->...i", Qs, cs).ravel()
    expected = np.linalg.solve(dense_hessian(ap, Qs, eps), b).reshape(cs.shape)
    u0, converged = initial_deformation(ap, cs, Qs)
    assert converged
    np.testing.assert_allclose(u0, expected, atol=1e-3)


def test_initial_deformation_special_cases():
    rng = np.random.default_rng(1)
    gridsize = (3, 3)
    ap = AffinePenalty(nodes_over((30, 30), gridsize), 0.0)
    cs = rng.standard_normal(gridsize + (2,))
    Qs = random_psd(rng, gridsize, 2)
    u0, _ = initial_deformation(ap, cs, Qs)
    assert np.array_equal(u0, cs)
    ap.lam = 1.0
    u0, _ = initial_deformation(ap, cs, np.zeros_like(Qs))
    assert np.array_equal(u0, np.zeros_like(cs))
    with pytest.raises(ValueError, match="Qs"):
        initial_deformation(ap, cs, Qs[..., :1])


def test_initial_deformation_recovers_rotation():
    gridsize = (5, 4)
    nodes = nodes_over((100, 80), gridsize)
    t = np.pi / 12
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    cs = node_positions(nodes) @ (R - np.eye(2)).T
    Qs = np.broadcast_to(np.eye(2), gridsize + (2, 2)).copy()
    u0, _ = initial_deformation(AffinePenalty(nodes, 1.0), cs, Qs)
    np.testing.assert_allclose(u0, cs, atol=1e-3)


def test_temporal_initial_deformation_matches_direct_solve():
    rng = np.random.default_rng(2)
    T, gridsize = 5, (3, 2)
    ap = AffinePenalty(nodes_over((30, 20), gridsize), 1.0)
    Qs = random_psd(rng, (T,) + gridsize, 2)
    cs = rng.standard_normal((T,) + gridsize + (2,))
    n, N = 6, 2
    eps = np.cbrt(np.finfo(float).eps) * np.einsum("...ii->...", Qs).sum() / (T * n)
    H = np.zeros((T * n * N, T * n * N))
    for t in range(T):
        s = slice(t * n * N, (t + 1) * n * N)
        H[s, s] = dense_hessian(ap, Qs[t], eps)
    L = np.diag([1.0] + [2.0] * (T - 2) + [1.0]) - np.eye(T, k=1) - np.eye(T, k=-1)
    H += np.kron(L, np.eye(n * N))
    b = np.einsum("...ij,...j->...i", Qs, cs).ravel()
    expected = np.linalg.solve(H, b).reshape(cs.shape)
    u0, converged = initial_deformation(ap, cs, Qs, lam_t=1.0)
    assert converged
    np.testing.assert_allclose(u0, expected, atol=1e-3)


def test_minimization_recovers_affine_shifts():
    rng = np.random.default_rng(3)
    gridsize, maxshift = (7, 5), (5, 5)
    nodes = nodes_over((100, 80), gridsize)
    S = np.eye(2) + 0.1 * rng.random((2, 2))
    X = node_positions(nodes)
    shifts = (X - X.mean(axis=(0, 1))) @ (S - np.eye(2)).T * 0.5
    assert np.abs(shifts).max() < 4.4
    Qs = np.broadcast_to(np.eye(2), gridsize + (2, 2)).copy()
    mmis = interpolate_mm(quadratic_mms(shifts, Qs, maxshift), bc="quadratic")
    ap = AffinePenalty(nodes, 1000.0)
    u0 = np.zeros(gridsize + (2,))
    u, fval, fval0 = optimize_deformation(u0, ap, mmis, maxshift=maxshift)
    assert 0 <= fval <= 1e-5
    assert fval0 > 1
    np.testing.assert_allclose(u, shifts, atol=0.01)


def test_optimize_deformation_guards():
    gridsize, maxshift = (2, 2), (3, 3)
    nodes = nodes_over((20, 20), gridsize)
    cs = np.zeros(gridsize + (2,))
    mmis = interpolate_mm(quadratic_mms(cs, np.broadcast_to(np.eye(2), (2, 2, 2, 2)), maxshift))
    ap = AffinePenalty(nodes, 1.0)
    with pytest.raises(ValueError, match="initial"):
        optimize_deformation(np.full(gridsize + (2,), 3.0), ap, mmis, maxshift=maxshift)
    # Already at the minimum: the result is never worse than the start.
    u, fval, fval0 = optimize_deformation(cs, ap, mmis, maxshift=maxshift)
    assert fval <= fval0


def test_fixed_lambda_single_frame():
    rng = np.random.default_rng(4)
    gridsize, maxshift = (4, 4), (6, 6)
    nodes = nodes_over((60, 60), gridsize)
    cs = rng.uniform(-3, 3, gridsize + (2,))
    Qs = random_psd(rng, gridsize, 2) + np.eye(2)
    mmis = interpolate_mm(quadratic_mms(cs, Qs, maxshift), bc="quadratic")
    ap = AffinePenalty(nodes, 1e-4)
    phi, penalty = fixed_lambda(cs + 0.5, Qs, nodes, ap, mmis)
    np.testing.assert_allclose(phi.u, cs, atol=0.05)
    assert penalty == pytest.approx(total_penalty(np.asarray(phi.u), ap, mmis)[0])
    assert penalty < 1e-2


def test_fixed_lambda_temporal():
    # 2x2 grid of identical apertures, so the data term of each frame is the aperture mean:
    # per node, (2 c Q_t + lam_t L) u = 2 c Q_t c_t with c = 1/4 (RegisterOptimize's test).
    gridsize, maxshift = (2, 2), (7, 7)
    nodes = nodes_over((15, 15), gridsize)
    c_t = np.array([[5.0, -3.0], [0.0, 0.0], [3.0, -1.0]])
    Q_t = [np.eye(2), np.zeros((2, 2)), np.eye(2)]
    cs = np.stack([np.broadcast_to(c, gridsize + (2,)) for c in c_t])
    Qs = np.stack([np.broadcast_to(Q, gridsize + (2, 2)) for Q in Q_t])
    mmis = np.stack([interpolate_mm(quadratic_mms(cs[t], Qs[t], maxshift)) for t in range(3)])
    ap = AffinePenalty(nodes, 1.0)
    us, penalty = fixed_lambda(cs, Qs, nodes, ap, mmis, lam_t=1.0)
    c = 0.25
    A = np.array([[2 * c + 1, -1, 0], [-1, 2, -1], [0, -1, 2 * c + 1]])
    expected = np.linalg.solve(A, 2 * c * c_t)
    assert us.shape == cs.shape
    for k in np.ndindex(gridsize):
        np.testing.assert_allclose(us[(slice(None),) + k], expected, atol=1e-2)
    assert math.isfinite(penalty)


def test_single_threaded_blas_nests_and_restores():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from blockreg.reg.optimize import single_threaded_blas

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with single_threaded_blas():
            with single_threaded_blas():
                assert all(n == 1 for n in blas_threads())
            assert all(n == 1 for n in blas_threads())     # the inner exit keeps the outer limit
        assert all(n == 2 for n in blas_threads())
        with single_threaded_blas():                       # usable again after a nested use
            assert all(n == 1 for n in blas_threads())
