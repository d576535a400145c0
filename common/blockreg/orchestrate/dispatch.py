"""One round of dispatching: feed pending frames to the queue in small batches, a bounded number
at a time, re-queue lost frames and finalise finished jobs.

Keeping at most ``max_batches`` batches of a job in the broker at once means a 100,000-frame job
costs one INSERT at submit time instead of 12,500 messages, Redis holds a few kilobytes per job,
and cancelling only has to stop the dispatcher (workers skip frames of a cancelled job).  The same
round recovers from lost messages and dead workers: frames queued or running past their lease go
back to pending and are sent again.  The dispatcher process (``blockreg_services.dispatcher``)
runs :func:`dispatch_once` in a loop.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, select

from ..celery_app import TASK_REGISTER_FRAMES
from ..db import ops, queries, workers
from ..db.models import Job
from ..settings import load as load_settings
from .phases import advance_phase
from ..states import ACTIVE_JOB_STATES, JobState
from .finish import after_finish
from .shards import enqueue_shards
from .shares import fair_caps, limits_from_settings

__all__ = ["dispatch_once", "has_new_jobs", "newest_job_id", "choose_queue"]

log = logging.getLogger(__name__)


def choose_queue(session, device: str = "auto", *, cpu_queue: str | None = None,
                 settings=None) -> str:
    """The queue a new job's frames go to, from its spec's ``resources.device``.

    ``gpu`` and ``cpu`` name their queue (``gpu_queue``, else ``cpu_queue``/``queue``) whether or
    not a worker consumes it (the job's status then says it waits for one); ``auto`` takes the GPU
    queue while a worker with a fresh heartbeat consumes it, else the CPU queue.
    """
    s = settings or load_settings()
    cpu_queue = cpu_queue or s.queue
    if device == "cpu":
        return cpu_queue
    if device == "gpu":
        return s.gpu_queue
    since = ops.utcnow() - timedelta(seconds=s.worker_lost_s)
    live = queries.live_workers(session, since)
    gpu_alive = any(s.gpu_queue in {q.strip() for q in queues.split(",")}
                    for queues in live.values())
    return s.gpu_queue if gpu_alive else cpu_queue


def has_new_jobs(session, after: int = 0) -> bool:
    """True when a job newer than job id ``after`` waits to be dispatched (a cheap, read-only
    check).

    ``after`` is :func:`newest_job_id` at the last round: a job that round already saw and held
    back (its owner's job limit, no free place in its queue) stays ``queued``, and must not make
    every poll a full round.  (A submit that commits after a newer id did waits for the next
    round, at most ``dispatch_interval_s``.)
    """
    found = session.scalar(select(Job.id).where(Job.state == JobState.QUEUED.value,
                                                Job.id > after).limit(1))
    session.rollback()
    return found is not None


def newest_job_id(session) -> int:
    """The highest job id (0 without jobs): what a round about to start will see."""
    newest = session.scalar(select(func.max(Job.id)))
    session.rollback()
    return newest or 0


def dispatch_once(session, celery_app, *, max_batches: int | None = None,
                  queued_lease_s: float | None = None, running_lease_s: float | None = None,
                  max_attempts: int | None = None) -> int:
    """One round: re-queue stale frames, top up every active job's batches, finalise finished jobs.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
    celery_app : object with ``send_task(name, args=..., queue=...)``
    max_batches : int, optional
        Task messages of one job allowed in the broker (queued, not yet started) at once.  A
        message carries the pending frames of one shard of the output store
        (:mod:`blockreg.orchestrate.shards`), so the store fixes the frames per message.
    queued_lease_s, running_lease_s, max_attempts : optional
        See :func:`blockreg.db.workers.requeue_stale`.

    Every option left out comes from :mod:`blockreg.settings` (``max_batches_per_job``, ``queued_lease_s``, the derived ``running_lease_s``,
    ``max_attempts``).

    Returns
    -------
    int
        Number of task messages sent.
    """
    s = load_settings()
    max_batches = s.max_batches_per_job if max_batches is None else max_batches
    if max_batches < 1:
        raise ValueError(f"max_batches: must be at least 1, got {max_batches}")
    moved = workers.requeue_stale(
        session,
        queued_lease_s=s.queued_lease_s if queued_lease_s is None else queued_lease_s,
        running_lease_s=s.running_lease_s if running_lease_s is None else running_lease_s,
        max_attempts=s.max_attempts if max_attempts is None else max_attempts)
    if moved:
        log.warning("re-queued or failed %d frames whose message or worker was lost", moved)
    jobs = session.execute(select(Job.id, Job.queue).where(Job.state.in_(ACTIVE_JOB_STATES))
                           .order_by(Job.id)).all()
    session.rollback()
    # how many messages each job may have waiting: shared between users, then their jobs
    caps = fair_caps(session, [job_id for job_id, _ in jobs], limits_from_settings(max_batches))
    sent = 0
    for job_id, queue in jobs:
        sent += advance_phase(session, celery_app, job_id, queue)  # e.g. a series solve
        # covers a worker that died between completing the last frame and finalising
        final = ops.finalize_if_complete(session, job_id)
        if final is not None:
            after_finish(job_id, queries.get_job(session, job_id).output_path, final)
            continue
        # one message per shard of the output store, never two for one shard (orchestrate.shards)
        batches = enqueue_shards(session, job_id, caps.get(job_id, 0))
        for number, batch in enumerate(batches):
            try:
                celery_app.send_task(TASK_REGISTER_FRAMES, args=(job_id, batch), queue=queue)
            except Exception:  # noqa: BLE001 - broker down: give the frames back, retry next round
                log.exception("could not send frames of job %s; will retry", job_id)
                ops.release_frames(session, job_id, [i for b in batches[number:] for i in b])
                return sent
            sent += 1
    return sent
