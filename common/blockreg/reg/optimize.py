"""Optimising a grid deformation: quadratic initial guess, then bounded L-BFGS on the penalties.

``fixed_lambda`` is the per-frame registration step: the quadratic fits ``(c_k, Q_k)`` of the
aperture mismatches give a linear system whose solution is a good start, which L-BFGS-B then
refines on the full (interpolated) mismatch plus the affine-residual penalty.

The optimiser runs on the host with NumPy: one frame has at most a few thousand unknowns, too few
for GPU kernel launches to pay off, so CuPy inputs are copied to the host once per call.

References
----------
.. [1] T. E. Holy et al., RegisterOptimize.jl (HolyLab), ``initial_deformation``, ``optimize!``,
       ``fixed_λ``.
.. [2] R. H. Byrd, P. Lu, J. Nocedal, C. Zhu, "A limited memory algorithm for bound constrained
       optimization", SIAM J. Sci. Comput. 16(5), 1995 (L-BFGS-B).
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import numpy as np
import scipy.optimize
import scipy.sparse.linalg
from threadpoolctl import ThreadpoolController

from .._backend import array_module, is_cupy, to_device, to_host
from ..errors import ParameterError
from ._common import BOUND_MARGIN, shift_limit
from .fit import clamp_shifts
from .penalty import maxshift_of, total_penalty, total_penalty_series


_thread_controller = None
_blas_state = threading.local()


@contextmanager
def single_threaded_blas():
    """Context limiting BLAS/OpenMP pools to one thread; re-entrant (nested uses are free).

    The per-frame linear algebra is small; on shared cores, OpenBLAS threads spinning over it were
    measured 20x slower.  The controller is created once: building one scans every loaded
    library (about a millisecond), too slow to repeat per frame.  Callers that run many solves
    (a whole frame in :class:`blockreg.Apertures`) enter it once around all of them; the solves'
    own uses inside are then no-ops instead of a limit/restore of every library each time.
    """
    global _thread_controller
    if getattr(_blas_state, "active", False):
        yield
        return
    if _thread_controller is None:
        _thread_controller = ThreadpoolController()
    with _thread_controller.limit(limits=1):
        _blas_state.active = True
        try:
            yield
        finally:
            _blas_state.active = False


def _check_fits(cs, Qs, series: bool):
    cs = np.asarray(to_host(cs), dtype=np.float64)
    Qs = np.asarray(to_host(Qs), dtype=np.float64)
    if cs.ndim < 2 + series:
        raise ParameterError("cs", f"must have shape {'(T, ' if series else '('}*gridsize, N), "
                                   f"got {cs.shape}")
    N = cs.shape[-1]
    if Qs.shape != cs.shape + (N,):
        raise ParameterError("Qs", f"must have shape {cs.shape + (N,)} (cs.shape + (N,)), got "
                                   f"{Qs.shape}")
    return cs, Qs


def _regulariser(Qs, n: int) -> float:
    # A tiny ridge keeps H positive definite where some Q_k are singular (apertures without
    # signal); scaled to the data so it never dominates.
    total_trace = float(np.sum(np.einsum("...ii->...", Qs)))
    scale = total_trace / n if total_trace != 0 else 1.0
    return np.cbrt(np.finfo(np.float64).eps) * scale


def initial_deformation(ap, cs, Qs, lam_t=None):
    """Minimiser of the quadratic model of the penalty: the start of the optimisation.

    Solves ``H u = b`` with ``H = lam (I - F F^T) (x) I_N + blockdiag(Q_k) + eps I`` and
    ``b_k = Q_k c_k``; with ``lam_t`` (series input) ``H`` also gets ``lam_t`` times the time
    Laplacian (frame-to-frame differences of the same node and component).

    Parameters
    ----------
    ap : AffinePenalty
        Its ``F`` and ``lam`` (``lam`` multiplies ``||R||**2 / 2`` here, the original's scaling,
        not the ``lam / n`` of the penalty itself; only the starting point depends on it).
    cs : ndarray, shape ``(*gridsize, N)`` or ``(T, *gridsize, N)`` with ``lam_t``
        Centres of the quadratic fits.
    Qs : ndarray, shape ``cs.shape + (N,)``
        Curvatures of the quadratic fits.
    lam_t : float, optional
        Temporal weight; its presence means ``cs``/``Qs`` carry a leading time axis.

    Returns
    -------
    u0 : ndarray, shape of ``cs`` (NumPy)
    converged : bool
        Always True for the dense single-frame solve; the conjugate-gradient flag for a series.

    Notes
    -----
    ``lam <= 0`` returns ``cs`` exactly; ``b == 0`` returns zeros.  The ridge is
    ``eps = cbrt(machine eps) * sum_k tr(Q_k) / n`` (1 when all ``Q_k`` vanish).
    """
    series = lam_t is not None
    cs, Qs = _check_fits(cs, Qs, series)
    N = cs.shape[-1]
    gridsize = cs.shape[1:-1] if series else cs.shape[:-1]
    if tuple(gridsize) != tuple(ap.gridsize):
        raise ParameterError("cs", f"grid {tuple(gridsize)} does not match the penalty's nodes "
                                   f"{ap.gridsize}")
    if series and (math.isnan(float(lam_t)) or lam_t < 0):
        raise ParameterError("lam_t", f"must be >= 0, got {lam_t}")
    if ap.lam <= 0 and not (series and lam_t > 0):
        return cs.copy(), True
    n = math.prod(gridsize)
    b = np.einsum("...ij,...j->...i", Qs, cs)
    if not np.any(b):
        return np.zeros_like(cs), True
    if not series:
        with single_threaded_blas():
            u = _solve_frame(ap, Qs.reshape(n, N, N), b.reshape(n * N), n, N)
        return u.reshape(cs.shape), True
    T = cs.shape[0]
    u, info = _solve_series(ap, Qs.reshape(T, n, N, N), b.reshape(T, n, N), float(lam_t))
    return u.reshape(cs.shape), info == 0


def _solve_frame(ap, Qs, b, n, N):
    """Solve ``H u = b`` through the Woodbury identity.

    ``H = D - lam W W^T`` with ``D = blockdiag(Q_k + (lam + eps) I)`` and ``W = F (x) I_N``
    (``F^T F = I``), so only N x N blocks and one ``(N+1)N``-square system are inverted: the
    cost is linear in the number of nodes instead of cubic, which matters for 3-D grids.
    """
    F = ap.F
    lam = ap.lam
    eps = _regulariser(Qs, n)
    D_inv = np.linalg.inv(Qs + (lam + eps) * np.eye(N))  # (n, N, N)
    y0 = np.einsum("kab,kb->ka", D_inv, b.reshape(n, N))
    m = F.shape[1]
    # S = I / lam - W^T D^-1 W, indexed by (column of F, component) pairs.
    S = np.eye(m * N) / lam - np.einsum("kj,kl,kbc->jblc", F, F, D_inv).reshape(m * N, m * N)
    z = np.linalg.solve(S, (F.T @ y0).ravel()).reshape(m, N)
    return (y0 + np.einsum("kab,kb->ka", D_inv, F @ z)).ravel()


def _solve_series(ap, Qs, b, lam_t):
    T, n, N = b.shape
    F = ap.F
    lam = ap.lam
    eps = _regulariser(Qs, T * n)
    # Time-Laplacian degree of each frame: 1 at the ends, 2 inside (0 for a single frame).
    degree = np.full(T, 2.0)
    degree[[0, -1]] = 1.0
    if T == 1:
        degree[:] = 0.0

    def matvec(x):
        U = x.reshape(T, n, N)
        out = lam * (U - np.einsum("ij,tjc->tic", F, np.einsum("ij,tic->tjc", F, U)))
        out += np.einsum("tkij,tkj->tki", Qs, U) + eps * U
        out += lam_t * degree[:, None, None] * U
        out[1:] -= lam_t * U[:-1]
        out[:-1] -= lam_t * U[1:]
        return out.ravel()

    # Block-Jacobi preconditioner: invert each node's N x N diagonal block of H.
    diag_affine = lam * (1.0 - np.sum(F * F, axis=1))
    blocks = Qs + (
        (diag_affine[None, :] + eps + lam_t * degree[:, None])[..., None, None] * np.eye(N)
    )
    inv_blocks = np.linalg.inv(blocks)

    def precondition(x):
        return np.einsum("tkij,tkj->tki", inv_blocks, x.reshape(T, n, N)).ravel()

    size = T * n * N
    H = scipy.sparse.linalg.LinearOperator((size, size), matvec=matvec, dtype=np.float64)
    M = scipy.sparse.linalg.LinearOperator((size, size), matvec=precondition, dtype=np.float64)
    with single_threaded_blas():
        u, info = scipy.sparse.linalg.cg(H, b.ravel(), M=M, rtol=1e-10, atol=0.0, maxiter=size)
    return u, info


def _bounds(maxshift, shape):
    limit = np.broadcast_to(shift_limit(maxshift, BOUND_MARGIN), shape).ravel()
    return scipy.optimize.Bounds(-limit, limit)


def _minimize(fun, u0, maxshift, tol, maxiter):
    """L-BFGS-B from ``u0``; returns ``(u, f, f0)`` and never a point worse than ``u0``."""
    u0 = np.asarray(u0, dtype=np.float64)
    f0, _ = fun(u0)
    if not math.isfinite(f0):
        raise ValueError("the penalty at the initial u is not finite (is u within maxshift - 0.5?)")

    def flat_fun(x):
        value, grad = fun(x.reshape(u0.shape))
        return value, np.asarray(grad, dtype=np.float64).ravel()

    with single_threaded_blas():
        result = scipy.optimize.minimize(
            flat_fun,
            u0.ravel(),
            jac=True,
            method="L-BFGS-B",
            bounds=_bounds(maxshift, u0.shape),
            options={"ftol": tol, "gtol": tol, "maxiter": maxiter},
        )
    f = float(result.fun)
    if not (math.isfinite(f) and f <= f0):
        return u0.copy(), f0, f0
    return result.x.reshape(u0.shape), f, f0


#: Interpolated mismatches larger than this stay on the device and the penalty is evaluated there
#: (each optimiser step then moves ``u`` up and its gradient down); smaller ones are copied to the
#: host once, which costs less than a round trip per step.
DEVICE_PENALTY_BYTES = 16 << 20


def _penalty_operands(mmis):
    """``(mmis, to_u)``: the interpolant (float64) where the penalty is evaluated and, when that is
    the device, the conversion of the optimiser's host ``u`` for it (None on the host)."""
    xp = array_module(mmis)
    if is_cupy(xp) and mmis.size * 8 > DEVICE_PENALTY_BYTES:
        return xp.ascontiguousarray(mmis, dtype=np.float64), lambda u: to_device(u, xp)
    return np.ascontiguousarray(to_host(mmis), dtype=np.float64), None


def _host_penalty(fun, to_u):
    """``fun`` for the host optimiser: a host ``u`` in, ``(float, host grad)`` out."""
    if to_u is None:
        return fun

    def on_host(u):
        value, grad = fun(to_u(u))
        return value, to_host(grad)

    return on_host


def optimize_deformation(u0, ap, mmis, phi_old=None, *, maxshift, keep=None, tol=1e-6, maxiter=1000):
    """Minimise :func:`~blockreg.reg.penalty.total_penalty` over ``u`` from ``u0``.

    Parameters
    ----------
    u0 : ndarray, shape ``(*gridsize, N)``
        Start; the penalty there must be finite.
    ap : AffinePenalty
    mmis : ndarray, shape ``(*gridsize, 2, *(2*maxshift + 1))``
    phi_old : GridDeformation, optional
        Deformation composed before ``u`` in the affine term.
    maxshift : sequence of int
        Box bounds ``|u_a| <= maxshift_a - 0.5001`` keep every node inside the interpolant.
    keep : ndarray of bool, optional
        Apertures that count in the data term.
    tol : float
        ``ftol`` and ``gtol`` of L-BFGS-B.
    maxiter : int

    Returns
    -------
    u : ndarray
        The optimum, or ``u0`` itself when the optimiser ended above the start.
    fval, fval0 : float
        Penalty at ``u`` and at ``u0``.
    """
    mmis, to_u = _penalty_operands(mmis)
    u0 = np.asarray(to_host(u0), dtype=np.float64)
    fun = _host_penalty(lambda u: total_penalty(u, ap, mmis, phi_old, keep), to_u)
    return _minimize(fun, u0, maxshift, tol, maxiter)


def fixed_lambda(cs, Qs, nodes, ap, mmis, *, lam_t=None, tol=1e-6, maxiter=1000):
    """Register one frame (or a whole series, with ``lam_t``) at the affine weight ``ap.lam``.

    Parameters
    ----------
    cs, Qs : ndarray
        Quadratic fits, ``(*gridsize, N)`` and ``(*gridsize, N, N)``; with ``lam_t`` a leading
        time axis ``T``.
    nodes : tuple of N 1-D arrays
    ap : AffinePenalty
    mmis : ndarray, shape ``(*gridsize, 2, *(2*maxshift + 1))`` (``(T, ...)`` with ``lam_t``)
        The maximum shift is read from its shape.
    lam_t : float, optional
        Temporal weight: optimise all frames jointly with :func:`temporal_penalty`.

    Returns
    -------
    phi : GridDeformation, or ndarray ``(T, *gridsize, N)`` of displacements with ``lam_t``
    penalty : float
        Data + affine penalty (plus the temporal term for a series) at the optimum.
    """
    from .deformation import GridDeformation

    series = lam_t is not None
    cs_h, Qs_h = _check_fits(cs, Qs, series)
    maxshift = maxshift_of(mmis[0] if series else mmis)
    u0, _ = initial_deformation(ap, cs_h, Qs_h, lam_t=lam_t)
    if not np.all(np.isfinite(u0)):
        u0 = cs_h
    u0 = clamp_shifts(u0, maxshift)
    if series:
        mmis = np.ascontiguousarray(to_host(mmis), dtype=np.float64)
        fun = lambda us: total_penalty_series(us, ap, mmis, lam_t)  # noqa: E731
        us, fval, _ = _minimize(fun, u0, maxshift, tol, maxiter)
        return us, fval
    u, fval, _ = optimize_deformation(u0, ap, mmis, maxshift=maxshift, tol=tol, maxiter=maxiter)
    return GridDeformation(u, nodes), fval
