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
           "choose_lambda", "choose_lambda_t", "choose_weights", "solve_series", "run_two_stage",
           "write_series_u", "SERIES_ATTR", "WINDOWS_ARRAY", "check_optimize", "plan_optimize",
           "run_optimize", "mismatch_store"]

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
    lam_t: float | tuple[float, float]  # a fixed weight or an auto-lambda_t range
    window: int
    overlap: int | None
    lambda_frames: tuple[int, ...] | None

    def overlap_for(self) -> int:
        return max(4, self.window // 3) if self.overlap is None else self.overlap


def series_settings(spec) -> SeriesSettings | None:
    """The series settings of a two-stage or optimize spec, or None when it asks for no solve."""
    params = getattr(spec, "params", None)
    if getattr(spec, "kind", None) != "optimize" and (
            getattr(spec, "algorithm", None) != "apertures_mismatch" or params.lam is None):
        return None
    lam = tuple(float(v) for v in params.lam) if isinstance(params.lam, list) else float(params.lam)
    lam_t = (tuple(float(v) for v in params.lam_t) if isinstance(params.lam_t, list)
             else float(params.lam_t))
    return SeriesSettings(lam=lam, lam_t=lam_t, window=int(params.window),
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
    needed = ("cs", "Qs", "mmis") + (("Es",) if isinstance(settings.lam_t, tuple) else ())
    for name in needed:
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


def choose_lambda_t(Es, cs, Qs, nodes, lam, lam_t_range) -> float:
    """The temporal weight chosen by ``auto_lambda_t`` on the whole series' quadratic fits.

    The sigmoid of the data penalty over the ladder of ``lam_t`` values is fitted and the weight
    picked as ``auto_lambda`` picks lambda (the last one before the penalty rises).  Reads
    ``Es``, ``cs``, ``Qs`` whole (``T * gridsize`` small numbers, never ``mmis``); frames
    without fits (failed) are left out.
    """
    from .reg.autolambda import auto_lambda_t, fit_sigmoid
    from .reg.penalty import AffinePenalty

    Es, cs, Qs = (np.asarray(a[...], dtype=np.float64) for a in (Es, cs, Qs))
    T = cs.shape[0]
    keep = (np.isfinite(Es.reshape(T, -1)).all(1) & np.isfinite(cs.reshape(T, -1)).all(1)
            & np.isfinite(Qs.reshape(T, -1)).all(1))
    lam_ts, penalty = auto_lambda_t(Es[keep], cs[keep], Qs[keep], AffinePenalty(nodes, lam),
                                    lam_t_range)
    _, _, center, width, _ = fit_sigmoid(penalty)
    return float(lam_ts[max(1, round(center - width)) - 1])


def choose_weights(settings: SeriesSettings, cs, Qs, mmis, nodes, Es=None) -> tuple[float, float]:
    """``(lambda, lambda_t)``: fixed ones, or chosen (auto-lambda first, then auto-lambda_t)."""
    lam = choose_lambda(settings, cs, Qs, mmis, nodes)
    if not isinstance(settings.lam_t, tuple):
        return lam, float(settings.lam_t)
    if Es is None:
        raise ValueError("Es: auto-lambda_t needs the fits' minima (monitor Es)")
    return lam, choose_lambda_t(Es, cs, Qs, nodes, lam, settings.lam_t)


def solve_series(cs, Qs, mmis, nodes, settings: SeriesSettings, *, Es=None, map=map):
    """In-process solve: the weights, then the windowed solve, stitched.

    Returns
    -------
    us : ndarray ``(T, *gridsize, N)``
    lam, lam_t : float
        The weights used.
    """
    from .reg.series import optimize_series_windowed

    lam, lam_t = choose_weights(settings, cs, Qs, mmis, nodes, Es)
    us = optimize_series_windowed(cs, Qs, mmis, nodes, lam, lam_t,
                                  window=settings.window, overlap=settings.overlap_for(), map=map)
    return us, lam, lam_t


def run_two_stage(plan, series, *, out=None, workers=1, progress=None) -> dict:
    """``run_inprocess`` of a two-stage spec: register the frames, then solve the series.

    Returns the monitored variables plus ``u`` (``(T, *gridsize, N)``); with ``out``, ``u`` is
    written to the store too, as the service's phase writes it.  ``progress(done, total)`` is
    called after each registered frame (:func:`blockreg.register`).
    """
    from .runner import register
    from .store import open_store

    results = register(series, plan.make_algorithm(), monitor=tuple(plan.spec.monitor), out=out,
                       workers=workers, frames=list(plan.frames), attrs=plan.store_attrs(),
                       image_dtype=plan.image_dtype, progress=progress)
    settings = series_settings(plan.spec)
    us, lam, lam_t = solve_series(results["cs"], results["Qs"], results["mmis"], plan.nodes,
                                  settings, Es=results.get("Es"))
    results["u"] = us
    if out is not None:
        group = open_store(out, "r+")
        write_series_u(group, us, lam, lam_t, plan_series_windows(us.shape[0], settings))
    return results


def write_series_u(group, us, lam, lam_t, windows) -> None:
    """Write the stitched ``u`` (one chunk per frame) and the settings used to a job's store."""
    us = np.asarray(us, dtype=np.float64)
    if "u" not in group:
        group.create_array("u", shape=us.shape, chunks=(1,) + us.shape[1:], dtype=np.float64,
                           fill_value=np.nan)
    group["u"][...] = us
    meta = dict(group.attrs["blockreg"])
    meta[SERIES_ATTR] = series_attrs(lam, lam_t, windows)
    group.attrs["blockreg"] = meta


def series_attrs(lam, lam_t, windows) -> dict:
    return {"lambda": float(lam), "lambda_t": float(lam_t),
            "windows": [[w.start, w.stop] for w in windows]}


# --- optimize jobs: the series solve of an existing two-stage store -------------------------------


def mismatch_store(spec, output_path) -> str:
    """Where a job's cs/Qs/mmis are: its own store, or an optimize job's source."""
    return spec.source.path if getattr(spec, "kind", None) == "optimize" else output_path


def _open_source(path):
    from .errors import ParameterError
    from .store import open_store

    try:
        group = open_store(path, "r")
    except (ParameterError, OSError, ValueError) as exc:
        raise ParameterError("source.path", getattr(exc, "problem", str(exc))) from None
    missing = [name for name in ("cs", "Qs", "mmis") if name not in group]
    if missing or group.attrs["blockreg"].get("nodes") is None:
        raise ParameterError("source.path", f"{path} is not a two-stage store (no "
                                            f"{', '.join(missing) or 'nodes'})")
    return group


def check_optimize(spec, errors, *, allowed_roots=None, check_input=True, absolute_paths=False):
    """The checks of an optimize spec against its source store; appends to ``errors``."""
    from pathlib import Path

    from .errors import ParameterError

    if spec.source.path is None:
        errors.append({"field": "source.job", "problem": "a job id is resolved by the service "
                                                        "(submit it there, or give source.path)"})
        return
    roots = None if allowed_roots is None else [Path(r).expanduser().resolve()
                                                for r in allowed_roots if str(r)]
    for name, value in (("source.path", spec.source.path), ("output.path", spec.output.path)):
        if value is None:
            continue
        p = Path(value).expanduser()
        if absolute_paths and not p.is_absolute():
            errors.append({"field": name, "problem": f"{value!r} must be an absolute path"})
        elif roots is not None and not any(p.resolve() == r or r in p.resolve().parents
                                           for r in roots):
            errors.append({"field": name, "problem": f"{value} is outside the allowed roots"})
    if errors or not check_input:
        return
    try:
        group = _open_source(spec.source.path)
    except ParameterError as exc:
        errors.append({"field": exc.field, "problem": exc.problem})
        return
    nframes = int(group["cs"].shape[0])
    if isinstance(spec.params.lam_t, list) and "Es" not in group:
        errors.append({"field": "params.lambda_t", "problem": "a range needs the source's Es "
                                                              "(auto-lambda_t)"})
    inner: list[dict] = []
    check_series(_AsMismatch(spec), nframes, inner)
    errors.extend(inner)
    if spec.output.path is not None and Path(spec.output.path).expanduser().exists():
        errors.append({"field": "output.path", "problem": f"{spec.output.path} already exists; "
                                                          "choose a new path"})


class _AsMismatch:
    """An optimize spec seen by :func:`check_series` (whose monitor always holds the fits)."""

    def __init__(self, spec):
        self.kind, self.params = "optimize", spec.params
        self.monitor = ["Es", "cs", "Qs", "mmis"]  # the store's fits; Es is checked apart


class ChooseLambda:
    """The one frame task of an optimize job: choose lambda (auto-lambda off the dispatcher)."""

    def __init__(self, source, settings, nodes):
        self.source, self.settings, self.nodes = str(source), settings, nodes

    def declare(self):
        from .algorithms.base import ArrayDecl

        return {"lambda": ArrayDecl((), "float64"), "lambda_t": ArrayDecl((), "float64")}

    def prepare(self):
        pass

    def close(self):
        pass

    def run_frame(self, frame, t, wanted):
        group = _open_source(self.source)
        lam, lam_t = choose_weights(self.settings, group["cs"], group["Qs"], group["mmis"],
                                    self.nodes, group["Es"] if "Es" in group else None)
        return {"lambda": lam, "lambda_t": lam_t}


class _NoFrames:
    """The "movie" of an optimize job: its one task reads the source store, not frames."""

    shape = (1,)
    dtype = np.dtype(np.float64)

    def __getitem__(self, index):
        return np.zeros(0)


@dataclass
class OptimizePlan:
    """An optimize job's plan, with the interface the frame machinery uses of a JobPlan."""

    spec: object
    source: object  # the open source group

    frames = [0]
    roi = ()
    fixed_index = None
    series = _NoFrames()
    spatial_axes = ""

    @property
    def nodes(self):
        nodes = self.source.attrs["blockreg"]["nodes"]
        return tuple(np.asarray(n, dtype=np.float64) for n in nodes)

    @property
    def image_dtype(self):
        return np.dtype(np.float32)

    def load_fixed(self):
        from .warpjob import _member

        fixed = _member(self.source, "fixed")
        return None if fixed is None else np.asarray(fixed[...])

    def make_algorithm(self, fixed=None):
        return ChooseLambda(self.spec.source.path, series_settings(self.spec), self.nodes)

    def declarations(self, algorithm=None):
        return (algorithm or self.make_algorithm()).declare()

    def store_attrs(self) -> dict:
        # the source's geometry (frames, nodes, roi, axes): a warp job reads this store's u alike
        meta = dict(self.source.attrs["blockreg"])
        meta.pop(SERIES_ATTR, None)  # (create_store sets this store's version and layout keys)
        # the registered movie, for a warp job that names none
        meta["input"] = (meta.get("spec") or {}).get("input") or meta.get("input")
        meta["spec"] = self.spec.to_json()
        meta["source_store"] = str(self.spec.source.path)
        return meta


def plan_optimize(spec) -> OptimizePlan:
    return OptimizePlan(spec=spec, source=_open_source(spec.source.path))


def run_optimize(plan: OptimizePlan, out=None) -> dict:
    """``run_inprocess`` of an optimize spec: ``{"u": ..., "lambda": ...}`` (and the store)."""
    from .store import create_store

    group = plan.source
    settings = series_settings(plan.spec)
    us, lam, lam_t = solve_series(group["cs"], group["Qs"], group["mmis"], plan.nodes, settings,
                                  Es=group["Es"] if "Es" in group else None)
    if out is not None:
        created = create_store(out, 1, plan.declarations(), attrs=plan.store_attrs(),
                               fixed=plan.load_fixed())
        created["lambda"][0], created["lambda_t"][0] = lam, lam_t
        write_series_u(created, us, lam, lam_t, plan_series_windows(us.shape[0], settings))
    return {"u": us, "lambda": np.asarray([lam]), "lambda_t": np.asarray([lam_t])}
