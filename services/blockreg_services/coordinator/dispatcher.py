"""The dispatcher: feeds pending frames to the queue in small batches, a bounded number at a time.

Keeping at most ``max_batches`` batches of a job in the broker at once means a 100,000-frame job
costs one INSERT at submit time instead of 12,500 messages, Redis holds a few kilobytes per job,
and cancelling only has to stop the dispatcher (workers skip frames of a cancelled job).  The same
loop recovers from lost messages and dead workers: frames queued or running past their lease go
back to pending and are sent again.
"""
from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from blockreg.celery_app import TASK_REGISTER_FRAMES
from blockreg.db import ops, queries
from blockreg.db.models import ACTIVE_JOB_STATES, FrameState, Job

__all__ = ["dispatch_once", "Dispatcher", "DEFAULTS"]

log = logging.getLogger(__name__)

DEFAULTS = {
    "BATCH_FRAMES": 8,
    "MAX_BATCHES_PER_JOB": 16,
    "DISPATCH_INTERVAL_S": 1.0,
    # a message not picked up within this long is presumed lost
    "QUEUED_LEASE_S": 3600.0,
    # must exceed the task time limit (blockreg.celery_app.TASK_TIME_LIMIT_S) with margin
    "RUNNING_LEASE_S": 2 * 3600.0 + 600.0,
    # a frame whose worker was lost this many times fails (it is probably what kills workers)
    "MAX_ATTEMPTS": 3,
}


def dispatch_once(session, celery_app, *, batch_frames: int = DEFAULTS["BATCH_FRAMES"],
                  max_batches: int = DEFAULTS["MAX_BATCHES_PER_JOB"],
                  queued_lease_s: float = DEFAULTS["QUEUED_LEASE_S"],
                  running_lease_s: float = DEFAULTS["RUNNING_LEASE_S"],
                  max_attempts: int = DEFAULTS["MAX_ATTEMPTS"]) -> int:
    """One round: re-queue stale frames, top up every active job's batches, finalise finished jobs.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
    celery_app : object with ``send_task(name, args=..., queue=...)``
    batch_frames : int
        Frames per task message.
    max_batches : int
        Batches of one job allowed in the broker (queued, not yet started) at once.

    Returns
    -------
    int
        Number of task messages sent.
    """
    if batch_frames < 1:
        raise ValueError(f"batch_frames: must be at least 1, got {batch_frames}")
    if max_batches < 1:
        raise ValueError(f"max_batches: must be at least 1, got {max_batches}")
    moved = ops.requeue_stale(session, queued_lease_s=queued_lease_s,
                              running_lease_s=running_lease_s, max_attempts=max_attempts)
    if moved:
        log.warning("re-queued or failed %d frames whose message or worker was lost", moved)
    jobs = session.execute(select(Job.id, Job.queue).where(Job.state.in_(ACTIVE_JOB_STATES))
                           .order_by(Job.id)).all()
    session.rollback()
    sent = 0
    for job_id, queue in jobs:
        # covers a worker that died between completing the last frame and finalising
        if ops.finalize_if_complete(session, job_id) is not None:
            continue
        waiting = queries.count_frames(session, job_id, FrameState.QUEUED.value)
        session.rollback()
        room = (max_batches * batch_frames - waiting) // batch_frames * batch_frames
        indices = ops.enqueue_pending(session, job_id, room)
        for start in range(0, len(indices), batch_frames):
            batch = indices[start:start + batch_frames]
            try:
                celery_app.send_task(TASK_REGISTER_FRAMES, args=(job_id, batch), queue=queue)
            except Exception:  # noqa: BLE001 - broker down: give the frames back, retry next round
                log.exception("could not send frames of job %s; will retry", job_id)
                ops.release_frames(session, job_id, indices[start:])
                return sent
            sent += 1
    return sent


class Dispatcher(threading.Thread):
    """Background thread running :func:`dispatch_once` every ``interval_s`` or when woken."""

    def __init__(self, sessions, celery_app, *, interval_s: float = DEFAULTS["DISPATCH_INTERVAL_S"],
                 **options):
        super().__init__(name="blockreg-dispatcher", daemon=True)
        self._sessions = sessions
        self._celery = celery_app
        self._interval = float(interval_s)
        self._options = options
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def wake(self) -> None:
        """Dispatch now (e.g. right after a submit) instead of at the next tick."""
        self._wake.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._sessions() as session:
                    dispatch_once(session, self._celery, **self._options)
            except Exception:  # noqa: BLE001 - the loop must survive a DB hiccup
                log.exception("dispatch round failed")
            self._wake.wait(self._interval)
            self._wake.clear()
