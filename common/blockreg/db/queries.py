"""Read-only queries of jobs and frames (the API's listings, the dispatcher's counts)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import Frame, FrameScalar, Job

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
    """Frames of a job in output order with their scalars, and the total count.

    Returns
    -------
    frames : list of (Frame, dict of str -> float)
    total : int
    """
    query = select(Frame).where(Frame.job_id == job_id)
    count = select(func.count()).select_from(Frame).where(Frame.job_id == job_id)
    if state is not None:
        query = query.where(Frame.state == state)
        count = count.where(Frame.state == state)
    frames = list(session.scalars(query.order_by(Frame.index).offset(offset).limit(limit)))
    scalars: dict[int, dict] = {f.index: {} for f in frames}
    if frames:
        rows = session.execute(
            select(FrameScalar.index, FrameScalar.name, FrameScalar.value)
            .where(FrameScalar.job_id == job_id, FrameScalar.index.in_(list(scalars)))
        )
        for index, name, value in rows:
            scalars[index][name] = value
    return [(f, scalars[f.index]) for f in frames], session.scalar(count)
