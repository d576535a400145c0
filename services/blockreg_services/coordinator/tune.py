"""``/api/v1/tune``: try a grid of parameter values on a handful of frames before a long run.

``POST /api/v1/tune`` takes a base job spec, a short frame range and a grid of values (λ,
gridsize, maxshift, sigma_hp); every combination becomes one ordinary small job, so the
dispatcher and workers run them like any other. Every variant is validated before any is
submitted: one bad value queues nothing (422 naming the field). The batch itself (which job tried
which values) is a small JSON file under ``$BLOCKREG_DATA_DIR/tune/``; no table is needed, the jobs
are the truth.

``GET /api/v1/tune/<id>`` answers the batch with each run's state and, once a run has finished, its
mismatch before and after registration (zero-shift mismatch with the fixed image, mean over its
frames), the fraction of the deformation that folds, and, for an automatic λ, the data penalty
against λ with the fitted sigmoid (the original's auto-λ curve).
"""
from __future__ import annotations

import itertools
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from flask import Blueprint, current_app, jsonify, request, url_for
from pydantic import ValidationError

from blockreg.jobspec import SpecError, validate_spec
from blockreg.orchestrate import submit
from blockreg.orchestrate.dispatch import choose_queue
from blockreg.states import JobState

from . import auth, schemas
from .api import ApiError, _get_job, data_roots, db
from .browse import guard_like_api

bp = Blueprint("tune", __name__, url_prefix="/api/v1")
bp.before_request(guard_like_api)

MAX_FRAMES = 16
MAX_RUNS = 24
GRID_KEYS = ("lambda", "gridsize", "maxshift", "sigma_hp")


def tune_dir() -> Path:
    return Path(current_app.config["DATA_DIR"]) / "tune"


def _new_record_path() -> tuple[int, Path]:
    """The next free ``tune-<n>.json``, claimed atomically (O_EXCL) so two submits never share it."""
    folder = tune_dir()
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(p.stem.split("-")[1]) for p in folder.glob("tune-*.json")
             if p.stem.split("-")[1].isdigit()]
    n = max(taken, default=0) + 1
    while True:
        path = folder / f"tune-{n}.json"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return n, path
        except FileExistsError:
            n += 1


def _write(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def combinations(grid: dict) -> list[dict]:
    """Every combination of the grid's values, as ``{name: value}`` (names in GRID_KEYS order)."""
    keys = [k for k in GRID_KEYS if grid.get(k)]
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def variant(base: dict, frames: list[int], values: dict, label: str) -> dict:
    """The base spec on ``frames`` with ``values`` set (a new dict; the output goes to the default
    place so that variants never collide)."""
    spec = json.loads(json.dumps(base))
    spec.setdefault("input", {})["frames"] = list(frames)
    spec["output"] = {"path": None}
    spec["name"] = f"{label} " + " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
    params = spec.setdefault("params", {})
    for key, value in values.items():
        if key == "sigma_hp":
            spec.setdefault("preprocess", {})["sigma_hp"] = value
        else:
            params[key] = value
    if isinstance(params.get("lambda"), list):  # auto-λ: keep its sweep for the curve
        monitor = list(spec.get("monitor") or ["u", "mismatch"])
        spec["monitor"] = monitor + [m for m in ("lambda", "lambdas", "datapenalty")
                                     if m not in monitor]
    return spec


def _int_list_or_none(value):
    ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                         for v in value)
    return value if ok else None


def _frame_count(frames: list[int]) -> int:
    start, stop = frames[0], frames[1]
    step = frames[2] if len(frames) == 3 else 1
    return len(range(start, stop, step)) if step > 0 else 0


@bp.post("/tune")
def start_tune():
    """Validate every variant, then submit them all as one batch; 201 with the batch."""
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise ApiError(400, "request body must be JSON", [{"field": "body", "problem": "malformed"}])
    try:
        req = schemas.TuneRequest.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid tune request", [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in exc.errors()]) from None
    for part in ("input", "params", "preprocess"):  # the grid's values are set inside these
        if not isinstance(req.spec.get(part, {}), dict):
            raise ApiError(422, "invalid tune request", [{"field": f"spec.{part}",
                                                           "problem": "must be an object"}])
    if not 1 <= _frame_count(req.frames) <= MAX_FRAMES:
        raise ApiError(422, "too many frames", [{"field": "frames", "problem":
                       f"must select 1 to {MAX_FRAMES} frames"}])
    grid = req.grid.model_dump(by_alias=True, exclude_none=True)
    runs = combinations(grid) or [{}]
    if len(runs) > MAX_RUNS:
        raise ApiError(422, "grid too large", [{"field": "grid", "problem":
                       f"{len(runs)} combinations; at most {MAX_RUNS}"}])
    tune_id, path = _new_record_path()
    try:
        specs, errors = [], []
        for values in runs:
            spec = variant(req.spec, req.frames, values, f"tune-{tune_id}")
            try:
                specs.append(validate_spec(spec, allowed_roots=data_roots(), check_input=True,
                                           absolute_paths=True))
            except SpecError as exc:
                setting = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
                errors += [{"field": e["field"], "problem": f"{e['problem']} ({setting})"
                            if setting else e["problem"]} for e in exc.errors]
        if errors:
            raise ApiError(422, "invalid tune request", errors)
        record = {"id": tune_id, "created_at": datetime.now(timezone.utc).isoformat(),
                  "frames": req.frames, "grid": grid, "runs": [],
                  # what a promoted setting runs on: the base spec's own frames and name
                  "base_frames": _int_list_or_none((req.spec.get("input") or {}).get("frames")),
                  "base_name": req.spec.get("name") if isinstance(req.spec.get("name"), str)
                  else None}
        for values, spec in zip(runs, specs):
            # as POST /jobs submits: the device's queue, owned by this request's user
            device = getattr(getattr(spec, "resources", None), "device", "cpu")
            queue = choose_queue(db(), device, cpu_queue=current_app.config["QUEUE"])
            try:
                job_id = submit.submit_job(db(), spec, data_dir=current_app.config["DATA_DIR"],
                                           queue=queue, owner_id=auth.owner_id())
            except (SpecError, submit.OutputConflict) as exc:
                raise ApiError(422, "invalid tune request", exc.errors) from None
            record["runs"].append({"job_id": job_id, "values": values})
        _write(path, record)
    except BaseException:
        if path.stat().st_size == 0:
            path.unlink(missing_ok=True)
        raise
    response = jsonify(_answer(record, path))
    response.status_code = 201
    response.headers["Location"] = url_for("tune.get_tune", tune_id=tune_id)
    return response


@bp.get("/tune/<int:tune_id>")
def get_tune(tune_id: int):
    path = tune_dir() / f"tune-{tune_id}.json"
    missing = ApiError(404, f"tune batch {tune_id} not found")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        raise missing from None
    try:
        return jsonify(_answer(record, path))
    except ApiError as exc:  # a run this user may not see: another user's batch reads as missing
        raise (missing if exc.status == 404 else exc) from None


def _answer(record: dict, path: Path) -> dict:
    """The batch with each run's state and, once finished, its metrics (computed once, kept)."""
    changed = False
    runs = []
    curve = None
    for run in record["runs"]:
        job = _get_job(run["job_id"])
        if job.state == JobState.SUCCEEDED and "metrics" not in run:
            run["metrics"] = _metrics(job)
            changed = True
        metrics = run.get("metrics") or {}
        runs.append({"job_id": job.id, "values": run["values"], "state": job.state,
                     "frames_done": job.frames_done, "frames_total": job.frames_total,
                     "spec": job.spec, **{k: v for k, v in metrics.items() if k != "curve"}})
        if curve is None and metrics.get("curve"):
            curve = {"job_id": job.id, **metrics["curve"]}
    if changed:
        _write(path, record)
    return schemas.body(schemas.Tune, id=record["id"], created_at=record["created_at"],
                        frames=record["frames"], grid=record["grid"], runs=runs, lambda_curve=curve,
                        base_frames=record.get("base_frames"), base_name=record.get("base_name"))


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _metrics(job) -> dict:
    """Mismatch with the fixed image before and after, folds and the auto-λ curve of a run."""
    from blockreg.apply import warp_frame
    from blockreg.jobs import plan_job, read_frame
    from blockreg.qc.metrics import fold_fractions
    from blockreg.qc.storage import store_member
    from blockreg.reg.mismatch import mismatch_zeroshift
    from blockreg.store import open_results

    try:
        group = open_results(job.output_path)
        attrs = dict(group.attrs["blockreg"])
        plan = plan_job(job.spec)
        fixed = np.asarray(store_member(group, "fixed")[...], dtype=np.float32)
        nodes = tuple(np.asarray(n, dtype=float) for n in attrs["nodes"])
        us = np.asarray(store_member(group, "u")[...], dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - a run without readable results has no metrics
        current_app.logger.warning("tune metrics of job %s: %s", job.id, exc)
        return {}

    def ratio(moving):
        num, denom = (float(v) for v in mismatch_zeroshift(fixed, moving))
        return num / denom if denom > 0 else math.nan

    before, after = [], []
    for index, source_t in enumerate(attrs["frames"]):
        moving = np.asarray(plan.preprocess(read_frame(plan, source_t)), dtype=np.float32)
        before.append(ratio(moving))
        after.append(ratio(warp_frame(moving, us[index], nodes)))
    mb, ma = float(np.nanmean(before)), float(np.nanmean(after))
    metrics = {"mismatch_before": _finite(mb), "mismatch_after": _finite(ma),
               "reduction": _finite(1 - ma / mb) if mb > 0 else None,
               "folds": _finite(np.nanmax(fold_fractions(us, nodes)[0]))}
    if "lambdas" in group and "datapenalty" in group:
        metrics["curve"] = _lambda_curve(group)
    return metrics


def _lambda_curve(group) -> dict | None:
    from blockreg.qc.storage import store_member
    from blockreg.reg.autolambda import fit_sigmoid

    lambdas = np.nanmean(np.asarray(store_member(group, "lambdas")[...], dtype=float), axis=0)
    penalty = np.nanmean(np.asarray(store_member(group, "datapenalty")[...], dtype=float), axis=0)
    if not (np.isfinite(lambdas).all() and np.isfinite(penalty).all()):
        return None
    fitted, chosen = None, None
    try:
        bottom, top, center, width = fit_sigmoid(penalty)[:4]  # (a fit quality may follow)
        k = np.arange(1, penalty.size + 1)
        # fit_sigmoid's model: bottom + (top - bottom) / (1 + exp(-(k - center) / width))
        logistic = 0.5 * (1 + np.tanh(0.5 * (k - center) / width))
        fitted = [float(v) for v in bottom + (top - bottom) * logistic]
    except Exception:  # noqa: BLE001 - a sweep the sigmoid does not fit still has its points
        pass
    if store_member(group, "lambda") is not None:
        chosen = _finite(np.nanmedian(np.asarray(store_member(group, "lambda")[...], dtype=float)))
    return {"lambdas": lambdas.tolist(), "datapenalty": penalty.tolist(), "fitted": fitted,
            "chosen": chosen}
