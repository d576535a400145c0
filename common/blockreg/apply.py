"""Applying stored deformations to any movie: the registered one, another channel, the raw data.

A registration job stores node displacements ``u`` (``(K, *gridsize, N)``) for the frames it
registered.  To warp a movie with them: choose or receive the registered frame indices, optionally
median-filter ``u`` over time, interpolate it in time to every frame of the movie
(:func:`deformations_for_frames`), then warp frame by frame (:func:`warp_frame`, the one function
every path uses, so a warp job and an in-process warp give the same bytes).  The subset workflow
of the original's advice for long runs is :func:`select_frames` + registration of those frames +
the same two steps.

References
----------
.. [1] HolyLab, RegisterDeformation.jl, ``warp!``, ``medfilt``, ``tinterpolate``;
       BlockRegistration README (2017), "stack-by-stack alternative" (reference §6.5).
"""
from __future__ import annotations

import numbers

import numpy as np

from ._backend import array_module, to_host
from .errors import ParameterError
from .reg.deformation import GridDeformation
from .reg.timeseries import medfilt as _medfilt
from .reg.timeseries import tinterpolate
from .store_ngff import to_output_dtype as _store_dtype

__all__ = ["apply_deformations", "deformations_for_frames", "select_frames", "to_output_dtype",
           "warp_frame"]


def select_frames(nframes, *, every=None, frames=None, include_last=True):
    """The frames to register: every ``every``-th frame from 0, or an explicit list.

    Parameters
    ----------
    nframes : int
        Frames in the movie.
    every : int, optional
        Register frames ``0, every, 2 * every, ...``.
    frames : sequence of int, optional
        Explicit frame indices (any order, duplicates dropped); exclusive with ``every``.
    include_last : bool
        With ``every``, also register the last frame, so the frames after the last multiple are
        interpolated rather than held constant.

    Returns
    -------
    ndarray of int64
        Strictly increasing indices in ``[0, nframes)``.
    """
    if not isinstance(nframes, numbers.Integral) or nframes < 1:
        raise ParameterError("nframes", f"must be a positive integer, got {nframes!r}")
    if (every is None) == (frames is None):
        raise ParameterError("frames", "give exactly one of every= and frames=")
    if every is not None:
        if not isinstance(every, numbers.Integral) or isinstance(every, bool) or every < 1:
            raise ParameterError("every", f"must be a positive integer, got {every!r}")
        index = np.arange(0, nframes, every, dtype=np.int64)
        if include_last and index[-1] != nframes - 1:
            index = np.append(index, nframes - 1)
        return index
    values = np.asarray(frames)
    if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iu":
        raise ParameterError("frames", f"must be a non-empty list of integers, got {frames!r}")
    if values.min() < 0 or values.max() >= nframes:
        raise ParameterError("frames", f"indices must lie in [0, {nframes}), got {values.min()}..{values.max()}")
    return np.unique(values.astype(np.int64))


def deformations_for_frames(us, nframes, *, tindex=None, medfilt=None):
    """Node displacements for every frame of a movie from those of the registered frames.

    Parameters
    ----------
    us : ndarray ``(K, *gridsize, N)``
        Displacements of the registered frames, in time order.
    nframes : int
        Frames of the movie to warp.
    tindex : sequence of int, optional
        The movie frame of each of the K deformations (strictly increasing).  Default: all frames
        were registered (``K == nframes``).
    medfilt : int, optional
        Odd window of a running median over the K registered deformations, applied before the
        temporal interpolation (:func:`blockreg.reg.timeseries.medfilt`: the first and last
        ``medfilt // 2`` are kept as they are).

    Returns
    -------
    ndarray ``(nframes, *gridsize, N)``
        Linear in time between registered frames, constant before the first and after the last.
    """
    xp = array_module(us)
    us = xp.asarray(us)
    if tindex is None:
        if us.shape[0] != nframes:
            raise ParameterError("tindex", f"us has {us.shape[0]} frames but the movie {nframes}; "
                                           "say which frames were registered")
        tindex = np.arange(nframes)
    if medfilt is not None and medfilt != 1:
        us = _medfilt(us, medfilt)
    try:
        return tinterpolate(us, tindex, nframes)
    except ValueError as exc:
        raise ParameterError("tindex", str(exc)) from None


def to_output_dtype(warped, dtype):
    """Convert a warped float frame to ``dtype``: integers are rounded (half to even) and clipped
    to the type's range, and NaN (outside the image) becomes 0."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "fiu":
        raise ParameterError("dtype", f"must be a float or integer type, got {dtype}")
    return _store_dtype(warped, dtype)


def warp_frame(frame, u, nodes, *, dtype=np.float32):
    """Warp one frame by its node displacements: ``out(x) = frame(x + u(x))``.

    Parameters
    ----------
    frame : ndarray
        One frame (NumPy or CuPy), of the shape the nodes span.
    u : ndarray ``(*gridsize, N)``
    nodes : tuple of N 1-D arrays
    dtype : dtype or "input"
        Output type: a float type, an integer type (rounded, clipped, NaN -> 0), or ``"input"``
        for the frame's own type.

    Returns
    -------
    ndarray of ``dtype``, in the frame's array module
    """
    from .reg.warp import warp

    xp = array_module(frame)
    frame = xp.asarray(frame)
    target = frame.dtype if isinstance(dtype, str) and dtype == "input" else dtype
    return to_output_dtype(warp(frame, GridDeformation(u, nodes)), target)


def apply_deformations(movie, us, nodes, *, tindex=None, medfilt=None, dtype=np.float32, frames=None,
                       out=None):
    """Warp a movie, frame by frame, with stored deformations.

    Parameters
    ----------
    movie : sequence of frames
        Anything with ``len()`` and ``movie[t]`` returning one frame (an ndarray ``(T, ...)``, a
        :func:`blockreg.io.open_series` reader, a Zarr array); read one frame at a time.
    us : ndarray ``(K, *gridsize, N)``
        Stored displacements of the registered frames.
    nodes : tuple of N 1-D arrays
    tindex, medfilt
        See :func:`deformations_for_frames` (``tindex``: movie frames of the K deformations).
    dtype : dtype or "input"
        See :func:`warp_frame`.
    frames : iterable of int, optional
        Movie frames to warp (default all), e.g. the share of one task.
    out : array-like, optional
        Written at ``out[t]`` for each warped frame ``t`` (an ndarray, memmap or Zarr array of
        shape ``(T, *frame_shape)``); default a new ndarray.

    Returns
    -------
    out
    """
    nframes = len(movie)
    all_us = deformations_for_frames(us, nframes, tindex=tindex, medfilt=medfilt)
    frames = range(nframes) if frames is None else frames
    for t in frames:
        warped = to_host(warp_frame(movie[t], all_us[t], nodes, dtype=dtype))
        if out is None:
            out = np.empty((nframes,) + warped.shape, dtype=warped.dtype)
        out[t] = warped
    return out
