"""Quadratic B-spline interpolation on a regular 1-D lattice, applied separably.

Both the deformation grid (node displacements ``u``) and the interpolated aperture mismatch
(``num``/``denom`` over integer shifts) are represented by quadratic B-spline coefficients, as in
the original (Interpolations.jl ``BSpline(Quadratic(...))``, ``OnCell``).

A 1-D signal ``y_0 .. y_{n-1}`` has coefficients ``c_0 .. c_{n-1}`` satisfying

    y_i = c_{i-1}/8 + 3 c_i/4 + c_{i+1}/8,

with one *ghost* coefficient beyond each end fixed by the boundary condition:

``"flat"``      ghost = nearest coefficient (``c_{-1} = c_0``).  Edge rows are (7/8, 1/8).  This is
                the production choice (Julia ``Flat(OnCell())`` and ``InPlace(OnCell())``).
``"quadratic"`` ghost = quadratic extrapolation (``c_{-1} = 3c_0 - 3c_1 + c_2``).  Edge rows are
                (9/8, -1/4, 1/8).  Exact for quadratic data (Julia ``InPlaceQ(OnCell())``).

A value at fractional index ``x`` (0-based; ``-0.5 <= x <= n - 0.5``) is, with ``i = round(x)``
and ``d = x - i``:

    c_{i-1} (1/2 - d)^2 / 2 + c_i (3/4 - d^2) + c_{i+1} (1/2 + d)^2 / 2.

References
----------
.. [1] M. Unser, "Splines: a perfect fit for signal and image processing", IEEE Signal Processing
       Magazine 16(6), 1999.
.. [2] Interpolations.jl, ``BSpline(Quadratic(Flat(OnCell())))`` and ``InPlaceQ``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .._backend import array_module, device_constant
from ..errors import ParameterError

BOUNDARY_CONDITIONS = ("flat", "quadratic")


def _check_bc(bc: str) -> str:
    if bc not in BOUNDARY_CONDITIONS:
        raise ParameterError("bc", f"must be one of {BOUNDARY_CONDITIONS}, got {bc!r}")
    return bc


@lru_cache(maxsize=256)
def _ghost_matrix(n: int, bc: str) -> np.ndarray:
    """(n + 2, n) matrix mapping the n coefficients to the padded ones (ghosts included)."""
    G = np.zeros((n + 2, n))
    G[1:-1] = np.eye(n)
    if bc == "flat" or n < 3:
        G[0, 0] = 1.0
        G[-1, -1] = 1.0
    else:
        G[0, :3] = (3.0, -3.0, 1.0)
        G[-1, -3:] = (1.0, -3.0, 3.0)
    return G


@lru_cache(maxsize=256)
def _prefilter_matrix(n: int, bc: str) -> np.ndarray:
    """(n, n) matrix P with ``c = P @ y`` (inverse of the collocation system)."""
    if n == 1:
        return np.ones((1, 1))
    A = np.zeros((n, n + 2))
    for i in range(n):
        A[i, i : i + 3] = (0.125, 0.75, 0.125)
    M = A @ _ghost_matrix(n, bc)
    P = np.linalg.inv(M)
    P.setflags(write=False)
    return P


def stencil(x):
    """Nearest lattice index and the three quadratic B-spline weights at fractional index ``x``.

    Parameters
    ----------
    x : array_like
        Fractional 0-based indices.

    Returns
    -------
    i : ndarray of int
        ``round(x)`` (ties to even, as Julia's ``round``).
    w : ndarray, shape ``x.shape + (3,)``
        Weights of coefficients ``i-1, i, i+1``.
    dw : ndarray, shape ``x.shape + (3,)``
        Derivatives of the weights with respect to ``x``.
    """
    xp = array_module(x)
    x = xp.asarray(x)
    i = xp.round(x)
    d = x - i
    w = xp.stack([0.5 * (0.5 - d) ** 2, 0.75 - d * d, 0.5 * (0.5 + d) ** 2], axis=-1)
    dw = xp.stack([d - 0.5, -2.0 * d, 0.5 + d], axis=-1)
    return i.astype(np.int64), w, dw


def prefilter(y, axes=None, bc: str = "flat"):
    """Quadratic B-spline coefficients of ``y`` along ``axes`` (all axes by default).

    Parameters
    ----------
    y : ndarray
        Samples on the lattice (NumPy or CuPy).
    axes : int or sequence of int, optional
        Axes to prefilter; the others are treated as independent signals.
    bc : {"flat", "quadratic"}
        Boundary condition (see module docstring).

    Returns
    -------
    ndarray
        Coefficients, same shape as ``y``, floating point.
    """
    _check_bc(bc)
    c = array_module(y).asarray(y)
    if c.dtype.kind != "f":
        c = c.astype(np.float64)
    return _apply_along_axes(_prefilter_matrix, c, axes, bc)


def pad_ghosts(c, axes=None, bc: str = "flat"):
    """Append the ghost coefficient at both ends of each axis in ``axes`` (length n -> n + 2)."""
    _check_bc(bc)
    return _apply_along_axes(_ghost_matrix, c, axes, bc)


def _apply_along_axes(matrix, c, axes, bc):
    """Multiply ``c`` along each axis in ``axes`` (all by default) by ``matrix(length, bc)``."""
    xp = array_module(c)
    if axes is None:
        axes = range(c.ndim)
    elif isinstance(axes, int):
        axes = (axes,)
    for ax in axes:
        ax = ax % c.ndim
        M = device_constant(matrix(c.shape[ax], bc), xp).astype(c.dtype, copy=False)
        c = xp.moveaxis(xp.tensordot(M, c, axes=([1], [ax])), 0, ax)
    return c


def evaluation_matrix(n: int, x, bc: str = "flat") -> np.ndarray:
    """Dense (len(x), n) matrix ``E`` so that ``E @ c`` evaluates the spline at indices ``x``.

    The ghosts are folded in, so ``c`` is the plain n-coefficient vector.  Positions outside
    ``[-0.5, n - 0.5]`` are clamped to that range (the spline is constant-extended beyond the
    half-cell at each end, matching ``Flat(OnCell())``).
    """
    _check_bc(bc)
    x = np.clip(np.asarray(x, dtype=np.float64), -0.5, n - 0.5)
    # round() may land on n at x = n - 0.5 (ties to even); clamp first, then take the weights
    # relative to the clamped index, so the half-cell at each end evaluates correctly.
    i = np.clip(np.round(x), 0, n - 1)
    _, w, _ = stencil(x - i)
    i = i.astype(np.int64)
    E = np.zeros((x.size, n + 2))
    rows = np.arange(x.size)
    for k in range(3):
        np.add.at(E, (rows, i.ravel() + k), w.reshape(-1, 3)[:, k])
    return E @ _ghost_matrix(n, bc)
