"""Whole-series registration: the second stage of two-stage registration.

The first stage (:class:`blockreg.algorithms.apertures_mismatch.AperturesMismatch`) reduces every
frame to quadratic fits ``(cs, Qs)`` of its aperture mismatches and the interpolated mismatch
``mmis``.  Here all deformations ``us`` (``(T, *gridsize, N)``) are found at once by minimising

    sum_t [affine(u_t) + data_t(u_t)] + (lam_t / 2) sum_t ||u_{t+1} - u_t||**2,

so a frame too noisy to register alone borrows strength from its neighbours.  As in the original
(``fixed_λ(cs, Qs, nodes, ap, λt, mmis)``, reference §5.4), the temporal linear solve on the
quadratic fits is the starting point and a bounded quasi-Newton refinement follows.

A long series is solved in overlapping time windows, each independent of the others (a task
each), and stitched (:mod:`blockreg.reg.windows`).  Only one window of ``mmis`` is in memory at
a time.

Frames whose fits or mismatch hold NaN (frames never registered, failed frames) carry no data
term: the temporal term fills them in from their neighbours.

References
----------
.. [1] T. E. Holy et al., RegisterOptimize.jl (HolyLab), ``initial_deformation``, ``fixed_λ``
       and ``optimize!`` for series, ``auto_λt``; RegisterPenalty.jl, ``penalty!`` with ``λt``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.optimize

from .._backend import to_host
from ..errors import ParameterError
from . import bspline
from ._common import BOUND_MARGIN, INTERPOLANT_MARGIN, shift_limit
from .fit import clamp_shifts
from .optimize import initial_deformation, single_threaded_blas
from .penalty import AffinePenalty, maxshift_of, temporal_penalty
from .windows import Window, plan_windows, stitch_windows, window_weights  # noqa: F401  (re-exported)

__all__ = [
    "Window",
    "consensus_lambda",
    "optimize_series",
    "optimize_series_windowed",
    "plan_windows",
    "series_penalty",
    "solve_window",
    "stitch_windows",
    "window_weights",
]


def _check_weights(lam, lam_t):
    for name, value in (("lam", lam), ("lam_t", lam_t)):
        if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)
                and value >= 0):
            raise ParameterError(name, f"must be a finite number >= 0, got {value!r}")
    return float(lam), float(lam_t)


def _load(cs, Qs, mmis):
    """Host float64 copies, shapes checked, and which frames carry data (all finite)."""
    cs = np.asarray(to_host(cs), dtype=np.float64)
    Qs = np.asarray(to_host(Qs), dtype=np.float64)
    mmis = np.ascontiguousarray(to_host(mmis), dtype=np.float64)
    if cs.ndim < 3:
        raise ParameterError("cs", f"must have shape (T, *gridsize, N), got {cs.shape}")
    T, N = cs.shape[0], cs.shape[-1]
    gridsize = cs.shape[1:-1]
    if Qs.shape != cs.shape + (N,):
        raise ParameterError("Qs", f"must have shape {cs.shape + (N,)}, got {Qs.shape}")
    if mmis.shape[: len(gridsize) + 2] != (T,) + gridsize + (2,) or mmis.ndim != 2 * N + 2:
        raise ParameterError("mmis", f"must have shape (T, *gridsize, 2, *(2m+1)) with T={T}, "
                                     f"gridsize={gridsize}, got {mmis.shape}")
    present = (np.isfinite(cs).reshape(T, -1).all(axis=1) & np.isfinite(Qs).reshape(T, -1).all(axis=1)
               & np.isfinite(mmis).reshape(T, -1).all(axis=1))
    return cs, Qs, mmis, present


def _data_penalty_frames(us, mmis, present):
    """Per-frame :func:`~blockreg.reg.penalty.data_penalty`, all frames in one pass.

    Same quantity (``sum_k num_k / sum_k denom_k`` per frame, quadratic B-spline read-out) and
    gradient, vectorised over frames: one call costs about what one frame costs through the
    per-frame function, which matters when L-BFGS evaluates a window of hundreds of frames
    thousands of times.  Frames not ``present`` contribute nothing.  Returns ``(sum, grad)``; the
    sum is NaN when a present node lies outside ``|u_a| < maxshift_a - 0.5``.
    """
    T, N = us.shape[0], us.shape[-1]
    n = math.prod(us.shape[1:-1])
    shift_shape = mmis.shape[N + 2:]
    m = np.array([(s - 1) // 2 for s in shift_shape], dtype=np.float64)
    U = np.where(present[:, None, None], us.reshape(T, n, N), 0.0).reshape(T * n, N)
    if not np.all(np.abs(U) < m - INTERPOLANT_MARGIN):
        return math.nan, np.full(us.shape, np.nan)
    i, w, dw = bspline.stencil(U + m)  # (K, N), (K, N, 3), (K, N, 3)
    npos = math.prod(shift_shape)
    strides = np.array([math.prod(shift_shape[a + 1:]) for a in range(N)], dtype=np.int64)
    offsets = np.array(list(itertools.product((-1, 0, 1), repeat=N)), dtype=np.int64) @ strides
    K = T * n
    start = (i * strides).sum(axis=1) + np.arange(K) * (2 * npos)
    index = start[:, None, None] + offsets[None, None, :] + np.array([0, npos])[None, :, None]
    vals = np.take(mmis.reshape(-1), index)  # (K, 2, 3**N)

    def outer(factors):
        out = factors[0]
        for f in factors[1:]:
            out = out[..., None] * f.reshape((K,) + (1,) * (out.ndim - 1) + (3,))
        return out.reshape(K, -1)

    weight = outer([w[:, a] for a in range(N)])
    dweight = np.stack([outer([dw[:, b] if b == a else w[:, b] for b in range(N)]) for a in range(N)], axis=1)
    nd = np.einsum("kcs,ks->kc", vals, weight).reshape(T, n, 2)
    dnd = np.einsum("kcs,kas->kca", vals, dweight).reshape(T, n, 2, N)
    num, den = nd.sum(axis=1).T  # (T,), (T,)
    den = np.where(present, den, 1.0)
    grad = (dnd[:, :, 0] * den[:, None, None] - num[:, None, None] * dnd[:, :, 1]) / den[:, None, None] ** 2
    grad = np.where(present[:, None, None], grad, 0.0)
    return float(np.sum(np.where(present, num / den, 0.0))), grad.reshape(us.shape)


def _affine_penalty_frames(us, ap):
    """Sum over frames of :class:`~blockreg.reg.penalty.AffinePenalty` and its gradient."""
    T, N = us.shape[0], us.shape[-1]
    n = math.prod(us.shape[1:-1])
    U = us.reshape(T, n, N)
    R = U - np.einsum("ij,tjc->tic", ap.F, np.einsum("ij,tic->tjc", ap.F, U))
    return float(ap.lam / n * np.sum(R * R)), (2 * ap.lam / n * R).reshape(us.shape)


def _objective(us, ap, mmis, present, lam_t):
    """The series penalty and its gradient; frames without data get the affine term only."""
    value, grad = temporal_penalty(us, lam_t)
    affine, g_affine = _affine_penalty_frames(us, ap)
    data, g_data = _data_penalty_frames(us, mmis, present)
    return value + affine + data, grad + g_affine + g_data


def optimize_series(cs, Qs, mmis, nodes, lam, lam_t, *, tol=1e-6, maxiter=2000):
    """Register a whole series at once: temporal linear solve, then bounded joint refinement.

    Parameters
    ----------
    cs : array_like, shape ``(T, *gridsize, N)``
        Quadratic-fit centres per frame and aperture (``AperturesMismatch``'s ``cs``).
    Qs : array_like, shape ``(T, *gridsize, N, N)``
    mmis : array_like, shape ``(T, *gridsize, 2, *(2 * maxshift + 1))``
        Interpolated mismatches (any float type; computed in float64).  The bounds of the
        refinement, ``|u_a| <= maxshift_a - 0.5001``, come from its shape.
    nodes : tuple of N 1-D arrays
    lam : float
        Affine-residual weight (:class:`~blockreg.reg.penalty.AffinePenalty`).
    lam_t : float
        Temporal weight (:func:`~blockreg.reg.penalty.temporal_penalty`).
    tol : float
        ``ftol`` and ``gtol`` of L-BFGS-B.
    maxiter : int

    Returns
    -------
    us : ndarray, shape ``(T, *gridsize, N)``, float64
    penalty : float
        The series penalty at ``us`` (data + affine of every frame + temporal).

    Notes
    -----
    A frame whose ``cs``, ``Qs`` or ``mmis`` holds a NaN has no data term and zero weight in the
    initial solve; with ``lam_t > 0`` it is interpolated from its neighbours.  The refinement never
    returns a point with a higher penalty than its (clamped) start.  With all frames present the
    objective is :func:`~blockreg.reg.penalty.total_penalty_series`.
    """
    lam, lam_t = _check_weights(lam, lam_t)
    cs, Qs, mmis, present = _load(cs, Qs, mmis)
    ap = AffinePenalty(nodes, lam)
    if tuple(ap.gridsize) != cs.shape[1:-1]:
        raise ParameterError("nodes", f"gridsize {ap.gridsize} does not match cs {cs.shape[1:-1]}")
    maxshift = maxshift_of(mmis[0])
    # missing frames: no pull towards any centre in the linear solve
    cs0 = np.where(present.reshape((-1,) + (1,) * (cs.ndim - 1)), cs, 0.0)
    Qs0 = np.where(present.reshape((-1,) + (1,) * (Qs.ndim - 1)), Qs, 0.0)
    u0, _ = initial_deformation(ap, cs0, Qs0, lam_t=lam_t)
    if not np.all(np.isfinite(u0)):
        u0 = cs0
    u0 = clamp_shifts(u0, maxshift)
    f0, _ = _objective(u0, ap, mmis, present, lam_t)
    if not math.isfinite(f0):
        raise ValueError("the series penalty at the initial guess is not finite; check mmis")
    limit = np.broadcast_to(shift_limit(maxshift, BOUND_MARGIN), u0.shape).ravel()

    def flat(x):
        value, grad = _objective(x.reshape(u0.shape), ap, mmis, present, lam_t)
        return value, np.asarray(grad, dtype=np.float64).ravel()

    with single_threaded_blas():
        result = scipy.optimize.minimize(flat, u0.ravel(), jac=True, method="L-BFGS-B",
                                         bounds=scipy.optimize.Bounds(-limit, limit),
                                         options={"ftol": tol, "gtol": tol, "maxiter": maxiter})
    if math.isfinite(result.fun) and result.fun <= f0:
        return result.x.reshape(u0.shape), float(result.fun)
    return u0, float(f0)


# --- windows (planned and stitched in blockreg.reg.windows) --------------------------------------


def solve_window(window, cs, Qs, mmis, nodes, lam, lam_t, **kwargs):
    """Solve one window: :func:`optimize_series` on frames ``window.start .. window.stop - 1``.

    ``cs``, ``Qs`` and ``mmis`` are the whole series as anything sliceable along time (NumPy
    arrays, memory maps, Zarr or HDF5 arrays); only the window's frames are read.  Returns
    ``(us, penalty)`` of the window.  This is the body of one window task.
    """
    sl = window.slice
    return optimize_series(cs[sl], Qs[sl], mmis[sl], nodes, lam, lam_t, **kwargs)


def optimize_series_windowed(cs, Qs, mmis, nodes, lam, lam_t, *, window=128, overlap=None,
                             map=map, progress=None, **kwargs):
    """:func:`optimize_series` for a series too long to hold: overlapping windows, stitched.

    Parameters
    ----------
    cs, Qs, mmis : sliceable along time
        The whole series' fits and interpolated mismatches (e.g. the arrays of a mismatch job's
        Zarr store); each window reads only its own frames.
    nodes, lam, lam_t
        As for :func:`optimize_series`.
    window : int
        Frames per window.
    overlap : int, optional
        Frames shared by consecutive windows; default ``max(4, window // 3)``.
    map : callable
        ``map(function, windows)`` used to solve the windows, e.g. an executor's ``map`` to run
        them in parallel (the windows are independent).
    progress : callable, optional
        Called as ``progress(done, total)`` after each window (in the order ``map`` yields).
    **kwargs
        ``tol``, ``maxiter`` of :func:`optimize_series`.

    Returns
    -------
    us : ndarray ``(T, *gridsize, N)``
    """
    nframes = int(cs.shape[0])
    for name, arr in (("Qs", Qs), ("mmis", mmis)):
        if int(arr.shape[0]) != nframes:
            raise ParameterError(name, f"has {arr.shape[0]} frames, cs has {nframes}")
    if overlap is None:
        overlap = max(4, int(window) // 3)
    windows = plan_windows(nframes, int(window), int(overlap))
    results = []
    for i, (us, _) in enumerate(map(_WindowTask(cs, Qs, mmis, nodes, lam, lam_t, kwargs), windows)):
        results.append(us)
        if progress is not None:
            progress(i + 1, len(windows))
    return stitch_windows(windows, results, nframes)


class _WindowTask:
    """Picklable ``window -> solve_window(window, ...)`` (for process-pool ``map``)."""

    def __init__(self, cs, Qs, mmis, nodes, lam, lam_t, kwargs):
        self.args = (cs, Qs, mmis, nodes, lam, lam_t)
        self.kwargs = kwargs

    def __call__(self, window):
        return solve_window(window, *self.args, **self.kwargs)


def series_penalty(us, mmis, nodes, lam, lam_t, *, chunk=256):
    """The series penalty of ``us`` (what :func:`optimize_series` minimises), read in chunks.

    ``mmis`` is sliceable along time; frames with NaN in ``mmis`` count the affine term only.
    """
    lam, lam_t = _check_weights(lam, lam_t)
    us = np.asarray(to_host(us), dtype=np.float64)
    ap = AffinePenalty(nodes, lam)
    value = temporal_penalty(us, lam_t)[0]
    for start in range(0, us.shape[0], chunk):
        block = np.ascontiguousarray(to_host(mmis[start:start + chunk]), dtype=np.float64)
        present = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
        value += _objective(us[start:start + block.shape[0]], ap, block, present, 0.0)[0]
    return value


def consensus_lambda(cs, Qs, mmis, nodes, lam_range, frames):
    """Choose the affine weight on a few frames and take their consensus (reference §6.5, step 2).

    Runs :func:`~blockreg.reg.autolambda.auto_lambda` on each chosen frame (reading only that
    frame of ``cs``, ``Qs``, ``mmis``) and returns the median of the chosen lambdas in log scale,
    the original's advice ("try several stacks and come to a consensus").

    Returns
    -------
    lam : float
    lams : ndarray
        The lambda chosen on each frame of ``frames``.
    """
    from .autolambda import auto_lambda

    frames = [int(t) for t in frames]
    if not frames:
        raise ParameterError("frames", "choose at least one frame")
    ap = AffinePenalty(nodes, float(lam_range[0]))
    lams = []
    for t in frames:
        c, Q, mm = (np.asarray(to_host(a[t]), dtype=np.float64) for a in (cs, Qs, mmis))
        lams.append(auto_lambda(c, Q, nodes, ap, mm, lam_range)[2])
    lams = np.asarray(lams)
    return float(np.exp(np.median(np.log(lams)))), lams
