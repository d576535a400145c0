"""The ``/api/v1`` blueprint: submit, list, inspect and cancel jobs.

Bad input never reaches a 500: malformed JSON is a 400, an invalid spec a 422 listing every
``{"field", "problem"}``, unknown ids a 404, and conflicts with a job's state a 409.
"""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app, g, jsonify, request, url_for
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from blockreg import settings
from blockreg.db import ops, queries
from blockreg.jobspec import SpecError, validate_spec
from blockreg.orchestrate import submit
from blockreg.orchestrate.dispatch import choose_queue
from blockreg.orchestrate.sources import resolve_source
from blockreg.states import FrameState, JobState

from . import schemas
from . import auth
from .openapi import build_openapi
from .waiting import Waiting

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.before_request(auth.authenticate_request)  # Bearer token -> g.user, or 401 (AUTH on)

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
    response = jsonify(schemas.body(schemas.Error, message=message, errors=list(errors or [])))
    response.status_code = status
    return response


# app-wide: the other /api/v1 blueprints (browse, tune) raise ApiError through _get_job too
@bp.app_errorhandler(ApiError)
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
    if job is None or not auth.can_see(job):  # another user's job reads as a missing one
        raise ApiError(404, f"job {job_id} not found")
    return job


def data_roots():
    """The data roots inputs and outputs must resolve inside (None: any path, single-user)."""
    roots = current_app.config.get("DATA_ROOTS")
    return roots if roots is not None else current_app.config.get("ALLOWED_ROOTS")


@bp.get("/health")
def health():
    """Database and broker reachability (503 when either is down)."""
    database = True
    workers = []
    try:
        db().execute(text("SELECT 1"))
        since = ops.utcnow() - timedelta(seconds=settings.get("worker_lost_s"))
        workers = [dict(name=name, queues=queues, device=device, last_seen=seen)
                   for name, queues, device, seen in queries.live_worker_rows(db(), since)]
    except Exception:  # noqa: BLE001 - health reports, it does not raise
        database = False
    broker = services().broker_reachable()
    body = schemas.body(schemas.Health, status="ok" if database and broker else "degraded",
                        database=database, broker=broker, version=current_app.config["VERSION"],
                        workers=workers)
    return jsonify(body), 200 if database and broker else 503


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_openapi())


@bp.post("/jobs")
def submit_job():
    """Validate the spec, create the output store and the job + frame rows; 201 with the id."""
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise ApiError(400, "request body must be a JSON job spec",
                       [{"field": "body", "problem": "malformed or missing JSON"}])
    try:
        data = resolve_source(db(), data, auth.can_see)  # a warp's source.job -> its store
        spec = validate_spec(data, allowed_roots=data_roots(), check_input=True,
                             absolute_paths=True)
        device = getattr(getattr(spec, "resources", None), "device", "cpu")
        queue = choose_queue(db(), device, cpu_queue=current_app.config["QUEUE"])
        job_id = submit.submit_job(db(), spec, data_dir=current_app.config["DATA_DIR"],
                                   queue=queue, owner_id=auth.owner_id())
    except SpecError as exc:
        raise ApiError(422, "invalid job spec", exc.errors) from None
    except submit.OutputConflict as exc:
        raise ApiError(409, str(exc), exc.errors) from None
    response = jsonify(schemas.body(schemas.Created, queries.get_job(db(), job_id)))
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_job", job_id=job_id)
    return response


@bp.get("/jobs")
def list_jobs():
    offset = _int_arg("offset", 0, 0, 10**12)
    limit = _int_arg("limit", 50, 1, MAX_JOBS_PAGE)
    state = _state_arg([s.value for s in JobState])
    jobs, total = queries.list_jobs(db(), offset=offset, limit=limit, state=state,
                                    owner_id=auth.owner_filter())
    body = schemas.body(schemas.JobList, jobs=jobs, total=total, offset=offset, limit=limit)
    waiting = Waiting(services(), db())
    owners = queries.owner_names(db(), jobs)
    for item, job in zip(body["jobs"], jobs):
        item.update(waiting.fields(job), owner=owners.get(job.owner_id))
    return jsonify(body)


@bp.get("/jobs/<int:job_id>")
def get_job(job_id: int):
    job = _get_job(job_id)
    return jsonify(dict(schemas.body(schemas.Job, job), **Waiting(services(), db()).fields(job),
                        owner=queries.owner_names(db(), [job]).get(job.owner_id)))


@bp.get("/jobs/<int:job_id>/frames")
def list_frames(job_id: int):
    _get_job(job_id)
    offset = _int_arg("offset", 0, 0, 10**12)
    limit = _int_arg("limit", 100, 1, MAX_FRAMES_PAGE)
    state = _state_arg([s.value for s in FrameState])
    frames, total = queries.list_frames(db(), job_id, state=state, offset=offset, limit=limit)
    return jsonify(schemas.body(schemas.FrameList, frames=frames, total=total, offset=offset,
                                limit=limit))


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int):
    job = _get_job(job_id)
    if not ops.cancel_job(db(), job_id):
        job = queries.get_job(db(), job_id)
        raise ApiError(409, f"job {job_id} already {job.state}; it cannot be cancelled")
    return jsonify(schemas.body(schemas.JobSummary, queries.get_job(db(), job.id))), 202


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
