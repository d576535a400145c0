"""Time-series helpers for per-frame deformations: median filtering and temporal interpolation.

A series of deformations is either an array ``us`` of shape ``(T, *gridsize, N)`` (time first) or
a list of :class:`~blockreg.reg.deformation.GridDeformation`; each function returns the kind it
was given.

References
----------
.. [1] HolyLab, RegisterDeformation.jl, ``src/timeseries.jl`` (``medfilt``, ``tinterpolate``).
"""
from __future__ import annotations

import numbers

import numpy as np

from .._backend import array_module, to_device, to_host
from ..errors import ParameterError
from .deformation import GridDeformation

__all__ = ["medfilt", "tinterpolate"]


def _unpack(us, name):
    """``(array (T, *g, N), template deformation or None)`` for an array or a list of deformations."""
    if isinstance(us, (list, tuple)) and us and all(isinstance(p, GridDeformation) for p in us):
        first = us[0]
        if any(p.gridsize != first.gridsize for p in us):
            raise ParameterError(name, "must all have the same gridsize")
        xp = array_module(*(p.u for p in us))
        return xp.stack([xp.asarray(p.u) for p in us]), first
    xp = array_module(us)
    arr = xp.asarray(us)
    if arr.ndim < 3 or arr.shape[-1] != arr.ndim - 2:
        raise ParameterError(name, "must have shape (T, *gridsize, N) or be a list of "
                                   f"GridDeformation, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr, None


def _pack(arr, template):
    if template is None:
        return arr
    return [template.with_u(arr[t]) for t in range(arr.shape[0])]


def medfilt(us, n):
    """Running median over time of every node and component.

    Parameters
    ----------
    us : ndarray ``(T, *gridsize, N)`` or list of GridDeformation
    n : int
        Window length (odd, positive).

    Returns
    -------
    Same kind as ``us``
        Frames ``n//2 <= t < T - n//2`` hold the median over frames ``t - n//2 .. t + n//2``; the
        first and last ``n//2`` frames are copied unchanged, as in the original.
    """
    if not isinstance(n, numbers.Integral) or n < 1 or n % 2 == 0:
        raise ParameterError("n", f"must be a positive odd integer, got {n!r}")
    arr, template = _unpack(us, "us")
    xp = array_module(arr)
    T = arr.shape[0]
    h = n // 2
    out = arr.copy()
    if T >= n and n > 1:
        windows = xp.stack([arr[k:T - n + 1 + k] for k in range(n)])
        out[h:T - h] = xp.median(windows, axis=0)
    return _pack(out, template)


def tinterpolate(us, tindex, nframes):
    """Fill in deformations for every frame from those of a subset of frames.

    Parameters
    ----------
    us : ndarray ``(K, *gridsize, N)`` or list of K GridDeformation
        Deformations of frames ``tindex``.
    tindex : sequence of int
        Strictly increasing 0-based frame indices, each in ``[0, nframes)``.
    nframes : int
        Length of the output series.

    Returns
    -------
    Same kind as ``us``, with ``nframes`` entries
        Constant (``us[0]``) before ``tindex[0]`` and (``us[-1]``) after ``tindex[-1]``; linear in
        time between consecutive registered frames.
    """
    arr, template = _unpack(us, "us")
    xp = array_module(arr)
    if not isinstance(nframes, numbers.Integral) or nframes < 1:
        raise ParameterError("nframes", f"must be a positive integer, got {nframes!r}")
    tindex = np.asarray(to_host(tindex))
    if tindex.ndim != 1 or tindex.size != arr.shape[0]:
        raise ParameterError("tindex", f"must list one frame index per deformation ({arr.shape[0]}), "
                                       f"got shape {tindex.shape}")
    if tindex.size and not np.all(np.equal(np.mod(tindex, 1), 0)):
        raise ParameterError("tindex", "must hold integer frame indices")
    tindex = tindex.astype(np.int64)
    if np.any(np.diff(tindex) <= 0):
        raise ParameterError("tindex", "must be strictly increasing")
    if tindex[0] < 0 or tindex[-1] >= nframes:
        raise ParameterError("tindex", f"must lie in [0, {nframes}), got {tindex[0]}..{tindex[-1]}")
    # Fractional position of every frame in the registered list; np.interp holds the ends constant.
    position = np.interp(np.arange(nframes), tindex, np.arange(tindex.size, dtype=np.float64))
    lower = np.minimum(np.floor(position).astype(np.int64), max(tindex.size - 2, 0))
    alpha = position - lower
    upper = np.minimum(lower + 1, tindex.size - 1)
    shape = (nframes,) + (1,) * (arr.ndim - 1)
    alpha = to_device(alpha.reshape(shape), xp).astype(arr.dtype, copy=False)
    lower, upper = to_device(lower, xp), to_device(upper, xp)
    out = (1 - alpha) * arr[lower] + alpha * arr[upper]
    return _pack(out, template)
