"""Choosing the affine weight lambda (and the temporal weight lambda_t) from the data.

As lambda grows, the deformation is forced towards an affine map and the data penalty rises
along a sigmoid in ``log(lambda)``: flat while the data dominate, then rising, then flat again
once the deformation is affine.  ``auto_lambda`` sweeps lambda over powers of two, fits the
sigmoid, and picks the lambda near its lower kink (the stiffest deformation that still follows
the data).

References
----------
.. [1] T. E. Holy et al., RegisterOptimize.jl (HolyLab), ``auto_λ``, ``auto_λt``, ``fit_sigmoid``.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import scipy.optimize

from .._backend import to_host
from ..errors import ParameterError
from ._common import lambda_count
from .fit import clamp_shifts
from .optimize import _check_fits, initial_deformation, optimize_deformation
from .penalty import data_penalty, maxshift_of


def _lambda_ladder(lam_range, name):
    try:
        lo, hi = (float(v) for v in lam_range)
    except (TypeError, ValueError):
        raise ParameterError(name, f"must be a pair (min, max), got {lam_range!r}") from None
    if not (0 < lo < hi < math.inf):
        raise ParameterError(name, f"must satisfy 0 < min < max < inf, got {(lo, hi)}")
    return lo * 2.0 ** np.arange(lambda_count(lo, hi))


def _logistic(k, center, width):
    return 0.5 * (1 + np.tanh(0.5 * (k - center) / width))  # = 1/(1+exp(-(k-c)/w)), overflow-free


def fit_sigmoid(data):
    """Fit ``y_k = bottom + (top - bottom) / (1 + exp(-(k - center) / width))``, ``k = 1..n``.

    Parameters
    ----------
    data : 1-D array_like
        At least 4 values (e.g. the data penalty along a lambda sweep), expected to rise
        (the start has ``bottom < top``, and ``width > 0``).

    Returns
    -------
    bottom, top, center, width : float
        ``center`` is a 1-based position along ``data``.
    objective : float
        Residual ``sum_k ((y_k - bottom) / (top - bottom) - logistic_k)**2`` at the optimum.

    Notes
    -----
    Starts from bottom/top = mean of the lower/upper half of the sorted data and
    ``center = width = n // 2``, with bounds bottom, top in ``[min, max]`` of the data,
    center in ``[1, n]`` and width in ``[0.1, n]``.  The original's docstring states these bounds,
    but its code bounds all four parameters to ``[min(data), max(data)]`` (a bug: the center and
    width are positions, not data values).
    """
    y = np.asarray(to_host(data), dtype=np.float64)
    if y.ndim != 1 or y.size < 4:
        raise ParameterError("data", f"must be 1-D with at least 4 values, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("data", "must be finite")
    n = y.size
    k = np.arange(1, n + 1, dtype=np.float64)
    lo, hi = float(y.min()), float(y.max())
    if hi == lo:
        return lo, hi, (n + 1) / 2, float(n), 0.0
    ys = np.sort(y)
    start = np.array([ys[: n // 2].mean(), ys[n // 2 :].mean(), n // 2, n // 2], dtype=np.float64)

    def objective(p):
        bottom, top, center, width = p
        span = top - bottom
        if abs(span) <= 1e-12 * (hi - lo):
            # The normalised residual is singular at bottom == top. A large finite value (not inf)
            # keeps L-BFGS-B's finite-difference gradients free of inf - inf = NaN.
            return 1e12 * n
        return float(np.sum(((y - bottom) / span - _logistic(k, center, width)) ** 2))

    bounds = [(lo, hi), (lo, hi), (1.0, float(n)), (0.1, float(n))]
    result = scipy.optimize.minimize(objective, start, method="L-BFGS-B", bounds=bounds)
    best = result.x if objective(result.x) <= objective(start) else start
    bottom, top, center, width = (float(v) for v in best)
    return bottom, top, center, width, objective(best)


def auto_lambda(cs, Qs, nodes, ap, mmis, lam_range):
    """Register one frame at a sweep of affine weights and pick lambda by a sigmoid fit.

    Parameters
    ----------
    cs, Qs : ndarray
        Quadratic fits, ``(*gridsize, N)`` and ``(*gridsize, N, N)``.
    nodes : tuple of N 1-D arrays
    ap : AffinePenalty
        Its nodes are used; its ``lam`` is left unchanged (the sweep works on a copy).
    mmis : ndarray, shape ``(*gridsize, 2, *(2*maxshift + 1))``
    lam_range : (float, float)
        ``lambda_k = lam_min * 2**k`` for ``k = 0 .. ceil(log2(lam_max / lam_min)) - 1``
        (at least 4 values).

    Returns
    -------
    phi : GridDeformation
        The deformation at the chosen lambda.
    penalty : float
        Its total (data + affine) penalty.
    lam : float
        The chosen lambda, ``lams[max(1, round(center - width)) - 1]``.
    lams : ndarray
        The sweep.
    datapenalty : ndarray
        Data-only penalty at each lambda.
    quality : float
        ``objective / (top - bottom)**2 / n`` with ``objective`` from :func:`fit_sigmoid`: the
        original's quantity (reference §5.5), kept as is.  ``objective`` is already computed on
        data normalised by ``top - bottom``, so this second division makes ``quality`` depend on
        the scale of the data penalty (units ``1 / penalty**2``): scaling the mismatch by ``s``
        divides it by ``s**2``.  Compare it only between frames of one data set; ``objective / n``
        is the scale-free fit residual.

    Notes
    -----
    At each lambda two starts are optimised, the previous lambda's optimum (first: the clamped
    ``cs``) and the quadratic initial guess at this lambda, and the lower total penalty is kept.
    """
    from .deformation import GridDeformation

    lams = _lambda_ladder(lam_range, "lam_range")
    if lams.size < 4:
        raise ParameterError(
            "lam_range", f"{tuple(lam_range)} spans {lams.size} powers of two; at least 4 are "
                         "needed to fit the sigmoid")
    cs, Qs = _check_fits(cs, Qs, series=False)
    mmis = np.ascontiguousarray(to_host(mmis), dtype=np.float64)
    maxshift = maxshift_of(mmis)
    ap = copy.copy(ap)
    previous = clamp_shifts(cs, maxshift)
    us, totals, datapenalty = [], [], np.empty(lams.size)
    for i, lam in enumerate(lams):
        ap.lam = lam
        start_b, _ = initial_deformation(ap, cs, Qs)
        if not np.all(np.isfinite(start_b)):
            start_b = cs
        candidates = []
        for start in (previous, clamp_shifts(start_b, maxshift)):
            try:
                u, fval, _ = optimize_deformation(start, ap, mmis, maxshift=maxshift)
            except ValueError:  # a start outside the valid region; the other one may work
                continue
            candidates.append((fval, u))
        if not candidates:
            raise ValueError(f"no finite penalty at lambda = {lam}: check mmis")
        fval, u = min(candidates, key=lambda c: c[0])
        previous = u
        us.append(u)
        totals.append(fval)
        datapenalty[i] = data_penalty(u, mmis)[0]
    bottom, top, center, width, objective = fit_sigmoid(datapenalty)
    index = max(1, round(center - width)) - 1
    # The original divides the already normalised residual by (top - bottom)**2 once more; the
    # result is scale-dependent, but it is what the original reports (see quality above).
    quality = objective / (top - bottom) ** 2 / lams.size if top != bottom else 0.0
    phi = GridDeformation(us[index], nodes)
    return phi, totals[index], float(lams[index]), lams, datapenalty, quality


def auto_lambda_t(Es, cs, Qs, ap, lam_t_range):
    """Quadratic-model data penalty of a series along a sweep of temporal weights.

    Parameters
    ----------
    Es : ndarray, shape ``(T, *gridsize)``
        Minimum values of the quadratic fits.
    cs, Qs : ndarray, shapes ``(T, *gridsize, N)`` and ``(T, *gridsize, N, N)``
    ap : AffinePenalty
    lam_t_range : (float, float)
        ``lambda_t = min * 2**k`` for ``k = 0 .. ceil(log2(max / min)) - 1``.

    Returns
    -------
    lam_ts : ndarray
    datapenalty : ndarray
        ``(sum E + sum_{t,k} (u0 - c)^T Q (u0 - c)) / prod(gridsize)`` with ``u0`` the temporal
        initial guess; the mismatches themselves are not consulted (the original's proxy).
    """
    lam_ts = _lambda_ladder(lam_t_range, "lam_t_range")
    cs, Qs = _check_fits(cs, Qs, series=True)
    Es = np.asarray(to_host(Es), dtype=np.float64)
    if Es.shape != cs.shape[:-1]:
        raise ParameterError("Es", f"must have shape {cs.shape[:-1]} (cs.shape[:-1]), got {Es.shape}")
    n = math.prod(cs.shape[1:-1])
    datapenalty = np.empty(lam_ts.size)
    for i, lam_t in enumerate(lam_ts):
        u0, _ = initial_deformation(ap, cs, Qs, lam_t=lam_t)
        d = u0 - cs
        datapenalty[i] = (Es.sum() + np.einsum("...i,...ij,...j->...", d, Qs, d).sum()) / n
    return lam_ts, datapenalty
