"""Overlapping time windows of a long series, and stitching their solutions back together.

A whole-series solve (:mod:`blockreg.reg.series`) of 10,000+ frames is split into windows that
overlap by a few reaches of the temporal penalty; each window is solved on its own (a task each)
and every frame takes a weighted mean of the windows holding it, with weights that ignore the
frames nearest a window's cut edges, where the window lacked the neighbours beyond the cut.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._backend import to_host
from ..errors import ParameterError

__all__ = ["Window", "plan_windows", "stitch_windows", "window_weights"]


@dataclass(frozen=True)
class Window:
    """Frames ``start .. stop - 1`` of a series, solved together by :func:`blockreg.reg.series.solve_window`."""

    start: int
    stop: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def plan_windows(nframes, window, overlap):
    """Overlapping windows covering ``nframes`` frames.

    Parameters
    ----------
    nframes : int
    window : int
        Frames per window (the memory of one task: ``window`` frames of ``mmis`` in float64).
    overlap : int
        Frames shared by consecutive windows, ``4 <= overlap <= window // 2`` (unless one window
        covers the series).  The stitched result differs from a one-shot solve by terms that
        decay with the distance to the windows' edges, on the temporal penalty's reach (about
        ``sqrt(lam_t / q)`` frames for a per-node data curvature ``q``): give the overlap several
        such reaches.

    Returns
    -------
    list of Window
        Windows ``[k * (window - overlap), + window)``; the last one ends at ``nframes`` (and
        may overlap its predecessor by more).
    """
    for name, value in (("nframes", nframes), ("window", window), ("overlap", overlap)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ParameterError(name, f"must be an integer, got {value!r}")
    if nframes < 1:
        raise ParameterError("nframes", f"must be at least 1, got {nframes}")
    if window < 2:
        raise ParameterError("window", f"must be at least 2 frames, got {window}")
    if window >= nframes:
        return [Window(0, int(nframes))]
    if not 4 <= overlap <= window // 2:
        raise ParameterError("overlap", f"must be between 4 and window // 2 = {window // 2}, got {overlap}")
    step = window - overlap
    windows = []
    start = 0
    while start + window < nframes:
        windows.append(Window(start, start + window))
        start += step
    windows.append(Window(nframes - window, nframes))
    return windows


def window_weights(windows, nframes):
    """Per-window stitching weights: for every frame, the weights of the windows holding it sum to 1.

    A window's weight at frame ``t`` grows with the distance ``d`` from ``t`` to the window's
    nearest *cut* edge (an edge at the series' own start or end is not a cut): zero for
    ``d <= margin``, rising linearly over the next ``ramp`` frames, with ``margin`` a third of
    the smallest overlap.  Consecutive windows thus cross-fade over the central third of their
    overlap, and the frames nearest a cut, the least reliable, never count.  (A window's error
    near a cut decays geometrically with ``d``, measured by about 0.55 per frame for a reach of
    two frames; a quarter-overlap margin left 0.04 px where a third leaves 0.003 px.)
    """
    overlaps = [a.stop - b.start for a, b in zip(windows, windows[1:])]
    smallest = min(overlaps) if overlaps else nframes
    margin = smallest // 3
    ramp = max(1, smallest - 1 - 2 * margin)
    raw = []
    for w in windows:
        t = np.arange(w.start, w.stop)
        left = t - w.start if w.start > 0 else np.full(len(w), np.inf)
        right = w.stop - 1 - t if w.stop < nframes else np.full(len(w), np.inf)
        raw.append(np.clip(np.minimum(left, right) - margin, 0, ramp).astype(np.float64))
    total = np.zeros(nframes)
    for w, r in zip(windows, raw):
        total[w.slice] += r
    if np.any(total <= 0):
        raise ParameterError("windows", "some frames have no window with weight (overlap too small?)")
    return [r / total[w.slice] for w, r in zip(windows, raw)]


def stitch_windows(windows, results, nframes):
    """Combine the windows' ``us`` into the series' ``(nframes, *gridsize, N)`` displacements.

    Parameters
    ----------
    windows : list of Window
        As given by :func:`plan_windows`.
    results : sequence of ndarray
        Each window's ``us`` (``(len(window), *gridsize, N)``), in the same order.
    nframes : int
    """
    if len(results) != len(windows):
        raise ParameterError("results", f"{len(results)} results for {len(windows)} windows")
    weights = window_weights(windows, nframes)
    out = None
    for w, us, wt in zip(windows, results, weights):
        us = np.asarray(to_host(us), dtype=np.float64)
        if us.shape[0] != len(w):
            raise ParameterError("results", f"window {w} has {len(w)} frames, its result {us.shape[0]}")
        if out is None:
            out = np.zeros((nframes,) + us.shape[1:])
        out[w.slice] += wt.reshape((-1,) + (1,) * (us.ndim - 1)) * us
    return out
