"""Registering a batch of one job's frames against the database and the job's output store.

:func:`run_frames` claims the frames of its batch (one shard of the output store, see
:mod:`.batch`), registers them, writes their results to the Zarr store and records them done (or
failed) in the database; the Celery task is a thin wrapper around it.

Per process, the context of a job (the plan, the prepared algorithm on the fixed image the
submit stored, the open output store) is built once and cached, so a batch of frames, and every
later batch of the same job, pays only for reading and registering its frames.  A process that
forks workers calls :func:`forget_contexts` in each child.
"""
from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import device

__all__ = ["run_frames", "forget_contexts", "CACHED_JOBS"]

log = logging.getLogger(__name__)

CACHED_JOBS = 2  # job contexts kept per process (a context holds FFT plans of the fixed image)
_contexts: "OrderedDict[tuple, _JobContext]" = OrderedDict()


@dataclass
class _JobContext:
    plan: Any
    algorithm: Any
    store: Any
    wanted: tuple


def forget_contexts() -> None:
    """Drop every cached job context without closing it (in a freshly forked child)."""
    _contexts.clear()


def _build_context(job) -> _JobContext:
    from ..jobs import plan_job
    from ..jobspec import JobSpec
    from ..store import member, open_store

    from ..paths import check_still_inside

    spec = JobSpec.model_validate(job.spec)
    check_still_inside(job.output_path, "output.path")  # not through a link swapped in since
    store = open_store(job.output_path, "r+")
    # register against the exact bytes the submit stored, not a re-computation
    stored = member(store, "fixed")  # none for a warp job: it registers nothing
    fixed = None if stored is None else np.asarray(stored[...])
    plan = plan_job(spec, fixed=fixed)
    if fixed is not None and device.on_gpu():
        # on a GPU worker the algorithm holds its fixed image (and so its plans) on the device
        from ..jobs import build_algorithm

        fixed = device.upload(np.asarray(fixed, dtype=np.float32))
        algorithm = build_algorithm(spec, fixed, plan.nodes, plan.preprocess)
    else:
        algorithm = plan.make_algorithm(fixed)
    algorithm.prepare()
    return _JobContext(plan, algorithm, store, tuple(spec.monitor))


def _context(session, job_id: int) -> _JobContext:
    from ..db.queries import get_job

    job = get_job(session, job_id)
    if job is None:
        raise LookupError(f"job {job_id} does not exist")
    # ids repeat when a database is recreated (a fresh embedded stack, tests): the output store
    # and creation time tell two jobs with the same id apart
    key = (job_id, job.output_path, str(job.created_at))
    ctx = _contexts.get(key)
    if ctx is not None:
        _contexts.move_to_end(key)
        return ctx
    ctx = _build_context(job)
    _contexts[key] = ctx
    while len(_contexts) > CACHED_JOBS:
        _, old = _contexts.popitem(last=False)
        old.algorithm.close()
        device.release()
    return ctx


def _drop_contexts(job_id: int) -> None:
    for key in [k for k in _contexts if k[0] == job_id]:
        _contexts.pop(key).algorithm.close()
    device.release()      # a finished job's device memory goes back


def _scalars(values: dict) -> dict:
    return {name: float(v) for name, v in values.items() if np.ndim(v) == 0}


def run_frames(job_id: int, frames, *, worker: str, sessions, queue: str = "cpu",
               task_id: str | None = None, stop_on: dict | None = None) -> dict:
    """Register ``frames`` (output positions) of job ``job_id``; return counts by outcome.

    Frames already done, being run elsewhere, or of a job no longer active are skipped.  A frame
    whose registration raises is recorded as failed with the message; the others go on.  After the
    batch, the job is finalised if this batch accounted for its last frame.

    Parameters
    ----------
    job_id : int
    frames : sequence of int
        Output positions, in the order to run them.
    worker : str
        Recorded on each claimed frame and in this process's heartbeat.
    sessions : callable
        A session factory (``sessionmaker``) of the service's database.
    queue : str
        The queue the batch came from (for the heartbeat).
    task_id : str, optional
        The message id: a redelivery of the same message may take back its running frames.
    stop_on : dict of exception type -> str, optional
        Exceptions that end the batch (e.g. the task queue's soft time limit): the frame being
        run fails with the given message and the frames not reached go back to the dispatcher
        at once instead of after the queued lease.

    Returns
    -------
    dict
        ``{"done": n, "failed": n, "skipped": n}``.
    """
    from .._backend import to_host
    from ..db import ops, workers
    from ..jobs import read_frame
    from .batch import ShardBuffer, claim_batch, release_claimed
    from .retry import retry_transient

    stop_on = dict(stop_on or {})
    stopping = tuple(stop_on)
    counts = {"done": 0, "failed": 0, "skipped": 0}
    with sessions() as session:
        workers.record_heartbeat(session, hostname=worker, pid=os.getpid(), queues=queue,
                             device=device.describe())
        ctx = None
        context_error = None
        frames = [int(i) for i in frames]
        # the whole batch (one shard) is claimed first: the shard is busy until the task ends
        claimed = retry_transient(claim_batch, session, job_id, frames, worker, task_id,
                                  session=session)
        counts["skipped"] = len(frames) - len(claimed)
        todo = [index for index in frames if index in claimed]
        buffer = ShardBuffer()
        stopped = []  # a stop (time limit) that came while writing: the batch ends after it

        def flush():
            try:
                # writes are idempotent, and a frame is recorded done once: a retry is safe
                counts["done"] += retry_transient(buffer.flush, ctx.store, session, job_id,
                                                  _scalars, session=session, what="writing")
            except Exception as exc:  # noqa: BLE001 - the store refused: those frames failed
                if isinstance(exc, stopping) and not stopped:
                    # the buffered frames are registered: write them (the soft limit fires
                    # once, the hard one a minute later) rather than record them failed; the
                    # batch then ends
                    session.rollback()
                    stopped.append(exc)
                    flush()
                    return
                log.exception("job %s: writing frames to the store failed", job_id)
                session.rollback()
                for index, _, duration in buffer.items:
                    ops.fail_frame(session, job_id, index, f"{type(exc).__name__}: {exc}",
                                   duration_s=duration)
                    counts["failed"] += 1
                buffer.items, buffer._bytes = [], 0

        for position, index in enumerate(todo):
            if stopped:  # the time limit came during a write: the rest go back at once
                release_claimed(session, job_id, todo[position:], worker)
                break
            source_t = claimed[index]
            start = time.perf_counter()
            try:
                if context_error is not None:
                    raise context_error
                if ctx is None:
                    ctx = retry_transient(_context, session, job_id, session=session)
                frame = retry_transient(read_frame, ctx.plan, source_t)
                values = ctx.algorithm.run_frame(frame, source_t, ctx.wanted)
                values = {name: to_host(v) for name, v in values.items()}
                buffer.add(index, values, time.perf_counter() - start)
                if buffer.due():
                    flush()
            except stopping as exc:
                session.rollback()
                if ctx is not None:
                    flush()
                message = next(m for kind, m in stop_on.items() if isinstance(exc, kind))
                ops.fail_frame(session, job_id, index, message,
                               duration_s=time.perf_counter() - start)
                counts["failed"] += 1
                release_claimed(session, job_id, todo[position + 1:], worker)
                break
            except Exception as exc:  # noqa: BLE001 - recorded on the frame, the batch goes on
                if device.is_device_error(exc):
                    # the job's device state may be broken: what is done is written, and the
                    # context (plans, device memory) is rebuilt for the next frame
                    session.rollback()
                    if ctx is not None:
                        flush()
                    _drop_contexts(job_id)
                    ctx = None
                elif ctx is None:
                    context_error = exc
                log.exception("job %s frame %s failed", job_id, index)
                session.rollback()
                ops.fail_frame(session, job_id, index, f"{type(exc).__name__}: {exc}",
                               duration_s=time.perf_counter() - start)
                counts["failed"] += 1
        if ctx is not None:
            flush()
        final = ops.finalize_if_complete(session, job_id)
        if final is not None:
            log.info("job %s finished: %s", job_id, final)
            _drop_contexts(job_id)
            from ..db.queries import get_job
            from .finish import after_finish

            after_finish(job_id, get_job(session, job_id).output_path, final)
    return counts
