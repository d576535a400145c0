"""The OpenAPI 3.1 document of ``/api/v1``, built from the pydantic models.

The request body schema is :class:`blockreg.jobspec.JobSpec` itself, the responses are the models
of :mod:`.schemas` that the views build every body from, and the states are the enums of
:mod:`blockreg.states` (schemas ``JobState``, ``FrameState``): the document cannot drift from
the code.
"""
from __future__ import annotations

import math

from blockreg import __version__
from blockreg.jobkinds.other import OptimizeJob, WarpJob
from blockreg.jobspec import JobSpec

from .schemas import RESPONSE_MODELS

MODELS = (JobSpec, WarpJob, OptimizeJob, *RESPONSE_MODELS)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema_name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _errors(*codes: int) -> dict:
    text = {400: "Malformed request", 404: "Unknown job", 409: "Conflict with the job's state",
            413: "Request body larger than 1 MiB", 422: "Invalid job spec (one entry per field)"}
    return {str(c): _json("Error", text[c]) for c in codes}


def _int_query(name: str, description: str, minimum: int = 0, maximum: int | None = None) -> dict:
    schema = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


# the views' limits, stated where a client reads them (ids are 32-bit database integers)
MAX_OFFSET, MAX_JOBS_PAGE, MAX_FRAMES_PAGE, MAX_JOB_ID = 10**12, 500, 5000, 2**31 - 1
JOB_ID = {"name": "job_id", "in": "path", "required": True,
          "schema": {"type": "integer", "minimum": 1, "maximum": MAX_JOB_ID}}


def build_openapi() -> dict:
    """Return the OpenAPI 3.1 document (a JSON-able dict)."""
    schemas: dict = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                         by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    paths = {
        "/api/v1/health": {"get": {
            "summary": "Database and broker reachability", "operationId": "health",
            "responses": {"200": _json("Health", "Both reachable"),
                          "503": _json("Health", "Database or broker unreachable")}}},
        "/api/v1/jobs": {
            "post": {
                "summary": "Submit a job", "operationId": "submitJob",
                "requestBody": {"required": True, "description": (
                    "A job spec: at most 1 MiB of JSON nested at most 32 levels (else 413 or "
                    "400); input and output paths absolute, inside the server's data roots"),
                                "content": {
                    # a registration (kind "register", the default) or another kind of job
                    "application/json": {"schema": {"oneOf": [_ref("JobSpec"), _ref("WarpJob"),
                                                           _ref("OptimizeJob")]}}}},
                "responses": {"201": _json("Created", "Job created; frames will be enqueued"),
                              **_errors(400, 409, 413, 422)}},
            "get": {
                "summary": "List jobs, newest first", "operationId": "listJobs",
                "parameters": [
                    _int_query("offset", "Jobs to skip", 0, MAX_OFFSET),
                    _int_query("limit", "Page size (1 to 500, default 50)", 1, MAX_JOBS_PAGE),
                    {"name": "state", "in": "query", "required": False,
                     "schema": _ref("JobState")}],
                "responses": {"200": _json("JobList", "A page of jobs"), **_errors(400)}}},
        "/api/v1/jobs/{job_id}": {"get": {
            "summary": "Job state, progress, timings and error", "operationId": "getJob",
            "parameters": [JOB_ID],
            "responses": {"200": _json("Job", "The job"), **_errors(404)}}},
        "/api/v1/jobs/{job_id}/frames": {"get": {
            "summary": "Per-frame state, timings and monitored scalars", "operationId": "listFrames",
            "parameters": [
                JOB_ID, _int_query("offset", "Frames to skip", 0, MAX_OFFSET),
                _int_query("limit", "Page size (1 to 5000, default 100)", 1, MAX_FRAMES_PAGE),
                {"name": "state", "in": "query", "required": False,
                 "schema": _ref("FrameState")}],
            "responses": {"200": _json("FrameList", "A page of frames in output order"),
                          **_errors(400, 404)}}},
        "/api/v1/jobs/{job_id}/cancel": {"post": {
            "summary": "Cancel a queued or running job", "operationId": "cancelJob",
            "parameters": [JOB_ID],
            "responses": {"202": _json("JobSummary",
                                     "Cancelled; running frames finish, no new ones start"),
                          **_errors(404, 409)}}},
        "/api/v1/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1 document"}}}},
    }
    paths.update(_data_and_tune_paths())
    paths["/api/v1/jobs/{job_id}/report"] = {"get": {
        "summary": "The finished job's quality report: JSON, or one self-contained HTML page",
        "operationId": "getReport",
        "parameters": [JOB_ID, {"name": "format", "in": "query", "required": False,
                                "description": "json (default) or html; or send Accept: text/html",
                                "schema": {"enum": ["json", "html"]}}],
        "responses": {"200": {"description": "The report",
                              "content": {"application/json": {"schema": _ref("QualityReport")},
                                          "text/html": {"schema": {"type": "string"}}}},
                      "404": _json("Error", "Unknown job, or no report was computed for it"),
                      "409": _json("Error", "The job has not finished")}}}
    _declare_authentication(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "blockreg coordinator", "version": __version__,
                 "description": "Submit and follow deformable-registration jobs."},
        "paths": paths,
        "components": {"schemas": _finite(schemas), "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "An API token from `blockreg user add`. Required on every route "
                           "but health when the server runs with authentication (`blockreg up "
                           "--auth`, BLOCKREG_AUTH); a single-user server ignores it."}}},
        "security": [{"bearer": []}],
    }


def _declare_authentication(paths: dict) -> None:
    # Every operation but health answers 401 without a valid token when authentication is on;
    # health stays open so load balancers and `blockreg up` can probe it.
    unauthorized = _json("Error", "Missing or invalid token (servers with authentication)")
    for path, operations in paths.items():
        for operation in operations.values():
            if path == "/api/v1/health":
                operation["security"] = []
            else:
                operation["responses"].setdefault("401", unauthorized)


def _finite(value):
    """``value`` without defaults that hold an infinite float (sigma_hp's "no highpass"): a bare
    ``Infinity`` is not JSON (a browser's ``JSON.parse`` refuses the whole document), and the
    string a spec stores instead does not validate against the number's schema. The field stays
    optional; its description says what leaving it out means."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()
                if not (k == "default" and not _all_finite(v))}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _all_finite(value) -> bool:
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return not (isinstance(value, float) and not math.isfinite(value))


def _query(name: str, description: str, schema: dict | None = None, required=False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def _data_and_tune_paths() -> dict:
    """The routes of :mod:`.browse` (file picker, preview, frame pictures) and :mod:`.tune`."""
    index = {"name": "index", "in": "path", "required": True, "schema": {"type": "integer"},
             "description": "Position along the output's time axis"}
    errors = {400: "Malformed request", 403: "Path outside the data roots", 404: "Not found",
              409: "No readable output yet", 422: "Invalid request (one entry per field)"}

    def err(*codes):
        return {str(c): _json("Error", errors[c]) for c in codes}

    png = {"description": "PNG picture", "content": {"image/png": {}}}
    return {
        "/api/v1/files": {"get": {
            "summary": "Folders and series under the server's data roots (the file picker)",
            "operationId": "listFiles",
            "parameters": [_query("path", "Absolute folder path; omitted: the roots")],
            "responses": {"200": _json("FileListing", "The folder's entries"),
                          **err(400, 403, 404)}}},
        "/api/v1/preview": {"get": {
            "summary": "A would-be job's fixed frame with its aperture grid and maxshift",
            "operationId": "preview",
            "parameters": [
                _query("path", "Input series", required=True), _query("dataset", "Dataset"),
                _query("channel", "Channel", {"type": "integer"}),
                _query("fixed_index", "Fixed frame (default: the middle one)", {"type": "integer"}),
                _query("gridsize", "Apertures per axis, comma-separated"),
                _query("maxshift", "Largest shift per axis, comma-separated"),
                _query("overlap", "Aperture overlap", {"type": "integer"})],
            "responses": {"200": _json("Preview", "Picture and geometry"), **err(400, 403, 422)}}},
        "/api/v1/jobs/{job_id}/frames/{index}/image": {"get": {
            "summary": "PNG of a frame: raw input, registered, or the fixed frame",
            "operationId": "frameImage",
            "parameters": [JOB_ID, index, _query("which", "raw (default), registered or fixed",
                                                 {"enum": ["raw", "registered", "fixed"]})],
            "responses": {"200": png, **err(400, 404, 409)}}},
        "/api/v1/jobs/{job_id}/frames/{index}/deformation": {"get": {
            "summary": "A frame's node positions and displacements", "operationId": "frameDeformation",
            "parameters": [JOB_ID, index],
            "responses": {"200": _json("Deformation", "Nodes and u (null until computed)"),
                          **err(404, 409)}}},
        "/api/v1/tune": {"post": {
            "summary": "Run a grid of settings on a few frames as one batch of small jobs",
            "operationId": "startTune",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("TuneRequest")}}},
            "responses": {"201": _json("Tune", "Batch submitted"), **err(400, 422)}}},
        "/api/v1/tune/{tune_id}": {"get": {
            "summary": "A tune batch: each setting's state, mismatch reduction, folds, auto-λ curve",
            "operationId": "getTune",
            "parameters": [{"name": "tune_id", "in": "path", "required": True,
                            "schema": {"type": "integer"}}],
            "responses": {"200": _json("Tune", "The batch"), **err(404)}}},
    }
