"""Quadratic fits of mismatch arrays: ``num/denom (s) ~ E0 + (s - u0)^T Q (s - u0)``.

Each aperture's mismatch is summarised by its minimum ``E0``, the (integer) shift ``u0`` where it
occurs and a positive semi-definite curvature ``Q``; the deformation optimiser starts from the
solution of these quadratic models.

References
----------
.. [1] HolyLab, RegisterFit.jl, ``qfit``, ``mms2fit!``, ``qbuild``, ``uclamp!``, ``uisvalid``
   (https://github.com/HolyLab/RegisterFit.jl).
"""
from __future__ import annotations

import numpy as np

from .._backend import array_module, device_constant, float_dtype, to_host
from ..errors import ParameterError
from ._common import BOUND_MARGIN, CLAMP_MARGIN, aperture_ndim, per_axis, shift_limit


def _check_mm(mm, name="mm"):
    if mm.ndim < 2 or mm.shape[0] != 2 or any(n % 2 == 0 for n in mm.shape[1:]):
        raise ParameterError(name, f"must have shape (2, *(2m+1)), got {tuple(mm.shape)}")


def _shift_offsets(shape):
    """Integer coordinates of every entry of ``shape`` in column-major order, shape ``(P, N)``."""
    grids = np.indices(shape).reshape(len(shape), -1, order="F")
    return grids.T


def _heuristic_q(dE, V4, eps, xp):
    """``Q = M+ dE M+`` with ``M = sqrtm(V4)`` and a truncated pseudo-inverse (batched over leading axes).

    ``V4`` is symmetric positive semi-definite, so ``sqrtm`` and the SVD of ``M`` both come from one
    symmetric eigendecomposition.
    """
    lam, U = xp.linalg.eigh(V4)
    s = xp.sqrt(xp.clip(lam, 0, None))
    tol = np.sqrt(eps) * s.max(axis=-1, keepdims=True)
    keep = (s >= tol) & (s > 0)
    sinv = xp.where(keep, 1 / xp.where(keep, s, 1), 0)
    Mp = (U * sinv[..., None, :]) @ xp.swapaxes(U, -1, -2)
    Q = Mp @ dE @ Mp
    return (Q + xp.swapaxes(Q, -1, -2)) / 2


def _least_squares_psd(v, dr):
    """Symmetric ``Q`` minimising ``sum (dr - v^T Q v)^2``, projected onto the PSD cone."""
    n = v.shape[1]
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    design = np.stack([v[:, i] * v[:, j] * (1 if i == j else 2) for i, j in pairs], axis=1)
    q, *_ = np.linalg.lstsq(design, dr, rcond=None)
    Q = np.zeros((n, n))
    for (i, j), value in zip(pairs, q):
        Q[i, j] = Q[j, i] = value
    lam, U = np.linalg.eigh(Q)
    return (U * np.clip(lam, 0, None)) @ U.T


def qfit(mm, thresh, maxsep=None, opt=False):
    """Fit ``E0 + (s - u0)^T Q (s - u0)`` to ``num/denom`` of one mismatch array.

    Parameters
    ----------
    mm : ndarray, shape ``(2, *(2m + 1))``
        Mismatch array (num, denom); NumPy or CuPy (fitted on the host).
    thresh : float
        Entries with ``denom <= thresh`` are ignored.
    maxsep : int or sequence of int, optional
        Use only entries within ``maxsep`` of the minimum along each axis (default: all).
    opt : bool, optional
        False (the pipeline's choice, as in the original): the fast moment heuristic
        ``Q = M+ dE M+`` with ``M = sqrtm(sum |v|^2 v v^T)``, ``dE = sum (r - E0) v v^T``.
        True: the least-squares fit of ``sum (r - E0 - v^T Q v)^2`` over symmetric ``Q``,
        with negative eigenvalues clipped to 0 (exact for quadratic data).

    Returns
    -------
    E0 : float
        Smallest ratio (first minimum in column-major order, edges included).
    u0 : ndarray, shape ``(N,)``
        Its shift (integer-valued floats).
    Q : ndarray, shape ``(N, N)``
        Curvature; zero when the data cannot determine it. If no entry passes ``thresh`` the
        result is ``(0, zeros(N), zeros((N, N)))``.
    """
    mm = to_host(mm)
    _check_mm(mm)
    eps = np.finfo(float_dtype(mm.dtype)).eps
    num, den = mm[0].astype(np.float64), mm[1].astype(np.float64)
    shape, n = num.shape, num.ndim
    center = np.array([(k - 1) // 2 for k in shape])
    valid = den > thresh
    r = np.where(valid, num / np.where(valid, den, 1), np.inf)
    r[np.isnan(r)] = np.inf
    if not np.isfinite(r).any():
        return 0.0, np.zeros(n), np.zeros((n, n))
    flat = r.ravel(order="F")
    k = int(np.argmin(flat))
    coords = _shift_offsets(shape)
    imin = coords[k]
    E0 = float(flat[k])
    u0 = (imin - center).astype(np.float64)
    v = coords - imin
    use = np.isfinite(flat)
    if maxsep is not None:
        sep = per_axis(maxsep, n, "maxsep")
        use &= (np.abs(v) <= sep).all(axis=1)
    v, dr = v[use].astype(np.float64), flat[use] - E0
    dE = np.einsum("p,pi,pj->ij", dr, v, v)
    V4 = np.einsum("p,pi,pj->ij", (v * v).sum(axis=1), v, v)
    if not dE.any() or (np.diag(V4) == 0).any():
        return E0, u0, np.zeros((n, n))
    Q = _least_squares_psd(v, dr) if opt else _heuristic_q(dE, V4, eps, np)
    return E0, u0, Q


def _weighted_outer(weight, coords, center, xp):
    """``sum_p weight[k, p] v v^T`` with ``v = coords[p] - center[k]``, for every ``k``: ``(K, N, N)``.

    Expanding ``v v^T`` turns the sum into products of the ``(K, P)`` weights with ``coords``'
    ``(P, N*N)`` outer products and ``(P, N)`` rows. With integer coordinates and integer
    weights (as for ``V4``) every term is an exact float64 integer, so the result is exact.
    """
    k, n = center.shape
    outer = (coords[:, :, None] * coords[:, None, :]).reshape(-1, n * n)
    second = (weight @ outer).reshape(k, n, n)                       # sum w c c^T
    first = weight @ coords                                          # sum w c
    total = weight.sum(axis=1)                                       # sum w
    cross = first[:, :, None] * center[:, None, :]
    return (second - cross - xp.swapaxes(cross, 1, 2)
            + total[:, None, None] * center[:, :, None] * center[:, None, :])


def mms_to_fit(mms, thresh, opt=False):
    """Quadratic fits of every aperture's mismatch, vectorised over apertures.

    Parameters
    ----------
    mms : ndarray, shape ``(*gridsize, 2, *(2m + 1))``
        NumPy or CuPy; the heuristic fit (``opt=False``) runs on the array's own device.
    thresh : float or ndarray of shape ``gridsize``
        Denominator threshold (see :func:`qfit`), one for all apertures or one per aperture.
    opt : bool, optional
        See :func:`qfit`; ``opt=True`` fits each aperture on the host.

    Returns
    -------
    E0s : ndarray ``(*gridsize,)``
    cs : ndarray ``(*gridsize, N)``
    Qs : ndarray ``(*gridsize, N, N)``
        float64, on the device of ``mms``; equal to :func:`qfit` per aperture.
    """
    xp = array_module(mms)
    mms = xp.asarray(mms)
    axis = aperture_ndim(mms)
    gridsize, shape = mms.shape[:axis], mms.shape[axis + 1:]
    n = len(shape)
    thresh = np.asarray(to_host(thresh), dtype=np.float64)
    try:
        thresh = np.broadcast_to(thresh, gridsize)
    except ValueError:
        raise ParameterError("thresh", f"must be a number or an array of shape {gridsize}, got "
                                       f"shape {thresh.shape}") from None
    if opt:
        host = to_host(mms).reshape((-1, 2) + shape)
        fits = [qfit(mm, t, opt=True) for mm, t in zip(host, thresh.ravel())]
        E0s = np.array([f[0] for f in fits]).reshape(gridsize)
        cs = np.stack([f[1] for f in fits]).reshape(gridsize + (n,))
        Qs = np.stack([f[2] for f in fits]).reshape(gridsize + (n, n))
        return tuple(xp.asarray(a) for a in (E0s, cs, Qs))
    eps = np.finfo(float_dtype(mms.dtype)).eps
    k = int(np.prod(gridsize))
    # Column-major flattening of the shift axes, so argmin's first hit is Julia's first hit.
    flat = xp.swapaxes(mms.reshape((k, 2) + shape).astype(np.float64), 0, 1)
    flat = xp.transpose(flat, (0, 1) + tuple(range(n + 1, 1, -1))).reshape(2, k, -1)
    num, den = flat
    valid = den > device_constant(thresh.reshape(k, 1), xp)
    r = xp.where(valid, num / xp.where(valid, den, 1), xp.inf)
    r = xp.where(xp.isnan(r), xp.inf, r)
    kmin = xp.argmin(r, axis=1)
    E0 = xp.take_along_axis(r, kmin[:, None], axis=1)[:, 0]
    found = xp.isfinite(E0)
    coords = device_constant(_shift_offsets(shape).astype(np.float64), xp)   # (P, N)
    imin = coords[kmin]                                              # (K, N)
    use = xp.isfinite(r)
    dr = xp.where(use, r - xp.where(found, E0, 0)[:, None], 0)
    # |v|^2 with v = coords - imin, from (K, P) products only: no (K, P, N) temporaries.
    sq = (coords * coords).sum(axis=1)
    vsq = sq[None] - 2 * (imin @ coords.T) + (imin * imin).sum(axis=1)[:, None]
    dE = _weighted_outer(dr, coords, imin, xp)
    V4 = _weighted_outer(use * vsq, coords, imin, xp)
    degenerate = ~dE.reshape(k, -1).any(axis=1) | (xp.diagonal(V4, axis1=1, axis2=2) == 0).any(axis=1)
    # Degenerate apertures get an identity V4 so the batched eigendecomposition stays finite.
    eye = xp.eye(n)
    V4 = xp.where(degenerate[:, None, None], eye, V4)
    Q = _heuristic_q(dE, V4, eps, xp)
    Q = xp.where((degenerate | ~found)[:, None, None], 0, Q)
    center = device_constant(np.array([(s - 1) // 2 for s in shape], dtype=np.float64), xp)
    cs = xp.where(found[:, None], imin - center, 0)
    E0 = xp.where(found, E0, 0)
    return E0.reshape(gridsize), cs.reshape(gridsize + (n,)), Q.reshape(gridsize + (n, n))


def qbuild(E0, u0, Q, maxshift):
    """The quadratic ``E0 + (s - u0)^T Q (s - u0)`` on the shift grid ``|s_a| <= maxshift_a``.

    Returns
    -------
    ndarray, shape ``(2 * maxshift + 1)``
    """
    m = tuple(int(v) for v in maxshift)
    u0 = np.asarray(to_host(u0), dtype=float)
    Q = np.asarray(to_host(Q), dtype=float)
    if u0.shape != (len(m),) or Q.shape != (len(m), len(m)):
        raise ParameterError("u0", f"must be ({len(m)},) and Q ({len(m)}, {len(m)}) for maxshift "
                                   f"{m}, got {u0.shape} and {Q.shape}")
    s = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in m], indexing="ij"), axis=-1) - u0
    return float(E0) + np.einsum("...i,ij,...j->...", s, Q, s)


def clamp_shifts(u, maxshift, margin=CLAMP_MARGIN):
    """Copy of ``u`` (``(..., N)``, components last) clamped to ``|u_a| <= maxshift_a - margin``.

    The default margin (0.51) keeps a starting point strictly inside the optimiser's bounds
    (``maxshift - 0.5001``).  Float ``u`` keeps its type, other types become float32.
    """
    xp = array_module(u)
    u = xp.asarray(u, dtype=float_dtype(xp.asarray(u).dtype))
    bound = xp.asarray(shift_limit(maxshift, margin, u.shape[-1]))
    return xp.clip(u, -bound, bound)


#: The original's name (RegisterFit.jl ``uclamp!``).
uclamp = clamp_shifts


def uisvalid(u, maxshift):
    """True when every ``|u_a| < maxshift_a - 0.5001`` (``u`` shaped ``(..., N)``)."""
    xp = array_module(u)
    u = xp.asarray(u)
    bound = xp.asarray(shift_limit(maxshift, BOUND_MARGIN, u.shape[-1]))
    return bool((xp.abs(u) < bound).all())
