"""The states of jobs and frames: the one definition the database, the API and the client share.

Standard library only, so the HTTP client and the OpenAPI models use it without SQLAlchemy.
"""
from __future__ import annotations

from enum import StrEnum

__all__ = ["JobState", "FrameState", "ACTIVE_JOB_STATES", "FINISHED_JOB_STATES",
           "OPEN_FRAME_STATES"]


class JobState(StrEnum):
    """``queued -> running -> succeeded | failed | cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FrameState(StrEnum):
    """``pending -> queued -> running -> done | failed``."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# Plain strings (the values): they go into SQL parameters, where every driver takes a str.
ACTIVE_JOB_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)
FINISHED_JOB_STATES = tuple(s.value for s in JobState if s.value not in ACTIVE_JOB_STATES)
# a frame not yet done or failed: it may still be claimed, completed or failed
OPEN_FRAME_STATES = (FrameState.PENDING.value, FrameState.QUEUED.value, FrameState.RUNNING.value)
