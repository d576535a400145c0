"""The quality report of a finished results store.

:func:`analyse` reads a store and computes every number of the report (JSON-able) plus the few
images its figures show; :func:`compute_report` returns only the numbers and :func:`write_report`
does the whole job: compute, draw, render the HTML page and save both into the store.

What is read, and why:

- ``u`` (every frame, in batches): displacement time courses, folds, frames and nodes at the
  ``maxshift`` bound, largest displacements.  These cover every frame: they are cheap.
- ``mismatch`` when monitored: the optimiser's penalty per frame.
- Raw frames, through the job spec stored in the store (:func:`blockreg.jobs.plan_job`), for at
  most ``max_frames`` frames spread evenly over the movie: preprocessed as the job did, compared
  with the stored (preprocessed) ``fixed`` image before and after registration.  "After" is the
  stored ``warped`` frame, or the frame warped here by its ``u`` when ``warped`` was not stored.

When the input cannot be opened any more (moved, deleted) the report still has everything that
comes from the store, and says so in its warnings.
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field

import numpy as np

from . import metrics
from .collect import (SampledImages, displacement_metrics, image_metrics, sample_positions,
                      squeeze_to)
from .storage import plain_json, save_report, store_member

__all__ = ["Analysis", "NoReport", "analyse", "compute_report", "write_report", "REPORT_VERSION",
           "DEFAULT_MAX_FRAMES"]

REPORT_VERSION = 1
DEFAULT_MAX_FRAMES = 100


class NoReport(ValueError):
    """The store has nothing a quality report could judge (no ``u``, or no frame registered).

    Not a failure of the report: a two-stage job before its series phase, a mismatch-only store
    or a job whose every frame failed simply has no deformation to judge.
    """


def _any_registered(u_arr, chunk_frames: int = 256) -> bool:
    # stops at the first chunk holding a finite displacement: normally the very first one
    for start in range(0, int(u_arr.shape[0]), chunk_frames):
        if np.isfinite(np.asarray(u_arr[start:start + chunk_frames])).any():
            return True
    return False


@dataclass
class Analysis:
    """A computed report and the images its figures need.

    Attributes
    ----------
    report : dict
        JSON-able numbers (docs/report.md).
    images : dict of str -> ndarray
        ``fixed``, ``mean_before``, ``mean_after``, ``worst_before``, ``worst_after`` (each
        missing when it could not be computed) and ``grid_u`` (the ``u`` of the frame drawn on
        the deformation grid); ``nodes`` (tuple of 1-D arrays) is kept here too.
    """

    report: dict
    images: dict = field(default_factory=dict)


def _open_plan(spec):
    """The job's plan (input opened lazily) or a reason why the input cannot be read."""
    if not isinstance(spec, dict) or "input" not in spec:
        return None, "the store has no job spec with an input (registered from the library?)"
    try:
        from ..jobs import plan_job

        return plan_job(spec), None
    except Exception as exc:  # noqa: BLE001 - the store's own metrics must not depend on the input
        return None, f"{type(exc).__name__}: {exc}"


def _maxshift(plan, spec, ndim):
    """The job's search limit per axis in pixels, or None when the store does not say."""
    candidates = []
    if plan is not None:
        candidates += [getattr(plan, "maxshift", None), getattr(plan.spec.params, "maxshift", None)]
    if isinstance(spec, dict):
        candidates += [(spec.get("params") or {}).get("maxshift"), spec.get("maxshift")]
    for value in candidates:
        if value is not None and len(value) == ndim:
            return [float(v) for v in value]
    return None


def _warnings(report, input_problem):
    s = report["summary"]
    out = []
    if input_problem:
        out.append(f"The raw input could not be read ({input_problem}); correlations before "
                   "registration and the 'before' images are missing.")
    missing = s["frames"] - s["frames_with_results"]
    if missing:
        out.append(f"{missing} of {s['frames']} frames have no displacement (failed or never "
                   "written); they are left out of every number.")
    if s.get("frames_at_bound"):
        b = report["bound"]
        out.append(f"{s['frames_at_bound']} of {s['frames']} frames have node displacements at the "
                   f"maxshift bound {b['maxshift']} px ({s['node_frames_at_bound_fraction']:.1%} of "
                   "all node displacements): the motion may be larger than the searched range; "
                   "raise params.maxshift or check those frames.")
    if s.get("frames_with_folds"):
        out.append(f"{s['frames_with_folds']} frames fold (det(I + grad u) <= 0) over up to "
                   f"{s['fold_fraction_max']:.1%} of the grid: the deformation is not invertible "
                   "there; a larger lambda makes it smoother.")
    before, after = s.get("correlation_before_median"), s.get("correlation_after_median")
    if before is not None and after is not None and np.isfinite(before) and np.isfinite(after) \
            and after < before:
        out.append(f"The median correlation with the fixed image fell from {before:.3f} to "
                   f"{after:.3f}: registration made the frames less similar to the fixed image.")
    return out


def analyse(store_path, *, max_frames: int = DEFAULT_MAX_FRAMES, top_k: int = 5,
            bound_tolerance: float = 0.6) -> Analysis:
    """Compute the quality report of a finished results store.

    Parameters
    ----------
    store_path : path-like
        The job's results store.
    max_frames : int
        At most this many frames (evenly spread) are read from the input for the image metrics
        (correlation, mismatch, mean images).  Metrics from ``u`` cover every frame.
    top_k : int
        Number of frames listed under ``largest_displacements``.
    bound_tolerance : float
        A component with ``|u_a| >= maxshift_a - bound_tolerance`` is at the bound
        (:func:`blockreg.qc.metrics.at_bound`).

    Returns
    -------
    Analysis
    """
    from .. import __version__
    from ..store import open_results

    group = open_results(os.fspath(store_path))
    attrs = dict(group.attrs["blockreg"])
    u_arr = store_member(group, "u")
    if u_arr is None:
        raise NoReport(f"store_path: {store_path} has no 'u' array (monitor 'u' to get a report)")
    if not _any_registered(u_arr):
        raise NoReport(f"store_path: no frame of {store_path} was registered (every u is NaN)")
    nodes = tuple(np.asarray(n, dtype=np.float64) for n in attrs["nodes"])
    N = len(nodes)
    T = int(u_arr.shape[0])
    source_t = list(attrs.get("frames") or range(T))
    spec = attrs.get("spec")
    plan, input_problem = _open_plan(spec)
    maxshift = _maxshift(plan, spec, N)

    fixed_arr = store_member(group, "fixed")
    if fixed_arr is not None:
        fixed = squeeze_to(fixed_arr[...], N).astype(np.float64)
    elif plan is not None:
        fixed = plan.load_fixed().astype(np.float64)
    else:
        fixed = None

    disp = displacement_metrics(u_arr, nodes, maxshift, bound_tolerance, top_k)
    mismatch_arr = store_member(group, "mismatch")
    mismatch = None if mismatch_arr is None else np.asarray(mismatch_arr[...], dtype=np.float64)

    positions = sample_positions(T, max_frames)
    imgs = SampledImages(np.zeros((2,) * N)) if fixed is None else \
        image_metrics(group, plan, fixed, nodes, u_arr, positions, source_t)
    mean_before, mean_after = imgs.mean("before"), imgs.mean("after")
    crisp = {"before": float("nan"), "after": float("nan")}
    if mean_before is not None and mean_after is not None:
        mask = metrics.common_mask(mean_before, mean_after)
        crisp = {k: metrics.crispness(m, mask) for k, m in (("before", mean_before),
                                                            ("after", mean_after))}
    elif mean_after is not None:
        crisp["after"] = metrics.crispness(mean_after)
    corr = metrics.summarize_pairs(imgs.column("correlation_before"),
                                   imgs.column("correlation_after"))
    mism = metrics.summarize_pairs(imgs.column("mismatch_before"), imgs.column("mismatch_after"))

    have = np.isfinite(disp["max_abs_u"])
    at_bound = np.flatnonzero(disp["nodes_at_bound"] > 0)
    n_nodes = int(np.prod(disp["node_hits"].shape))
    folded = np.flatnonzero(disp["fold_fraction"] > 0)
    hits = disp["node_hits"]
    bound_nodes = [{"node": [int(i) for i in idx], "frames": int(hits[idx])}
                   for idx in zip(*np.nonzero(hits))]
    bound_nodes.sort(key=lambda d: -d["frames"])
    for item in disp["largest"]:
        item["source_t"] = int(source_t[item["position"]])

    def stat(fn, x):
        x = np.asarray(x, dtype=np.float64)
        x = x[np.isfinite(x)]
        return float(fn(x)) if x.size else float("nan")

    report = {
        "report_version": REPORT_VERSION,
        "blockreg_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "store": os.fspath(store_path),
        "job": {
            "name": spec.get("name") if isinstance(spec, dict) else None,
            "input": (spec.get("input") or {}).get("path") if isinstance(spec, dict) else None,
            "frames": T, "image_shape": None if fixed is None else list(fixed.shape),
            "axes": attrs.get("axes"), "spacing": attrs.get("spacing"),
            "gridsize": [len(n) for n in nodes], "maxshift": maxshift,
            "fixed_index": attrs.get("fixed_index"),
            "monitored": sorted(name for name in ("u", "mismatch", "warped", "warped0")
                                if store_member(group, name) is not None),
        },
        "summary": {
            "frames": T, "frames_with_results": int(have.sum()), "frames_sampled": len(imgs.rows),
            "correlation_before_median": corr["median_before"],
            "correlation_after_median": corr["median_after"],
            "correlation_change_median": corr["median_change"],
            "frames_improved_fraction": corr["improved_fraction"],
            "mismatch_before_median": mism["median_before"],
            "mismatch_after_median": mism["median_after"],
            "crispness_before": crisp["before"], "crispness_after": crisp["after"],
            "crispness_ratio": crisp["after"] / crisp["before"] if crisp["before"] > 0 else None,
            "max_displacement": stat(np.max, disp["max_abs_u"]),
            "median_max_displacement": stat(np.median, disp["max_abs_u"]),
            "frames_at_bound": None if maxshift is None else int(at_bound.size),
            "node_frames_at_bound_fraction": None if maxshift is None else
                float(hits.sum() / max(1, int(have.sum()) * n_nodes)),
            "frames_with_folds": int(folded.size),
            "fold_fraction_mean": stat(np.mean, disp["fold_fraction"]),
            "fold_fraction_max": stat(np.max, disp["fold_fraction"]),
            "min_jacobian_det": stat(np.min, disp["min_det"]),
            "mismatch_median": None if mismatch is None else stat(np.median, mismatch),
        },
        "frames": {
            "source_t": [int(t) for t in source_t],
            "mean_u": np.round(disp["mean_u"], 4).tolist(),
            "max_abs_u": np.round(disp["max_abs_u"], 4).tolist(),
            "max_abs_u_axis": np.round(disp["max_abs_u_axis"], 4).tolist(),
            "fold_fraction": np.round(disp["fold_fraction"], 5).tolist(),
            "nodes_at_bound": disp["nodes_at_bound"].tolist(),
            "mismatch": None if mismatch is None else mismatch.tolist(),
        },
        "sampled": {key: imgs.column(key) for key in
                    ("position", "correlation_before", "correlation_after",
                     "mismatch_before", "mismatch_after")},
        "bound": {"maxshift": maxshift, "tolerance": float(bound_tolerance),
                  "frames": at_bound.tolist(), "nodes": bound_nodes},
        "largest_displacements": disp["largest"],
        "worst_frame": None if imgs.worst is None else imgs.worst[1],
    }
    report["warnings"] = _warnings(report, input_problem)

    images = {"nodes": nodes}
    if fixed is not None:
        images["fixed"] = fixed
    for name, img in (("mean_before", mean_before), ("mean_after", mean_after)):
        if img is not None:
            images[name] = img
    if imgs.worst is not None:
        for name, img in (("worst_before", imgs.worst[2]), ("worst_after", imgs.worst[3])):
            if img is not None:
                images[name] = img
    grid_frame = disp["largest"][0]["position"] if disp["largest"] else None
    report["grid_frame"] = grid_frame
    if grid_frame is not None:
        images["grid_u"] = np.asarray(u_arr[grid_frame], dtype=np.float64)
        if plan is not None:  # the grid is drawn over the frame it deforms
            from ..jobs import read_frame

            raw = read_frame(plan, source_t[grid_frame])
            images["grid_frame"] = np.asarray(plan.preprocess(raw), dtype=np.float64)
    return Analysis(report=plain_json(report), images=images)


def compute_report(store_path, *, max_frames: int = DEFAULT_MAX_FRAMES, **kwargs) -> dict:
    """The JSON-able quality report of a finished results store (see :func:`analyse`)."""
    return analyse(store_path, max_frames=max_frames, **kwargs).report


def write_report(store_path, *, max_frames: int = DEFAULT_MAX_FRAMES, **kwargs) -> tuple[dict, str]:
    """Compute the report, draw its figures, render the page and save both into the store.

    This is what job finalisation calls.  Returns ``(report, html)``.
    """
    from .figures import make_figures
    from .html import render_html

    analysis = analyse(store_path, max_frames=max_frames, **kwargs)
    html = render_html(analysis.report, make_figures(analysis.report, analysis.images))
    save_report(store_path, analysis.report, html)
    return analysis.report, html
