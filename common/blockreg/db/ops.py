"""The state transitions of jobs and frames, each one atomic.

Every transition is a single conditional ``UPDATE`` (or a few statements in one transaction) whose
``WHERE`` clause states the precondition, and the row count says whether it happened.  That makes
them safe under concurrency (several Celery workers, the coordinator's dispatcher, a user's cancel)
and repeatable (a redelivered task completes a frame a second time without counting it twice).
Each function commits the session it is given.  Worker heartbeats and the return of frames whose
worker or message was lost are in :mod:`blockreg.db.workers`.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import and_, case, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from .. import settings
from ..states import ACTIVE_JOB_STATES, OPEN_FRAME_STATES, FrameState, JobState
from .migrate import alembic_config, migrate
from .models import Frame, FrameScalar, Job

__all__ = [
    "utcnow", "create_job", "claim_frame", "claim_frames", "complete_frame", "complete_frames",
    "fail_frame", "finalize_if_complete", "cancel_job", "enqueue_pending", "mark_queued",
    "release_frames", "migrate", "alembic_config",
]

_MAX_ERROR_CHARS = 4000


# claims of one frame after which a lost worker fails the frame instead of re-queueing it
# (the max_attempts setting, BLOCKREG_MAX_ATTEMPTS)
MAX_ATTEMPTS = settings.get("max_attempts")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _clip(message: str | None) -> str | None:
    if message is None:
        return None
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 3] + "..."


def _copy_frames(session: Session, job_id: int, source_ts) -> None:
    # PostgreSQL's COPY streams 100,000 rows in well under a second, several times faster than
    # even batched INSERTs.
    raw = session.connection().connection.driver_connection
    tail = f"\t{FrameState.PENDING.value}\t0\n"
    text = "".join(f"{job_id}\t{index}\t{int(t)}{tail}" for index, t in enumerate(source_ts))
    with raw.cursor() as cursor:
        with cursor.copy('COPY frame (job_id, "index", source_t, state, attempts) FROM STDIN') as cp:
            cp.write(text)


def _executemany_frames(session: Session, job_id: int, source_ts) -> None:
    # The DBAPI's executemany on plain tuples, inside the session's transaction: SQLAlchemy's
    # per-row parameter processing alone would take seconds for 100,000 rows.
    raw = session.connection().connection.driver_connection
    pending = FrameState.PENDING.value
    raw.executemany('INSERT INTO frame (job_id, "index", source_t, state, attempts) '
                    "VALUES (?, ?, ?, ?, 0)",
                    ((job_id, i, int(t), pending) for i, t in enumerate(source_ts)))


def create_job(session: Session, *, spec: dict, frames, output_path: str, name: str | None = None,
               queue: str = "cpu", before_commit=None, owner_id: int | None = None) -> int:
    """Insert a queued job and one pending frame row per source frame; return the job id.

    Parameters
    ----------
    spec : dict
        The JSON form of the job spec.
    frames : sequence of int
        Source time index of each output position.
    output_path : str
        May contain ``{id}``, replaced by the new job's id.
    before_commit : callable, optional
        ``before_commit(job_id, output_path)`` runs inside the transaction after the rows are
        inserted (the coordinator creates the output store there); if it raises, nothing is kept.
        If it returns a path, that path is recorded instead (the store went elsewhere).
    """
    frames = list(frames)
    if not frames:
        raise ValueError("frames: a job needs at least one frame")
    job = Job(name=name, state=JobState.QUEUED.value, spec=spec, output_path=output_path,
              frames_total=len(frames), frames_done=0, frames_failed=0, queue=queue,
              created_at=utcnow(), owner_id=owner_id)
    try:
        session.add(job)
        session.flush()
        if "{id}" in output_path:
            job.output_path = output_path.replace("{id}", str(job.id))
            session.flush()
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            _copy_frames(session, job.id, frames)
        elif dialect == "sqlite":
            _executemany_frames(session, job.id, frames)
        else:
            rows = [{"job_id": job.id, "index": i, "source_t": int(t),
                     "state": FrameState.PENDING.value, "attempts": 0}
                    for i, t in enumerate(frames)]
            session.execute(insert(Frame.__table__), rows)
        if before_commit is not None:
            final_path = before_commit(job.id, job.output_path)
            if final_path is not None and final_path != job.output_path:
                job.output_path = final_path
                session.flush()
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return job.id


def claim_frame(session: Session, job_id: int, index: int, worker: str,
                task_id: str | None = None) -> int | None:
    """Mark a frame running for ``worker``; return its source time index, or None to skip it.

    One frame of :func:`claim_frames`, which says when a frame is skipped or claimed again.
    """
    return claim_frames(session, job_id, [index], worker, task_id=task_id).get(int(index))


def claim_frames(session: Session, job_id: int, indices, worker: str,
                 task_id: str | None = None) -> dict[int, int]:
    """Mark frames running for ``worker`` in one transaction; return ``{index: source time
    index}`` of those claimed (the others are skipped).

    A frame is skipped when it is already done or failed, being run elsewhere, or its job is no
    longer active (cancelled or finished).  Also moves a queued job to running.

    ``task_id`` (the Celery message id) is stored on the frame.  A frame still ``running`` under
    the same ``task_id`` is claimed again: the message is being redelivered (acks_late after the
    worker was killed, a broker reconnect), so the run that claimed it is gone, and waiting for
    the running lease would only delay the frame by hours.
    """
    indices = [int(i) for i in indices]
    if not indices:
        return {}
    now = utcnow()
    job_active = select(Job.id).where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES)).exists()
    claimable = Frame.state.in_((FrameState.PENDING.value, FrameState.QUEUED.value))
    if task_id is not None:
        # not past MAX_ATTEMPTS: a frame that kills its worker is redelivered with its message
        # each time; requeue_stale fails it once the running lease is over
        claimable = or_(claimable, and_(Frame.state == FrameState.RUNNING.value,
                                        Frame.task_id == task_id, Frame.attempts < MAX_ATTEMPTS))
    claimed = dict(session.execute(
        update(Frame)
        .where(Frame.job_id == job_id, Frame.index.in_(indices), claimable, job_active)
        .values(state=FrameState.RUNNING.value, attempts=Frame.attempts + 1, worker=worker,
                task_id=task_id, started_at=now, error=None)
        .returning(Frame.index, Frame.source_t)
        .execution_options(synchronize_session=False)
    ).all())
    if not claimed:
        session.rollback()
        return {}
    session.execute(
        update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        .values(state=JobState.RUNNING.value, started_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return {int(index): int(t) for index, t in claimed.items()}


def complete_frame(session: Session, job_id: int, index: int, scalars: dict | None = None,
                   duration_s: float | None = None) -> bool:
    """Mark a frame done, store its scalars and count it, in one transaction.

    Idempotent: completing a frame that is already done (a redelivered task) changes nothing and
    returns False.  One frame of :func:`complete_frames`.
    """
    return complete_frames(session, job_id, [(index, scalars, duration_s)]) == 1


def complete_frames(session: Session, job_id: int, items) -> int:
    """Mark frames done, store their scalars and count them, in one transaction (one commit for
    a worker's whole write, not one per frame); return how many this call completed.

    ``items`` are ``(index, scalars or None, duration_s or None)``.  A frame already done or
    failed (a redelivered task) is left as it is and not counted again.
    """
    now = utcnow()
    done = []
    for index, scalars, duration_s in items:
        result = session.execute(
            update(Frame)
            .where(Frame.job_id == job_id, Frame.index == index,
                   Frame.state.in_(OPEN_FRAME_STATES))
            .values(state=FrameState.DONE.value, finished_at=now, duration_s=duration_s,
                    error=None)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            done.append((int(index), scalars))
    if not done:
        session.rollback()
        return 0
    session.execute(delete(FrameScalar).where(FrameScalar.job_id == job_id,
                                              FrameScalar.index.in_([i for i, _ in done])))
    rows = [{"job_id": job_id, "index": index, "name": k, "value": _finite(v)}
            for index, scalars in done for k, v in (scalars or {}).items()]
    if rows:
        session.execute(insert(FrameScalar.__table__), rows)
    session.execute(update(Job).where(Job.id == job_id)
                    .values(frames_done=Job.frames_done + len(done))
                    .execution_options(synchronize_session=False))
    session.commit()
    return len(done)


def _finite(value) -> float | None:
    # NaN (a missing value) is stored as NULL: PostgreSQL and JSON clients both handle that
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def fail_frame(session: Session, job_id: int, index: int, error: str,
               duration_s: float | None = None) -> bool:
    """Mark a frame failed with ``error`` and count it; False if it was already done or failed."""
    result = session.execute(
        update(Frame)
        .where(Frame.job_id == job_id, Frame.index == index, Frame.state.in_(OPEN_FRAME_STATES))
        .values(state=FrameState.FAILED.value, finished_at=utcnow(), duration_s=duration_s,
                error=_clip(error))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        return False
    session.execute(update(Job).where(Job.id == job_id)
                    .values(frames_failed=Job.frames_failed + 1)
                    .execution_options(synchronize_session=False))
    session.commit()
    return True


def finalize_if_complete(session: Session, job_id: int) -> str | None:
    """Finish a job whose frames are all done or failed, exactly once.

    The conditional UPDATE (job still active and every frame accounted for) succeeds for one
    caller only; that caller gets the final state (``"succeeded"``, or ``"failed"`` when any frame
    failed, with a summary in ``error``).  Everyone else gets None.
    """
    failed = JobState.FAILED.value
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES),
               Job.frames_done + Job.frames_failed >= Job.frames_total,
               # a phase after the frames (orchestrate.phases) ends before the job does
               or_(Job.phase.is_(None), Job.phase == "done"))
        .values(state=case((Job.frames_failed > 0, failed), else_=JobState.SUCCEEDED.value),
                finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        return None
    job = session.execute(select(Job.state, Job.frames_failed, Job.frames_total)
                          .where(Job.id == job_id)).one()
    if job.state == failed:
        first = session.execute(
            select(Frame.index, Frame.error)
            .where(Frame.job_id == job_id, Frame.state == FrameState.FAILED.value)
            .order_by(Frame.index).limit(1)
        ).first()
        summary = f"{job.frames_failed} of {job.frames_total} frames failed"
        if first is not None:
            summary += f"; first (frame {first.index}): {first.error}"
        session.execute(update(Job).where(Job.id == job_id).values(error=_clip(summary))
                        .execution_options(synchronize_session=False))
    session.commit()
    return job.state


def cancel_job(session: Session, job_id: int) -> bool:
    """Cancel an active job (one-row UPDATE); False if it had already finished.

    Frames are left as they are: workers skip frames of a cancelled job and the dispatcher stops
    enqueuing them, so cancelling a 100,000-frame job costs the same as a small one.
    """
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES))
        .values(state=JobState.CANCELLED.value, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1


def enqueue_pending(session: Session, job_id: int, limit: int) -> list[int]:
    """Move up to ``limit`` pending frames of an active job to ``queued``; return their indices.

    Also marks a queued job running.  The caller sends the task messages after this commits; if a
    message is lost, :func:`requeue_stale` returns the frames to pending after the lease.
    """
    if limit <= 0:
        return []
    job_active = select(Job.id).where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES)).exists()
    candidates = list(session.scalars(
        select(Frame.index)
        .where(Frame.job_id == job_id, Frame.state == FrameState.PENDING.value, job_active)
        .order_by(Frame.index).limit(limit)
    ))
    if not candidates:
        session.rollback()
        return []
    return sorted(mark_queued(session, job_id, candidates))


def mark_queued(session: Session, job_id: int, indices) -> set[int]:
    """Move the frames ``indices`` that are still pending to ``queued``, mark a queued job running,
    commit, and return the indices this call moved.

    RETURNING says which frames this call moved, so two dispatchers never send the same frame (and
    a frame moved meanwhile by a worker's claim is left out).
    """
    now = utcnow()
    moved = set(session.scalars(
        update(Frame)
        .where(Frame.job_id == job_id, Frame.index.in_(list(indices)),
               Frame.state == FrameState.PENDING.value)
        .values(state=FrameState.QUEUED.value, enqueued_at=now)
        .returning(Frame.index)
        .execution_options(synchronize_session=False)
    ))
    session.execute(
        update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        .values(state=JobState.RUNNING.value, started_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return moved


def release_frames(session: Session, job_id: int, indices) -> int:
    """Return queued frames to pending (their task message could not be sent)."""
    result = session.execute(
        update(Frame)
        .where(Frame.job_id == job_id, Frame.index.in_(list(indices)),
               Frame.state == FrameState.QUEUED.value)
        .values(state=FrameState.PENDING.value, enqueued_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount
