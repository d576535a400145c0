"""The shapes of ``/api/v1``'s responses: the views build every body from these models, and
:mod:`.openapi` generates the document from the same ones, so the two cannot drift.

Rows of the database are read by attribute (``from_attributes``): ``Job.model_validate(job_row)``.
Timestamps are aware UTC datetimes (the model layer's ``UTCDateTime``) and serialise as ISO 8601
ending in ``Z``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from blockreg.states import FrameState, JobState

__all__ = ["FieldError", "Error", "Created", "JobSummary", "Job", "JobList", "Frame", "FrameList",
           "Health", "RESPONSE_MODELS", "body"]


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class FieldError(BaseModel):
    field: str
    problem: str


class Error(BaseModel):
    message: str
    errors: list[FieldError] = []


class Created(_FromRow):
    id: int
    state: JobState
    output_path: str


class JobSummary(_FromRow):
    """A job in a listing or after a cancel: state, progress, timings and error."""

    id: int
    name: str | None
    state: JobState
    frames_total: int
    frames_done: int
    frames_failed: int
    output_path: str
    queue: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_s: float | None
    error: str | None


class Job(JobSummary):
    """One job with the spec it was submitted with."""

    spec: dict


class JobList(BaseModel):
    jobs: list[JobSummary]
    total: int
    offset: int
    limit: int


class Frame(_FromRow):
    index: int
    source_t: int
    state: FrameState
    attempts: int
    worker: str | None
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    error: str | None
    scalars: dict[str, float | None]


class FrameList(BaseModel):
    frames: list[Frame]
    total: int
    offset: int
    limit: int


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    broker: bool
    version: str


RESPONSE_MODELS = (Error, FieldError, Created, JobSummary, Job, JobList, Frame, FrameList, Health)


def body(model: type[BaseModel], value=None, /, **fields) -> dict:
    """The JSON body ``model`` gives ``value`` (a row or a dict) or ``fields``."""
    return model.model_validate(fields if value is None else value).model_dump(mode="json")
