"""Read-only queries of jobs and frames (the API's listings, the dispatcher's counts)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from .models import Frame, Job

__all__ = ["get_job", "count_frames", "list_jobs", "list_frames"]


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def count_frames(session: Session, job_id: int, state: str) -> int:
    return session.scalar(select(func.count()).select_from(Frame)
                          .where(Frame.job_id == job_id, Frame.state == state))


def list_jobs(session: Session, *, offset: int = 0, limit: int = 50, state: str | None = None):
    """Jobs, newest first, and the total count (for pagination)."""
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if state is not None:
        query = query.where(Job.state == state)
        count = count.where(Job.state == state)
    jobs = list(session.scalars(query.order_by(Job.id.desc()).offset(offset).limit(limit)))
    return jobs, session.scalar(count)


def list_frames(session: Session, job_id: int, *, state: str | None = None, offset: int = 0,
                limit: int = 100):
    """Frames of a job in output order, their scalars loaded, and the total count.

    Returns
    -------
    frames : list of Frame
        ``frame.scalars`` is the dict of monitored scalars (loaded in one extra query).
    total : int
    """
    query = select(Frame).where(Frame.job_id == job_id).options(selectinload(Frame.scalar_rows))
    count = select(func.count()).select_from(Frame).where(Frame.job_id == job_id)
    if state is not None:
        query = query.where(Frame.state == state)
        count = count.where(Frame.state == state)
    # populate_existing: a frame already in the session gets today's state and scalars
    query = query.order_by(Frame.index).offset(offset).limit(limit)
    frames = list(session.scalars(query.execution_options(populate_existing=True)))
    return frames, session.scalar(count)
