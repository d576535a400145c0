"""The frame task: thin glue between the queue, the job plan, the algorithm, Zarr and the DB.

Per worker process, the context of a job (the plan, the prepared algorithm on the fixed image the
coordinator stored, the open output store) is built once and cached, so a batch of frames, and
every later batch of the same job, pays only for reading and registering its frames.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from blockreg.celery_app import TASK_REGISTER_FRAMES

from . import app

log = logging.getLogger(__name__)

_CACHE_JOBS = 2  # job contexts kept per process (a context holds FFT plans of the fixed image)
_contexts: "OrderedDict[tuple, _JobContext]" = OrderedDict()
_sessions = None


@worker_process_init.connect
def _init_process(**_):
    # The engine is created here, in the pool child: pooled connections must never cross a fork.
    global _sessions
    _sessions = None
    _contexts.clear()
    try:
        _session_factory()
    except ValueError:  # no database configured: every task will report it
        log.exception("worker process has no database")
    _warm_imports()


def _warm_imports():
    # Import the registration stack when the pool child starts rather than inside the first task
    # (~2 s of imports made a fresh stack's first job slow). Imports only: no CUDA, no Zarr I/O.
    import blockreg.algorithms.apertures  # noqa: F401
    import blockreg.jobs  # noqa: F401
    import blockreg.reg.autolambda  # noqa: F401
    import blockreg.store  # noqa: F401


def _session_factory():
    global _sessions
    if _sessions is None:
        from blockreg.db import make_engine, session_factory

        _sessions = session_factory(make_engine())
    return _sessions


@dataclass
class _JobContext:
    plan: Any
    algorithm: Any
    store: Any
    wanted: tuple


def _build_context(job) -> _JobContext:
    import numpy as np

    from blockreg.jobs import plan_job
    from blockreg.jobspec import JobSpec
    from blockreg.store import open_store

    spec = JobSpec.model_validate(job.spec)
    store = open_store(job.output_path, "r+")
    # register against the exact bytes the coordinator stored, not a re-computation
    fixed = np.asarray(store["fixed"][...])
    plan = plan_job(spec, fixed=fixed)
    algorithm = plan.make_algorithm(fixed)
    algorithm.prepare()
    return _JobContext(plan, algorithm, store, tuple(spec.monitor))


def _context(session, job_id: int) -> _JobContext:
    from blockreg.db.queries import get_job

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
    while len(_contexts) > _CACHE_JOBS:
        _, old = _contexts.popitem(last=False)
        old.algorithm.close()
    return ctx


def _drop_contexts(job_id: int) -> None:
    for key in [k for k in _contexts if k[0] == job_id]:
        _contexts.pop(key).algorithm.close()


def _scalars(values: dict) -> dict:
    import numpy as np

    return {name: float(v) for name, v in values.items() if np.ndim(v) == 0}


def run_frames(job_id: int, frames, *, worker: str, sessions=None, queue: str = "cpu",
               task_id: str | None = None) -> dict:
    """Register ``frames`` (output positions) of job ``job_id``; return counts by outcome.

    Frames already done, being run elsewhere, or of a job no longer active are skipped.  A frame
    whose registration raises is recorded as failed with the message; the others go on.  After the
    batch, the job is finalised if this batch accounted for its last frame.
    """
    from blockreg._backend import to_host
    from blockreg.db import ops
    from blockreg.jobs import read_frame
    from blockreg.store import write_frame

    sessions = sessions or _session_factory()
    counts = {"done": 0, "failed": 0, "skipped": 0}
    with sessions() as session:
        ops.record_heartbeat(session, hostname=worker, pid=os.getpid(), queues=queue,
                             device="cpu")
        ctx = None
        context_error = None
        frames = [int(i) for i in frames]
        for position, index in enumerate(frames):
            source_t = ops.claim_frame(session, job_id, index, worker, task_id=task_id)
            if source_t is None:
                counts["skipped"] += 1
                continue
            start = time.perf_counter()
            try:
                if context_error is not None:
                    raise context_error
                if ctx is None:
                    ctx = _context(session, job_id)
                frame = read_frame(ctx.plan, source_t)
                values = ctx.algorithm.run_frame(frame, source_t, ctx.wanted)
                values = {name: to_host(v) for name, v in values.items()}
                write_frame(ctx.store, index, values)
                ops.complete_frame(session, job_id, index, _scalars(values),
                                   duration_s=time.perf_counter() - start)
                counts["done"] += 1
            except SoftTimeLimitExceeded:
                session.rollback()
                ops.fail_frame(session, job_id, index, "task time limit exceeded",
                               duration_s=time.perf_counter() - start)
                counts["failed"] += 1
                # the frames this batch will not reach go back to the dispatcher now, not after
                # the queued lease
                ops.release_frames(session, job_id, frames[position + 1:])
                break
            except Exception as exc:  # noqa: BLE001 - recorded on the frame, the batch goes on
                if ctx is None:
                    context_error = exc
                log.exception("job %s frame %s failed", job_id, index)
                session.rollback()
                ops.fail_frame(session, job_id, index, f"{type(exc).__name__}: {exc}",
                               duration_s=time.perf_counter() - start)
                counts["failed"] += 1
        final = ops.finalize_if_complete(session, job_id)
        if final is not None:
            log.info("job %s finished: %s", job_id, final)
            _drop_contexts(job_id)
    return counts


@app.task(name=TASK_REGISTER_FRAMES, bind=True, ignore_result=True)
def register_frames(self, job_id: int, frames: list[int]) -> None:
    """Celery task: register a small batch of frames of one job (see :func:`run_frames`)."""
    worker = self.request.hostname or socket.gethostname()
    queue = (self.request.delivery_info or {}).get("routing_key") or "cpu"
    counts = run_frames(int(job_id), list(frames), worker=worker, queue=queue,
                        task_id=self.request.id)
    log.info("job %s frames %s: %s", job_id, frames, counts)
