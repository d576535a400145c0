"""The OpenAPI 3.1 document of ``/api/v1``, built from the pydantic models.

The request body schema is :class:`blockreg.jobspec.JobSpec` itself, the responses are the models
of :mod:`.schemas` that the views build every body from, and the states are the enums of
:mod:`blockreg.states` (schemas ``JobState``, ``FrameState``): the document cannot drift from
the code.
"""
from __future__ import annotations

from blockreg import __version__
from blockreg.jobspec import JobSpec

from .schemas import RESPONSE_MODELS

MODELS = (JobSpec, *RESPONSE_MODELS)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema_name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _errors(*codes: int) -> dict:
    text = {400: "Malformed request", 404: "Unknown job", 409: "Conflict with the job's state",
            422: "Invalid job spec (one entry per field)"}
    return {str(c): _json("Error", text[c]) for c in codes}


def _int_query(name: str, description: str, minimum: int = 0) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "integer", "minimum": minimum}}


JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}


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
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("JobSpec")}}},
                "responses": {"201": _json("Created", "Job created; frames will be enqueued"),
                              **_errors(400, 409, 422)}},
            "get": {
                "summary": "List jobs, newest first", "operationId": "listJobs",
                "parameters": [
                    _int_query("offset", "Jobs to skip"),
                    _int_query("limit", "Page size (at most 500)", 1),
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
                JOB_ID, _int_query("offset", "Frames to skip"),
                _int_query("limit", "Page size (at most 5000)", 1),
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
    return {
        "openapi": "3.1.0",
        "info": {"title": "blockreg coordinator", "version": __version__,
                 "description": "Submit and follow deformable-registration jobs."},
        "paths": paths,
        "components": {"schemas": schemas},
    }
