"""``GET /api/v1/jobs/<id>/report``: the quality report the finished job stored with its results.

The report is computed once, when the job finishes (:mod:`blockreg.orchestrate.finish`), never on
a request: this view only reads it from the job's store.  JSON by default; ``?format=html`` (or a
request that prefers ``text/html``, as a browser's does) gets the self-contained HTML page.
"""
from __future__ import annotations

import datetime as _dt

from flask import Blueprint, Response, jsonify, request

from blockreg.orchestrate.finish import REPORT_ERROR_ATTR, REPORT_GRACE_S
from blockreg.states import FINISHED_JOB_STATES, JobState

from . import schemas
from .api import ApiError, _get_job
from .browse import guard_like_api

bp = Blueprint("report", __name__, url_prefix="/api/v1")
bp.before_request(guard_like_api)


def _wants_html() -> bool:
    fmt = request.args.get("format")
    if fmt is not None:
        if fmt not in ("json", "html"):
            raise ApiError(400, "format must be json or html",
                           [{"field": "format", "problem": f"{fmt!r} is not json or html"}])
        return fmt == "html"
    accept = request.accept_mimetypes  # a browser prefers text/html; */* gets JSON
    return accept["text/html"] > accept["application/json"]


def _failure(path) -> str | None:
    from blockreg.store import open_store

    return open_store(path).attrs.get(REPORT_ERROR_ATTR)


def _since(when) -> float:
    if when is None:
        return 0.0
    return (_dt.datetime.now(_dt.timezone.utc) - when).total_seconds()


@bp.get("/jobs/<int:job_id>/report")
def get_report(job_id: int):
    from blockreg.qc import load_report, load_report_html

    html = _wants_html()
    job = _get_job(job_id)
    if job.state not in FINISHED_JOB_STATES:
        raise ApiError(409, f"job {job_id} is {job.state}: its report is computed when it finishes")
    missing = f"job {job_id} has no quality report"
    try:
        content = load_report_html(job.output_path) if html else load_report(job.output_path)
        failure = None if content is not None else _failure(job.output_path)
    except (ValueError, OSError):  # the store is gone, unreadable, or no results store any more
        raise ApiError(404, f"{missing}: its results store {job.output_path} cannot be read") \
            from None
    if content is None:
        if job.state == JobState.CANCELLED.value:
            raise ApiError(404, f"{missing}: it was cancelled")
        if failure is not None:
            raise ApiError(404, f"{missing}: computing it failed ({failure}); "
                                "`blockreg report STORE` retries")
        if _since(job.finished_at) < REPORT_GRACE_S:
            raise ApiError(409, f"the report of job {job_id} is being computed; ask again "
                                "in a few seconds")
        raise ApiError(404, f"{missing} (see the worker's log; `blockreg report STORE` makes one)")
    if html:
        response = Response(content, mimetype="text/html")
        # the page is self-contained (inline style, data: pictures): nothing else may load or run,
        # so no string that reached it could act with the API's origin (its token, its routes)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox")
        return response
    return jsonify(schemas.body(schemas.QualityReport, job_id=job_id, report=content))
