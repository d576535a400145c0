"""Read-only queries of jobs and frames (the API's listings, the dispatcher's counts)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ..states import ACTIVE_JOB_STATES
from .models import Frame, Job, User, WorkerHeartbeat

__all__ = ["get_job", "count_frames", "list_jobs", "list_frames", "live_workers", "open_frames",
           "task_workers", "owner_names"]


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def count_frames(session: Session, job_id: int, state: str) -> int:
    return session.scalar(select(func.count()).select_from(Frame)
                          .where(Frame.job_id == job_id, Frame.state == state))


def list_jobs(session: Session, *, offset: int = 0, limit: int = 50, state: str | None = None,
              owner_id: int | None = None):
    """Jobs, newest first, and the total count (for pagination); ``owner_id``: only theirs."""
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if owner_id is not None:
        query = query.where(Job.owner_id == owner_id)
        count = count.where(Job.owner_id == owner_id)
    if state is not None:
        query = query.where(Job.state == state)
        count = count.where(Job.state == state)
    jobs = list(session.scalars(query.order_by(Job.id.desc()).offset(offset).limit(limit)))
    return jobs, session.scalar(count)


def owner_names(session: Session, jobs) -> dict[int, str]:
    """``{owner_id: user name}`` of the owners of ``jobs`` (one query; jobs without one left out)."""
    ids = {job.owner_id for job in jobs if job.owner_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all())


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


def live_workers(session: Session, since) -> dict[str, str]:
    """Worker processes whose heartbeat is not older than ``since``: name -> queues they consume.

    The name is what the process records on the frames it claims (``Frame.worker``).
    """
    rows = session.execute(select(WorkerHeartbeat.hostname, WorkerHeartbeat.queues)
                           .where(WorkerHeartbeat.last_seen >= since)).all()
    return {name: queues for name, queues in rows}


def live_worker_rows(session: Session, since) -> list:
    """Rows ``(hostname, queues, device, last_seen)`` of the worker processes alive since ``since``,
    by name (``GET /api/v1/health``)."""
    return session.execute(
        select(WorkerHeartbeat.hostname, WorkerHeartbeat.queues, WorkerHeartbeat.device,
               WorkerHeartbeat.last_seen)
        .where(WorkerHeartbeat.last_seen >= since).order_by(WorkerHeartbeat.hostname)).all()


def open_frames(session: Session, state: str, before):
    """Frames of active jobs in ``state`` since before ``before`` (queued: enqueued_at, running:
    started_at): rows of ``(job_id, index, worker, task_id)``, for the reconciler."""
    column = Frame.started_at if state == "running" else Frame.enqueued_at
    # by active job: the (job_id, state, index) index finds the few open frames among millions
    # of finished ones without scanning the table every few seconds
    active = list(session.scalars(select(Job.id).where(Job.state.in_(ACTIVE_JOB_STATES))))
    if not active:
        return []
    return session.execute(select(Frame.job_id, Frame.index, Frame.worker, Frame.task_id)
                           .where(Frame.job_id.in_(active), Frame.state == state, column < before)
                           .order_by(Frame.job_id, Frame.index)).all()


def task_workers(session: Session, task_ids) -> dict[str, set[str]]:
    """For each task message id, the workers that claimed frames under it."""
    task_ids = list(task_ids)
    found: dict[str, set[str]] = {}
    if not task_ids:
        return found
    rows = session.execute(select(Frame.task_id, Frame.worker).distinct()
                           .where(Frame.task_id.in_(task_ids))).all()
    for task_id, worker in rows:
        found.setdefault(task_id, set()).add(worker)
    return found
