"""The shapes of ``/api/v1``'s responses: the views build every body from these models, and
:mod:`.openapi` generates the document from the same ones, so the two cannot drift.

Rows of the database are read by attribute (``from_attributes``): ``Job.model_validate(job_row)``.
Timestamps are aware UTC datetimes (the model layer's ``UTCDateTime``) and serialise as ISO 8601
ending in ``Z``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from blockreg.states import FrameState, JobState

__all__ = ["FieldError", "Error", "Created", "JobSummary", "Job", "JobList", "Frame", "FrameList",
           "Health", "RESPONSE_MODELS", "body", "FileEntry", "FileListing", "Preview", "Deformation",
           "TuneGrid", "TuneRequest", "TuneRun", "LambdaCurve", "Tune"]


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
    phase: str | None = Field(None, description="A phase after the frames: 'optimize' (a "
                              "two-stage job's series solve), 'stitching', then 'done'")
    phase_done: int = Field(0, description="Windows of the phase solved so far")
    phase_total: int = Field(0, description="Windows of the phase (0 until it starts)")
    waiting: bool = Field(False, description="True while an active job cannot progress and "
                          "waits for something (see waiting_reason); recomputed on every read")
    waiting_reason: str | None = Field(None, description="What an active job waits for, e.g. "
                                       "'no live worker on queue cpu' or 'broker unreachable'")
    owner: str | None = Field(None, description="Name of the user who submitted it (null in "
                              "single-user mode or once that user is removed)")


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


class Worker(BaseModel):
    name: str = Field(description="The worker process (Celery node and pid).")
    queues: str = Field(description="Queues it consumes, comma-separated.")
    device: str = Field(description="What it computes on: cpu, or gpu:N and the device's name.")
    last_seen: datetime


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    broker: bool
    version: str
    workers: list[Worker] = Field(default_factory=list, description="Worker processes with a "
                                  "fresh heartbeat, with their queues and devices.")


RESPONSE_MODELS = (Error, FieldError, Created, JobSummary, Job, JobList, Frame, FrameList, Worker,
                   Health)


def body(model: type[BaseModel], value=None, /, **fields) -> dict:
    """The JSON body ``model`` gives ``value`` (a row or a dict) or ``fields``."""
    return model.model_validate(fields if value is None else value).model_dump(mode="json")


# -- looking at data and tuning (coordinator/browse.py, coordinator/tune.py) ----------------------
class FileEntry(BaseModel):
    """One item of a folder: a sub-folder, a series the readers open (with its geometry) or a file."""

    name: str
    path: str
    kind: Literal["directory", "series", "file"]
    shape: list[int] | None = None
    axes: str | None = None
    dtype: str | None = None
    spacing: list[float] | None = None
    error: str | None = None


class FileListing(BaseModel):
    path: str | None
    parent: str | None
    roots: list[str]
    entries: list[FileEntry]


class Preview(BaseModel):
    """The fixed frame of a would-be job (PNG data URL) with its aperture grid and maxshift."""

    shape: list[int]
    axes: str
    fixed_index: int
    frames: int
    image: str
    nodes: list[list[float]] | None
    aperture_width: list[float] | None
    maxshift: list[int] | None


class Deformation(BaseModel):
    """A frame's node positions (per spatial axis) and displacements ``(*gridsize, N)``."""

    index: int
    source_t: int
    shape: list[int] | None
    nodes: list[list[float]] | None
    u: list | None


class TuneGrid(BaseModel):
    """The values tried; every combination becomes one small job (at most 24)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    lam: list[float | list[float]] | None = Field(None, alias="lambda", min_length=1)
    gridsize: list[list[int]] | None = Field(None, min_length=1)
    maxshift: list[list[int]] | None = Field(None, min_length=1)
    sigma_hp: list[float] | None = Field(None, min_length=1)


class TuneRequest(BaseModel):
    """A tune batch: a base job spec, the frames to try it on, and the grid of values."""

    model_config = ConfigDict(extra="forbid")

    spec: dict
    frames: list[int] = Field(min_length=2, max_length=3,
                              description="[start, stop] or [start, stop, step]; at most 16 frames")
    grid: TuneGrid


class TuneRun(BaseModel):
    job_id: int
    values: dict
    state: JobState
    frames_done: int
    frames_total: int
    mismatch_before: float | None = None
    mismatch_after: float | None = None
    reduction: float | None = None
    folds: float | None = None
    spec: dict


class LambdaCurve(BaseModel):
    """Data penalty against λ of an auto-λ run (mean over its frames) and the fitted sigmoid."""

    job_id: int
    lambdas: list[float]
    datapenalty: list[float]
    fitted: list[float] | None
    chosen: float | None


class Tune(BaseModel):
    id: int
    created_at: str
    frames: list[int]
    grid: dict
    runs: list[TuneRun]
    lambda_curve: LambdaCurve | None = None
    base_frames: list[int] | None = None
    base_name: str | None = None


RESPONSE_MODELS = RESPONSE_MODELS + (FileEntry, FileListing, Preview, Deformation, TuneGrid,
                                     TuneRequest, TuneRun, LambdaCurve, Tune)


# -- the quality report of a finished job (coordinator/report.py) ----------------------------------
class QualityReport(BaseModel):
    """A finished job's quality report: the JSON documented in docs/report.md."""

    job_id: int
    report: dict = Field(description="version, summary (the key figures), warnings, bound, "
                         "folds, largest displacements and per-frame series (docs/report.md)")


RESPONSE_MODELS = RESPONSE_MODELS + (QualityReport,)
