"""The ``/api/v1`` blueprint: submit, list, inspect and cancel jobs.

Bad input never reaches a 500: malformed JSON is a 400, an invalid spec a 422 listing every
``{"field", "problem"}``, unknown ids a 404, and conflicts with a job's state a 409.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

from flask import Blueprint, current_app, g, jsonify, request, url_for
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from blockreg.db import ops, queries
from blockreg.db.models import FrameState, JobState
from blockreg.jobspec import SpecError, validate_spec

from .openapi import build_openapi

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_JOBS_PAGE = 500
MAX_FRAMES_PAGE = 5000


class ApiError(Exception):
    """An error response: ``status`` with ``message`` and per-field ``errors``."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def error_response(status: int, message: str, errors=None):
    response = jsonify({"message": message, "errors": list(errors or [])})
    response.status_code = status
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error_response(exc.status, exc.message, exc.errors)


def services():
    return current_app.extensions["blockreg"]


def db():
    """The request's database session (closed at the end of the request)."""
    if "db" not in g:
        g.db = services().sessions()
    return g.db


def close_db(_exc=None):
    session = g.pop("db", None)
    if session is not None:
        session.close()


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes; we always store UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat().replace("+00:00", "Z")


def _elapsed(job) -> float | None:
    if job.started_at is None:
        return None
    start = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=timezone.utc)
    end = job.finished_at or ops.utcnow()
    end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
    return round((end - start).total_seconds(), 3)


def job_dict(job, *, with_spec: bool = False) -> dict:
    out = {
        "id": job.id, "name": job.name, "state": job.state,
        "frames_total": job.frames_total, "frames_done": job.frames_done,
        "frames_failed": job.frames_failed, "output_path": job.output_path, "queue": job.queue,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "elapsed_s": _elapsed(job), "error": job.error,
    }
    if with_spec:
        out["spec"] = job.spec
    return out


def frame_dict(frame, scalars: dict) -> dict:
    return {
        "index": frame.index, "source_t": frame.source_t, "state": frame.state,
        "attempts": frame.attempts, "worker": frame.worker,
        "enqueued_at": _iso(frame.enqueued_at), "started_at": _iso(frame.started_at),
        "finished_at": _iso(frame.finished_at), "duration_s": frame.duration_s,
        "error": frame.error, "scalars": scalars,
    }


def _int_arg(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer",
                       [{"field": name, "problem": f"{raw!r} is not an integer"}]) from None
    if not minimum <= value <= maximum:
        raise ApiError(400, f"{name} out of range",
                       [{"field": name, "problem": f"must be between {minimum} and {maximum}"}])
    return value


def _state_arg(choices) -> str | None:
    state = request.args.get("state")
    if state is not None and state not in choices:
        raise ApiError(400, "unknown state",
                       [{"field": "state", "problem": f"must be one of {', '.join(choices)}"}])
    return state


# job ids are 32-bit INTEGER columns: a larger id in the URL cannot name a job, and handing it to
# the database overflows (OverflowError on SQLite, DataError on PostgreSQL)
MAX_JOB_ID = 2**31 - 1


def _get_job(job_id: int):
    if not 0 < job_id <= MAX_JOB_ID:
        raise ApiError(404, f"job {job_id} not found")
    job = queries.get_job(db(), job_id)
    if job is None:
        raise ApiError(404, f"job {job_id} not found")
    return job


@bp.get("/health")
def health():
    """Database and broker reachability (503 when either is down)."""
    database = True
    try:
        db().execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - health reports, it does not raise
        database = False
    broker = services().broker_reachable()
    body = {"status": "ok" if database and broker else "degraded", "database": database,
            "broker": broker, "version": current_app.config["VERSION"]}
    return jsonify(body), 200 if database and broker else 503


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_openapi())


def _output_path(spec) -> str:
    if spec.output.path is not None:
        return str(Path(spec.output.path).expanduser().resolve())
    data_dir = Path(current_app.config["DATA_DIR"]).expanduser().resolve()
    return str(data_dir / "results" / "job-{id}.zarr")


def _reserve(target: Path, *, unique: bool) -> Path:
    """Create the empty folder ``target`` (the atomic claim on an output path) and return it.

    With ``unique`` (the default ``job-<id>.zarr``), an existing path is not an error: job ids
    repeat (SQLite reuses the id of a rolled-back submit; a new database over a kept data
    folder starts again at 1), so the store goes to ``job-<id>-2.zarr``, ``-3``, ... instead.
    """
    candidates = [target]
    if unique:
        candidates += [target.with_name(f"{target.stem}-{n}{target.suffix}") for n in range(2, 1000)]
    for candidate in candidates:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if not candidate.exists():  # a broken symlink or a race with a deletion
                raise _unwritable(str(target), "a file or link is in the way") from None
    raise ApiError(409, f"output store {target} already exists",
                   [{"field": "output.path", "problem": "already exists"}])


def _unwritable(path: str, why: str) -> ApiError:
    return ApiError(422, "invalid job spec",
                    [{"field": "output.path", "problem": f"cannot create {path}: {why}"}])


@bp.post("/jobs")
def submit_job():
    """Validate, plan, create the output store and the job + frame rows; 201 with the id."""
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise ApiError(400, "request body must be a JSON job spec",
                       [{"field": "body", "problem": "malformed or missing JSON"}])
    try:
        spec = validate_spec(data, allowed_roots=current_app.config["ALLOWED_ROOTS"],
                             check_input=True, absolute_paths=True)
    except SpecError as exc:
        raise ApiError(422, "invalid job spec", exc.errors) from None
    from blockreg.jobs import FixedFrameError, plan_job
    from blockreg.store import create_store

    try:
        plan = plan_job(spec)
        fixed = plan.load_fixed()
        declarations = plan.declarations()
    except FixedFrameError as exc:
        problem = str(exc).removeprefix("fixed_index: ")
        raise ApiError(422, "invalid job spec",
                       [{"field": "fixed_index", "problem": problem}]) from None
    except (ValueError, OSError) as exc:
        # validation passed, so this is the input itself
        raise ApiError(422, "invalid job spec",
                       [{"field": "input.path", "problem": f"cannot be planned: {exc}"}]) from None

    created: list[Path] = []  # what this request made, deepest last: removed if it fails

    def make_store(job_id: int, path: str) -> str:
        target = Path(path)
        try:
            missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
            target.parent.mkdir(parents=True, exist_ok=True)
            created.extend(reversed(missing))
            target = _reserve(target, unique=spec.output.path is None)
        except OSError as exc:
            raise _unwritable(path, exc.strerror or str(exc)) from None
        path = str(target)
        created.append(target)
        # create_store refuses an existing path, so it builds a sibling that replaces the
        # (empty) reservation in one rename
        staging = target.with_name(f".{target.name}.creating")
        created.append(staging)
        if staging.is_dir():  # left by a coordinator that died here; the reservation is ours now
            shutil.rmtree(staging)
        attrs = dict(plan.store_attrs(), job_id=job_id)
        try:
            create_store(staging, len(plan.frames), declarations, attrs=attrs, fixed=fixed)
            staging.replace(target)
        except (OSError, ValueError) as exc:
            raise _unwritable(path, getattr(exc, "strerror", None) or str(exc)) from None
        return path

    try:
        job_id = ops.create_job(db(), spec=spec.to_json(), frames=plan.frames,
                                output_path=_output_path(spec), name=spec.name,
                                queue=current_app.config["QUEUE"], before_commit=make_store)
    except BaseException:
        for path in reversed(created):  # nothing is kept for a rejected job
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
        raise
    services().wake_dispatcher()
    job = queries.get_job(db(), job_id)
    response = jsonify({"id": job_id, "state": job.state, "output_path": job.output_path})
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_job", job_id=job_id)
    return response


@bp.get("/jobs")
def list_jobs():
    offset = _int_arg("offset", 0, 0, 10**12)
    limit = _int_arg("limit", 50, 1, MAX_JOBS_PAGE)
    state = _state_arg([s.value for s in JobState])
    jobs, total = queries.list_jobs(db(), offset=offset, limit=limit, state=state)
    return jsonify({"jobs": [job_dict(j) for j in jobs], "total": total, "offset": offset,
                    "limit": limit})


@bp.get("/jobs/<int:job_id>")
def get_job(job_id: int):
    return jsonify(job_dict(_get_job(job_id), with_spec=True))


@bp.get("/jobs/<int:job_id>/frames")
def list_frames(job_id: int):
    _get_job(job_id)
    offset = _int_arg("offset", 0, 0, 10**12)
    limit = _int_arg("limit", 100, 1, MAX_FRAMES_PAGE)
    state = _state_arg([s.value for s in FrameState])
    frames, total = queries.list_frames(db(), job_id, state=state, offset=offset, limit=limit)
    return jsonify({"frames": [frame_dict(f, s) for f, s in frames], "total": total,
                    "offset": offset, "limit": limit})


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int):
    job = _get_job(job_id)
    if not ops.cancel_job(db(), job_id):
        job = queries.get_job(db(), job_id)
        raise ApiError(409, f"job {job_id} already {job.state}; it cannot be cancelled")
    return jsonify(job_dict(queries.get_job(db(), job.id))), 202


def json_http_errors(exc: HTTPException):
    """Unknown URLs, wrong methods and other HTTP errors under /api as JSON, not HTML."""
    if not request.path.startswith("/api/"):
        return exc
    return error_response(exc.code or 500, exc.description or exc.name)


def json_internal_error(exc: Exception):
    if isinstance(exc, HTTPException):
        return json_http_errors(exc)
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal server error (see the coordinator's log)")
