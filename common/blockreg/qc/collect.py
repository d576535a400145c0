"""Per-frame numbers gathered from a results store, for :mod:`blockreg.qc.report`.

Two passes with different costs: :func:`displacement_metrics` reads ``u`` of every frame (in
batches, so memory stays bounded for long 3-D movies); :func:`image_metrics` reads and compares
only the sampled frames' images with the fixed image.
"""
from __future__ import annotations

import numpy as np

from . import metrics
from .storage import store_member

__all__ = ["squeeze_to", "sample_positions", "displacement_metrics", "image_metrics",
           "SampledImages"]

# frames of u processed at once: bounds memory for long 3-D movies
U_BATCH = 512


def squeeze_to(arr, ndim):
    """Drop leading length-1 axes until ``arr`` has ``ndim`` axes (an OME t/z axis of one)."""
    arr = np.asarray(arr)
    while arr.ndim > ndim and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def sample_positions(n_frames, max_frames):
    """At most ``max_frames`` positions spread evenly over ``0..n_frames-1`` (first and last kept)."""
    if int(max_frames) < 1:
        raise ValueError(f"max_frames: must be at least 1, got {max_frames}")
    count = min(int(n_frames), int(max_frames))
    return np.unique(np.linspace(0, n_frames - 1, count).round().astype(int))


def displacement_metrics(u_arr, nodes, maxshift, tolerance, top_k):
    """Per-frame numbers from ``u`` (every frame), read :data:`U_BATCH` frames at a time.

    Parameters
    ----------
    u_arr : array-like, ``(T, *gridsize, N)``
        The store's ``u`` (a Zarr array; sliced, never read whole).
    nodes : tuple of N 1-D arrays
    maxshift : sequence of N floats or None
        None skips the bound check.
    tolerance : float
        See :func:`blockreg.qc.metrics.at_bound`.
    top_k : int
        Length of the ``largest`` list.

    Returns
    -------
    dict
        ``mean_u`` and ``max_abs_u_axis`` ``(T, N)``; ``max_abs_u``, ``fold_fraction``,
        ``min_det`` and ``nodes_at_bound`` ``(T,)``; ``node_hits`` ``gridsize`` (frames at the
        bound per node); ``largest`` (see :func:`blockreg.qc.metrics.largest_displacements`).
        NaN for frames with non-finite ``u``.
    """
    T = u_arr.shape[0]
    N = len(nodes)
    mean_u = np.full((T, N), np.nan)
    max_axis = np.full((T, N), np.nan)
    max_abs = np.full(T, np.nan)
    folds = np.full(T, np.nan)
    min_det = np.full(T, np.nan)
    bound_count = np.zeros(T, dtype=np.int64)
    node_hits = np.zeros(tuple(len(n) for n in nodes), dtype=np.int64)
    largest = []
    for start in range(0, T, U_BATCH):
        u = np.asarray(u_arr[start:start + U_BATCH], dtype=np.float64)
        b = u.shape[0]
        finite = np.isfinite(u.reshape(b, -1)).all(axis=1)
        per_node = u[finite].reshape(finite.sum(), -1, N)
        mean_u[start:start + b][finite] = per_node.mean(axis=1)
        max_axis[start:start + b][finite] = np.abs(per_node).max(axis=1, initial=0)
        norms = metrics.displacement_norms(u[finite]).reshape(finite.sum(), -1)
        max_abs[start:start + b][finite] = norms.max(axis=1, initial=0)
        folds[start:start + b], min_det[start:start + b] = metrics.fold_fractions(u, nodes)
        if maxshift is not None:
            hit = metrics.at_bound(u, maxshift, tolerance)
            bound_count[start:start + b] = hit.reshape(b, -1).sum(axis=1)
            node_hits += hit.sum(axis=0)
        for item in metrics.largest_displacements(u, top_k):
            item["position"] += start
            largest.append(item)
    largest.sort(key=lambda item: (-item["max_abs_u"], item["position"]))
    return {"mean_u": mean_u, "max_abs_u_axis": max_axis, "max_abs_u": max_abs, "fold_fraction": folds, "min_det": min_det,
            "nodes_at_bound": bound_count, "node_hits": node_hits, "largest": largest[:top_k]}


def _mismatch_ratio(fixed, moving):
    from ..reg.mismatch import mismatch_zeroshift

    num, denom = (float(v) for v in mismatch_zeroshift(fixed, moving))
    return num / denom if denom > 0 else float("nan")


class SampledImages:
    """Per sampled frame: correlation and mismatch with the fixed image, running mean images.

    Each frame is compared on the pixels valid in the fixed image and in both of its versions
    (before and after), so the two numbers of a frame measure the same pixels.  The frame with
    the lowest correlation after registration is kept (``worst``: score, position, images).
    """

    def __init__(self, fixed):
        self.fixed = fixed
        self.rows = []
        self.sums = {"before": np.zeros(fixed.shape), "after": np.zeros(fixed.shape)}
        self.counts = {"before": np.zeros(fixed.shape), "after": np.zeros(fixed.shape)}
        self.worst = None

    def add(self, position, before, after):
        mask = metrics.common_mask(*(x for x in (self.fixed, before, after) if x is not None))
        row = {"position": int(position)}
        for name, img in (("before", before), ("after", after)):
            if img is None:
                row[f"correlation_{name}"] = row[f"mismatch_{name}"] = float("nan")
                continue
            row[f"correlation_{name}"] = metrics.pearson(self.fixed, img, mask)
            row[f"mismatch_{name}"] = _mismatch_ratio(self.fixed, np.where(mask, img, np.nan))
            finite = np.isfinite(img)
            self.sums[name] += np.where(finite, img, 0)
            self.counts[name] += finite
        self.rows.append(row)
        score = row["correlation_after"]
        if np.isfinite(score) and (self.worst is None or score < self.worst[0]):
            self.worst = (score, int(position), before, after)

    def mean(self, name):
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sums[name] / self.counts[name]
        return mean if np.isfinite(mean).any() else None

    def column(self, key):
        return [row[key] for row in self.rows]


def image_metrics(group, plan, fixed, nodes, u_arr, positions, source_t):
    """Correlations, mismatches and mean images of the sampled frames.

    "Before" is the raw frame read through ``plan`` and preprocessed as the job did (None without
    a plan); "after" is the stored ``warped`` frame, or "before" warped by the frame's ``u``.
    Frames with non-finite ``u`` (failed) are skipped.

    Returns
    -------
    SampledImages
    """
    from ..reg.warp import warp

    warped = store_member(group, "warped")
    images = SampledImages(fixed)
    for i in positions:
        u = np.asarray(u_arr[i], dtype=np.float64)
        if not np.isfinite(u).all():
            continue  # a failed frame: nothing was registered
        before = None
        if plan is not None:
            from ..jobs import read_frame

            raw = read_frame(plan, source_t[i])
            before = np.asarray(plan.preprocess(raw), dtype=np.float64)
        after = None
        if warped is not None:
            after = squeeze_to(warped[int(i)], fixed.ndim).astype(np.float64)
            after = after if np.isfinite(after).any() else None
        if after is None and before is not None:
            after = np.asarray(warp(before, u, nodes), dtype=np.float64)
        images.add(i, before, after)
    return images
