"""The whole-series solve of a two-stage job, shared by the in-process runner and the service.

A job of the ``"apertures_mismatch"`` algorithm with ``params.lambda`` set registers in two
stages: frame tasks store ``cs``, ``Qs`` and ``mmis``; then all deformations are found at once
(:mod:`blockreg.reg.series`) in overlapping time windows, stitched into ``u``.  This module turns
a job spec into those steps (the settings, the lambda, the windows) so that ``run_inprocess`` and
the service's optimisation phase (:mod:`blockreg.orchestrate.phases`, one task per window) compute
the same ``u``.  No database, no Celery: arrays in, arrays out, and the store's arrays read by
slices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SeriesSettings", "series_settings", "check_series", "plan_series_windows",
           "choose_lambda", "solve_series", "run_two_stage", "write_series_u", "SERIES_ATTR",
           "WINDOWS_ARRAY"]

#: Store attribute (under ``"blockreg"``) with the settings the phase used: lambda, windows.
SERIES_ATTR = "series"
#: Scratch array of the window results in the job's store: one chunk (writer) per window.
WINDOWS_ARRAY = "series_windows"
#: Frames auto-lambda runs on when the spec names none.
DEFAULT_LAMBDA_FRAMES = 5


@dataclass(frozen=True)
class SeriesSettings:
    """What the series solve needs from a spec: weights and windows."""

    lam: float | tuple[float, float]  # a fixed weight or an auto-lambda range
    lam_t: float
    window: int
    overlap: int | None
    lambda_frames: tuple[int, ...] | None

    def overlap_for(self) -> int:
        return max(4, self.window // 3) if self.overlap is None else self.overlap


def series_settings(spec) -> SeriesSettings | None:
    """The series settings of a register spec, or None when it asks for no series solve."""
    params = getattr(spec, "params", None)
    if getattr(spec, "algorithm", None) != "apertures_mismatch" or params.lam is None:
        return None
    lam = tuple(float(v) for v in params.lam) if isinstance(params.lam, list) else float(params.lam)
    return SeriesSettings(lam=lam, lam_t=float(params.lam_t), window=int(params.window),
                          overlap=params.window_overlap,
                          lambda_frames=None if params.lambda_frames is None
                          else tuple(params.lambda_frames))


def check_series(spec, nframes: int, errors: list[dict]) -> None:
    """The spec checks of a series solve (``monitor`` holds ``mmis``, windows and lambda frames
    fit the ``nframes`` selected frames); appends ``{"field", "problem"}`` entries."""
    from .errors import ParameterError
    from .reg.windows import plan_windows

    settings = series_settings(spec)
    if settings is None:
        return
    for name in ("cs", "Qs", "mmis"):
        if name not in spec.monitor:
            errors.append({"field": "monitor", "problem": f"must include {name!r}: the series "
                                                          "solve (params.lambda) reads it"})
    try:
        plan_windows(nframes, settings.window, settings.overlap_for())
    except ParameterError as exc:
        field = "params.window_overlap" if exc.field == "overlap" else f"params.{exc.field}"
        errors.append({"field": field, "problem": exc.problem})
    for i, t in enumerate(settings.lambda_frames or ()):
        if t >= nframes:
            errors.append({"field": f"params.lambda_frames.{i}",
                           "problem": f"{t} is beyond the {nframes} registered frames"})


def plan_series_windows(nframes: int, settings: SeriesSettings):
    """The windows of the solve (:func:`blockreg.reg.windows.plan_windows`)."""
    from .reg.windows import plan_windows

    return plan_windows(int(nframes), settings.window, settings.overlap_for())


def choose_lambda(settings: SeriesSettings, cs, Qs, mmis, nodes) -> float:
    """The affine weight: the fixed one, or the consensus of auto-lambda on the chosen frames.

    Frames without data (NaN fits: failed frames) are left out of the consensus.
    """
    from .reg.series import consensus_lambda

    if not isinstance(settings.lam, tuple):
        return float(settings.lam)
    nframes = int(cs.shape[0])
    frames = settings.lambda_frames
    if frames is None:
        count = min(DEFAULT_LAMBDA_FRAMES, nframes)
        frames = tuple(int(t) for t in np.unique(np.linspace(0, nframes - 1, count).round()))
    usable = [t for t in frames if np.isfinite(np.asarray(cs[t])).all()]
    if not usable:
        raise ValueError("lambda_frames: none of the chosen frames has fits (all failed)")
    return consensus_lambda(cs, Qs, mmis, nodes, settings.lam, usable)[0]


def solve_series(cs, Qs, mmis, nodes, settings: SeriesSettings, *, map=map):
    """In-process solve: lambda, then the windowed solve, stitched.

    Returns
    -------
    us : ndarray ``(T, *gridsize, N)``
    lam : float
        The affine weight used.
    """
    from .reg.series import optimize_series_windowed

    lam = choose_lambda(settings, cs, Qs, mmis, nodes)
    us = optimize_series_windowed(cs, Qs, mmis, nodes, lam, settings.lam_t,
                                  window=settings.window, overlap=settings.overlap_for(), map=map)
    return us, lam


def run_two_stage(plan, series, *, out=None, workers=1) -> dict:
    """``run_inprocess`` of a two-stage spec: register the frames, then solve the series.

    Returns the monitored variables plus ``u`` (``(T, *gridsize, N)``); with ``out``, ``u`` is
    written to the store too, as the service's phase writes it.
    """
    from .runner import register
    from .store import open_store

    results = register(series, plan.make_algorithm(), monitor=tuple(plan.spec.monitor), out=out,
                       workers=workers, frames=list(plan.frames), attrs=plan.store_attrs())
    settings = series_settings(plan.spec)
    us, lam = solve_series(results["cs"], results["Qs"], results["mmis"], plan.nodes, settings)
    results["u"] = us
    if out is not None:
        group = open_store(out, "r+")
        write_series_u(group, us, lam, settings)
    return results


def write_series_u(group, us, lam, settings, windows=None) -> None:
    """Write the stitched ``u`` (one chunk per frame) and the settings used to a job's store."""
    us = np.asarray(us, dtype=np.float64)
    if "u" not in group:
        group.create_array("u", shape=us.shape, chunks=(1,) + us.shape[1:], dtype=np.float64,
                           fill_value=np.nan)
    group["u"][...] = us
    meta = dict(group.attrs["blockreg"])
    meta[SERIES_ATTR] = series_attrs(lam, settings, windows if windows is not None
                                     else plan_series_windows(us.shape[0], settings))
    group.attrs["blockreg"] = meta


def series_attrs(lam, settings, windows) -> dict:
    return {"lambda": float(lam), "lambda_t": settings.lam_t,
            "windows": [[w.start, w.stop] for w in windows]}
