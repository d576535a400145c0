"""Worker processes in the database: their heartbeats, and giving back the frames they lost.

A worker process writes a heartbeat row while it lives and deletes it when it stops cleanly; the
dispatcher returns frames whose message or worker was lost to ``pending`` (by lease, or by the
reconciler's verdict against the broker and the heartbeats), and fails a frame whose worker was
lost too often.  Like :mod:`blockreg.db.ops`, each function is atomic and commits its session.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session

from ..states import ACTIVE_JOB_STATES, FrameState
from .models import Frame, Job, WorkerHeartbeat
from .ops import MAX_ATTEMPTS, utcnow

__all__ = ["record_heartbeat", "forget_heartbeat", "prune_heartbeats", "requeue_stale",
           "return_lost_frames"]


def record_heartbeat(session: Session, *, hostname: str, pid: int, queues: str = "cpu",
                     device: str = "cpu") -> None:
    """Upsert the heartbeat row of one worker process."""
    now = utcnow()
    result = session.execute(
        update(WorkerHeartbeat)
        .where(WorkerHeartbeat.hostname == hostname, WorkerHeartbeat.pid == pid)
        .values(queues=queues, device=device, last_seen=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        session.add(WorkerHeartbeat(hostname=hostname, pid=pid, queues=queues, device=device,
                                    last_seen=now))
    session.commit()


def forget_heartbeat(session: Session, hostname: str, *, like: bool = False) -> int:
    """Delete the heartbeat rows of a worker process that stopped cleanly; return how many.

    ``like`` matches ``hostname`` as a SQL LIKE pattern (``node:%`` = every process of a node).
    """
    column = WorkerHeartbeat.hostname
    result = session.execute(delete(WorkerHeartbeat)
                             .where(column.like(hostname) if like else column == hostname)
                             .execution_options(synchronize_session=False))
    session.commit()
    return result.rowcount


def prune_heartbeats(session: Session, before: datetime) -> int:
    """Delete heartbeat rows last seen before ``before`` (processes long gone)."""
    result = session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen < before))
    session.commit()
    return result.rowcount


def _check_max_attempts(max_attempts: int) -> None:
    if max_attempts < 1:
        raise ValueError(f"max_attempts: must be at least 1, got {max_attempts}")


def _fail_lost(session: Session, job_id: int, still_running, attempts: int, now) -> bool:
    """Fail a frame (matched by ``still_running``) whose worker was lost ``attempts`` times and
    count it in its job; False when the frame has moved on meanwhile."""
    failed = session.execute(
        update(Frame).where(still_running)
        .values(state=FrameState.FAILED.value, finished_at=now,
                error=f"worker lost {attempts} times while running this frame")
        .execution_options(synchronize_session=False)).rowcount
    if failed:
        session.execute(update(Job).where(Job.id == job_id)
                        .values(frames_failed=Job.frames_failed + 1)
                        .execution_options(synchronize_session=False))
    return bool(failed)


def requeue_stale(session: Session, *, queued_lease_s: float, running_lease_s: float,
                  max_attempts: int = MAX_ATTEMPTS) -> int:
    """Return frames of active jobs whose message or worker was lost to ``pending``.

    A frame queued longer than ``queued_lease_s`` (message lost) or running longer than
    ``running_lease_s`` (worker died; must exceed the task time limit) is re-enqueued by the next
    dispatch.  A running frame that has already been claimed ``max_attempts`` times fails
    instead ("worker lost N times"): a frame that kills its worker (out of memory, a crash, the
    hard time limit) would otherwise be sent again forever and its job never end.  Returns the
    number of frames moved or failed.
    """
    _check_max_attempts(max_attempts)
    now = utcnow()
    job_active = select(Job.id).where(Job.id == Frame.job_id,
                                      Job.state.in_(ACTIVE_JOB_STATES)).exists()
    moved = 0
    running_expired = and_(Frame.state == FrameState.RUNNING.value,
                           Frame.started_at < now - timedelta(seconds=running_lease_s), job_active)
    exhausted = session.execute(select(Frame.job_id, Frame.index, Frame.attempts)
                                .where(running_expired, Frame.attempts >= max_attempts)).all()
    for job_id, index, attempts in exhausted:
        still_running = and_(Frame.job_id == job_id, Frame.index == index,
                             Frame.state == FrameState.RUNNING.value)
        moved += _fail_lost(session, job_id, still_running, attempts, now)
    for state, column, lease in ((FrameState.QUEUED.value, Frame.enqueued_at, queued_lease_s),
                                 (FrameState.RUNNING.value, Frame.started_at, running_lease_s)):
        result = session.execute(
            update(Frame)
            .where(Frame.state == state, column < now - timedelta(seconds=lease), job_active)
            .values(state=FrameState.PENDING.value)
            .execution_options(synchronize_session=False)
        )
        moved += result.rowcount
    session.commit()
    return moved


def return_lost_frames(session: Session, *, queued=(), running=(), queued_before: datetime,
                       running_before: datetime, max_attempts: int = MAX_ATTEMPTS) -> int:
    """Give frames that are not really queued or running back to ``pending`` (the reconciler's
    verdict), or fail a running one already claimed ``max_attempts`` times.

    Each frame moves only if it is still as the verdict saw it: ``queued`` frames ``(job_id,
    index)`` still queued since before ``queued_before`` (a frame sent again since is left
    alone), ``running`` frames ``(job_id, index, worker)`` still running under that worker since
    before ``running_before`` (a frame claimed again since is left alone).  Returns the number of
    frames moved or failed.
    """
    _check_max_attempts(max_attempts)
    now = utcnow()
    moved = 0
    for job_id, index in queued:
        moved += session.execute(
            update(Frame)
            .where(Frame.job_id == job_id, Frame.index == index,
                   Frame.state == FrameState.QUEUED.value, Frame.enqueued_at < queued_before)
            .values(state=FrameState.PENDING.value, enqueued_at=None)
            .execution_options(synchronize_session=False)).rowcount
    for job_id, index, worker in running:
        still = and_(Frame.job_id == job_id, Frame.index == index, Frame.worker == worker,
                     Frame.state == FrameState.RUNNING.value, Frame.started_at < running_before)
        if _fail_lost(session, job_id, and_(still, Frame.attempts >= max_attempts),
                      max_attempts, now):
            moved += 1
            continue
        moved += session.execute(
            update(Frame).where(still).values(state=FrameState.PENDING.value)
            .execution_options(synchronize_session=False)).rowcount
    session.commit()
    return moved
