"""Penalties of a grid deformation: the data term, the affine-residual term, the temporal term.

The registration objective of one frame is

    data(u) + affine(u),

where ``data`` is the aperture mismatch summed over apertures (each aperture shifted by its node's
displacement ``u_k``) and ``affine`` penalises the part of ``u`` that no affine map explains.  A
whole series adds a temporal term that penalises frame-to-frame changes of ``u``.  Every function
returns ``(value, grad)`` with ``grad`` shaped like its ``u`` argument, which is what the
optimisers in :mod:`blockreg.reg.optimize` need.

References
----------
.. [1] T. E. Holy et al., RegisterPenalty.jl (HolyLab), ``penalty!``, ``AffinePenalty``,
       ``interpolate_mm!``.
"""
from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from .._backend import array_module, device_constant, to_device, to_host
from ..errors import ParameterError
from . import bspline
from ._common import INTERPOLANT_MARGIN, aperture_ndim, shift_limit


def maxshift_of(mmis) -> tuple[int, ...]:
    """The maximum shift ``m`` (per spatial axis) of a mismatch array shaped ``(*g, 2, *(2m+1))``."""
    N = aperture_ndim(mmis, "mmis")
    return tuple((s - 1) // 2 for s in mmis.shape[N + 1 :])


def interpolate_mm(mms, bc: str = "flat"):
    """Quadratic B-spline coefficients of each aperture's ``num`` and ``denom`` over shifts.

    Parameters
    ----------
    mms : ndarray, shape ``(*gridsize, 2, *(2*maxshift + 1))``
        Aperture mismatches (NumPy or CuPy).
    bc : {"flat", "quadratic"}
        ``"flat"`` is the production boundary (Julia ``InPlace(OnCell())``); ``"quadratic"`` is
        exact for quadratic mismatches (Julia ``InPlaceQ(OnCell())``, used by the original's tests).

    Returns
    -------
    mmis : ndarray, same shape as ``mms``
        Coefficients along the last N (shift) axes, for :func:`data_penalty`.
    """
    N = aperture_ndim(mms)
    coefs = bspline.prefilter(mms, axes=tuple(range(mms.ndim - N, mms.ndim)), bc=bc)
    # C-contiguous so that data_penalty's flat gathers need no copy.
    return array_module(coefs).ascontiguousarray(coefs)


@functools.lru_cache(maxsize=32)
def _gather_layout(shift_shape: tuple[int, ...]):
    """C-order strides of the shift axes, and the flat offsets of the 3**N-point stencil."""
    N = len(shift_shape)
    strides = np.array([math.prod(shift_shape[a + 1 :]) for a in range(N)], dtype=np.int64)
    offsets = np.array(list(itertools.product((-1, 0, 1), repeat=N)), dtype=np.int64)
    return strides, offsets @ strides


def _check_u_against(u, grid_shape, N, name="u"):
    if tuple(u.shape) != tuple(grid_shape) + (N,):
        raise ParameterError(name, f"must have shape {tuple(grid_shape) + (N,)} (gridsize + (N,)), "
                                   f"got {tuple(u.shape)}")


def data_penalty(u, mmis, keep=None):
    """Aperture mismatch of a deformation: ``sum_k num_k(u_k) / sum_k denom_k(u_k)``.

    Parameters
    ----------
    u : ndarray, shape ``(*gridsize, N)``
        Displacement of every node (the shift at which its aperture's mismatch is read).
    mmis : ndarray, shape ``(*gridsize, 2, *(2*maxshift + 1))``
        Interpolated mismatches from :func:`interpolate_mm`.
    keep : ndarray of bool, shape ``gridsize``, optional
        Apertures to include (default: all).  Excluded apertures get zero gradient.

    Returns
    -------
    value : float
        The penalty; NaN when a kept ``|u_{k,a}| >= maxshift_a - 0.5`` (outside the interpolant).
    grad : ndarray, shape ``(*gridsize, N)``
        ``(grad num_k * D - N * grad denom_k) / D**2`` for kept apertures, 0 for the others.

    Notes
    -----
    All apertures are evaluated at once: the 3**N stencil coefficients of every aperture are
    gathered with one fancy-indexing call, so the cost is a few array operations whatever the
    grid size.  Because ``|u| < m - 0.5``, the stencil never needs a ghost coefficient.
    """
    xp = array_module(u, mmis)
    N = aperture_ndim(mmis, "mmis")
    grid_shape = tuple(mmis.shape[:N])
    u = xp.asarray(u)
    _check_u_against(u, grid_shape, N)
    m = maxshift_of(mmis)
    shift_shape = tuple(mmis.shape[N + 1 :])
    n = math.prod(grid_shape)
    if keep is None:
        keep_flat = xp.ones(n, dtype=bool)
    else:
        keep = xp.asarray(keep)
        if tuple(keep.shape) != grid_shape:
            raise ParameterError("keep", f"must have shape {grid_shape} (gridsize), got "
                                         f"{tuple(keep.shape)}")
        keep_flat = keep.reshape(n).astype(bool)

    U = u.reshape(n, N)
    if keep is not None:
        # Excluded apertures may lie anywhere (even NaN): read them at zero shift, then drop them.
        U = xp.where(keep_flat[:, None], U, 0.0)
    m_arr = device_constant(np.asarray(m, dtype=np.float64), xp)
    if not bool(xp.all(xp.abs(U) < device_constant(shift_limit(m, INTERPOLANT_MARGIN), xp))):
        return math.nan, xp.full(u.shape, xp.nan, dtype=xp.result_type(u.dtype, np.float64))

    i, w, dw = bspline.stencil(U + m_arr)  # (n, N), (n, N, 3), (n, N, 3)
    strides, stencil_index = (device_constant(a, xp) for a in _gather_layout(shift_shape))
    npos = math.prod(shift_shape)
    # Flat index of every stencil coefficient of every aperture, num then denom: (n, 2, 3**N).
    start = (i * strides).sum(axis=1) + xp.arange(n) * (2 * npos)
    flat_index = start[:, None, None] + stencil_index[None, None, :]
    coefs = xp.ascontiguousarray(mmis).reshape(-1)
    vals = xp.take(coefs, flat_index + device_constant(np.array([0, npos]), xp)[None, :, None])

    # Tensor-product weights over the 3**N stencil in C order (matching stencil_index); the
    # derivative along axis a swaps in dw for w on that axis only (no division by w).
    def outer(factors):
        out = factors[0]
        for f in factors[1:]:
            out = out[..., None] * f.reshape((n,) + (1,) * (out.ndim - 1) + (3,))
        return out.reshape(n, -1)

    weight = outer([w[:, a] for a in range(N)])  # (n, S)
    dweight = xp.stack(
        [outer([dw[:, b] if b == a else w[:, b] for b in range(N)]) for a in range(N)], axis=1
    )  # (n, N, S)
    nd_k = (vals @ weight[:, :, None])[..., 0]  # (n, 2): num_k, denom_k
    dnd_k = vals @ xp.swapaxes(dweight, 1, 2)  # (n, 2, N)
    if keep is not None:
        nd_k = nd_k * keep_flat[:, None]
        dnd_k = dnd_k * keep_flat[:, None, None]
    num, den = nd_k.sum(axis=0)
    grad = (dnd_k[:, 0] * den - num * dnd_k[:, 1]) / den**2
    return float(num / den), grad.reshape(u.shape)


class AffinePenalty:
    """Penalty on the part of a node displacement field that no affine map explains.

    With ``C`` the ``(n, N+1)`` matrix of rows ``[x_k, 1]`` (node positions in C-order grid order,
    matching ``u.reshape(n, N)``) and ``F`` the thin Q factor of ``C``, the residual of the best
    affine fit is ``R = U - F F^T U`` and the penalty is ``(lam / n) * ||R||_F**2``.  It is zero for
    every affine ``u`` (translation, rotation, stretch, skew).

    Parameters
    ----------
    nodes : tuple of N 1-D arrays
        Node positions along each axis.
    lam : float
        Weight; settable afterwards (auto-lambda sweeps it).

    References
    ----------
    .. [1] RegisterPenalty.jl, ``AffinePenalty``.
    """

    def __init__(self, nodes, lam):
        if isinstance(nodes, np.ndarray) and nodes.ndim == 1:
            nodes = (nodes,)
        try:
            nodes = tuple(np.asarray(to_host(x), dtype=np.float64) for x in nodes)
        except (TypeError, ValueError) as exc:
            raise ParameterError("nodes", f"must be a tuple of 1-D arrays: {exc}") from None
        if not nodes or any(x.ndim != 1 or x.size == 0 for x in nodes):
            raise ParameterError("nodes", "must be a non-empty tuple of non-empty 1-D arrays")
        self.nodes = nodes
        self.lam = lam
        grids = np.meshgrid(*nodes, indexing="ij")
        X = np.stack([g.ravel() for g in grids], axis=1)
        C = np.hstack([X, np.ones((X.shape[0], 1))])
        F, _ = np.linalg.qr(C, mode="reduced")
        # With fewer nodes than N + 1 (or collinear nodes) C is rank-deficient; keep only the
        # columns of F that span its range, so F F^T stays a projection.
        rank = np.linalg.matrix_rank(C)
        if rank < F.shape[1]:
            Uc, _, _ = np.linalg.svd(C, full_matrices=False)
            F = Uc[:, :rank]
        self.F = F
        self._F_on = {}

    @property
    def gridsize(self) -> tuple[int, ...]:
        return tuple(x.size for x in self.nodes)

    @property
    def lam(self) -> float:
        return self._lam

    @lam.setter
    def lam(self, value):
        value = float(value)
        if math.isnan(value) or value < 0:
            raise ParameterError("lam", f"must be >= 0, got {value}")
        self._lam = value

    def _F(self, xp):
        if xp is np:
            return self.F
        key = id(xp)
        if key not in self._F_on:
            self._F_on[key] = to_device(self.F, xp)
        return self._F_on[key]

    def residual(self, u):
        """``R = U - F F^T U`` reshaped like ``u``."""
        xp = array_module(u)
        _check_u_against(u, self.gridsize, len(self.nodes))
        n = math.prod(self.gridsize)
        U = u.reshape(n, -1)
        F = self._F(xp)
        return (U - F @ (F.T @ U)).reshape(u.shape)

    def __call__(self, u):
        """Return ``(value, grad)`` of the penalty at ``u`` (shape ``(*gridsize, N)``)."""
        xp = array_module(u)
        u = xp.asarray(u)
        R = self.residual(u)
        n = math.prod(self.gridsize)
        if self._lam == 0:
            return 0.0, xp.zeros_like(R)
        value = float(self._lam / n * xp.sum(R * R))
        return value, (2 * self._lam / n) * R


def temporal_penalty(us, lam_t):
    """Penalty on frame-to-frame changes: ``(lam_t / 2) sum_t sum_k ||u_{t+1,k} - u_{t,k}||**2``.

    Parameters
    ----------
    us : ndarray, shape ``(T, *gridsize, N)``
    lam_t : float

    Returns
    -------
    value : float
    grad : ndarray, shape of ``us``
    """
    xp = array_module(us)
    us = xp.asarray(us)
    if us.ndim < 2:
        raise ParameterError("us", f"must have shape (T, *gridsize, N), got {tuple(us.shape)}")
    lam_t = float(lam_t)
    if math.isnan(lam_t) or lam_t < 0:
        raise ParameterError("lam_t", f"must be >= 0, got {lam_t}")
    diff = us[1:] - us[:-1]
    value = float(0.5 * lam_t * xp.sum(diff * diff))
    grad = xp.zeros(us.shape, dtype=xp.result_type(us.dtype, np.float64))
    grad[1:] += lam_t * diff
    grad[:-1] -= lam_t * diff
    return value, grad


def total_penalty(u, ap, mmis, phi_old=None, keep=None):
    """Registration objective of one frame: ``affine(phi_c) + data(phi)``.

    Parameters
    ----------
    u : ndarray, shape ``(*gridsize, N)``
        Displacements of the deformation being optimised, ``phi``.
    ap : AffinePenalty
    mmis : ndarray, shape ``(*gridsize, 2, *(2*maxshift + 1))``
    phi_old : GridDeformation, optional
        A deformation applied before ``phi``; the affine term then sees the composition
        ``phi_c = phi_old(phi)`` and its gradient is chain-ruled through the node Jacobians.
    keep : ndarray of bool, shape ``gridsize``, optional
        Apertures that count in the data term.

    Returns
    -------
    value : float
        Non-finite (and returned before the data term is computed) when the affine part is.
    grad : ndarray, shape of ``u``
    """
    xp = array_module(u, mmis)
    u = xp.asarray(u)
    if phi_old is None:
        value, grad = ap(u)
    else:
        from .deformation import GridDeformation, compose

        phi_c, J = compose(phi_old, GridDeformation(u, ap.nodes), jacobians=True)
        value, grad_c = ap(xp.asarray(phi_c.u))
        # d affine / d u_j = sum_i J_ij * d affine / d u_c,i  (J = d u_c / d u per node)
        grad = xp.einsum("...ij,...i->...j", xp.asarray(J), grad_c) if math.isfinite(value) else grad_c
    if not math.isfinite(value):
        return value, grad
    dvalue, dgrad = data_penalty(u, mmis, keep)
    return value + dvalue, grad + dgrad


def total_penalty_series(us, ap, mmis_series, lam_t):
    """Whole-series objective: ``sum_t [affine(u_t) + data_t(u_t)] + temporal(us)``.

    Parameters
    ----------
    us : ndarray, shape ``(T, *gridsize, N)``
    ap : AffinePenalty
    mmis_series : ndarray, shape ``(T, *gridsize, 2, *(2*maxshift + 1))``
    lam_t : float
        Weight of :func:`temporal_penalty`.

    Returns
    -------
    value : float
    grad : ndarray, shape of ``us``
    """
    xp = array_module(us, mmis_series)
    us = xp.asarray(us)
    if mmis_series.shape[0] != us.shape[0]:
        raise ParameterError("mmis_series", f"has {mmis_series.shape[0]} frames but us has "
                                            f"{us.shape[0]}")
    value, grad = temporal_penalty(us, lam_t)
    for t in range(us.shape[0]):
        v, g = total_penalty(us[t], ap, mmis_series[t])
        value += v
        grad[t] += g
        if not math.isfinite(value):
            break
    return value, grad
