"""The frame task: a Celery message in, :func:`blockreg.orchestrate.frames.run_frames` called.

Each pool child builds its own database engine (pooled connections never cross a fork) and
forgets the job contexts it inherited; the work itself is in :mod:`blockreg.orchestrate.frames`.
"""
from __future__ import annotations

import logging
import os
import socket

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import (
    celeryd_after_setup,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from blockreg import settings
from blockreg.celery_app import TASK_REGISTER_FRAMES, TASK_SOLVE_WINDOW
from blockreg.orchestrate import device
from blockreg.orchestrate.frames import forget_contexts, run_frames
from blockreg.orchestrate.heartbeat import Heartbeat, process_name

from . import app

__all__ = ["register_frames", "run_frames"]

log = logging.getLogger(__name__)

_sessions = None
_heartbeat: Heartbeat | None = None
# the node name and queues of this worker, set in the main process before the pool forks
_node = {"name": None, "queues": None}
# the soft time limit ends the batch: the frame being run fails, the rest go back at once
STOP_ON = {SoftTimeLimitExceeded: "task time limit exceeded"}


@celeryd_after_setup.connect
def _remember_node(sender, instance, **_):
    _node["name"] = str(sender)
    _node["queues"] = ",".join(sorted(instance.app.amqp.queues.consume_from or ())) or None


@worker_process_init.connect
def _init_process(**_):
    global _sessions, _heartbeat
    _sessions = None
    forget_contexts()
    s = settings.load()
    # CUDA starts here, in the pool process, never in the parent that forks it
    described = device.setup(s.worker_device, s.test_array_module)
    try:
        sessions = _session_factory()
    except ValueError:  # no database configured: every task will report it
        log.exception("worker process has no database")
    else:
        # beats while this process registers frames: the dispatcher tells it from a dead one
        _heartbeat = Heartbeat(sessions, process_name(_node["name"] or socket.gethostname()),
                               _node["queues"] or s.queue, s.heartbeat_interval_s,
                               device=described).start()
    _warm_imports()


@worker_process_shutdown.connect
def _stop_process(**_):
    # A process that stops cleanly says so at once: otherwise its fresh heartbeat keeps counting
    # it alive for worker_lost_s, and `resources.device: auto` would route new jobs to a queue
    # nobody consumes any more.
    if _heartbeat is not None:
        _heartbeat.stop()
        _forget(_heartbeat.name)


@worker_shutdown.connect
def _stop_node(**_):
    # the main process outlives its pool: it removes every row of its node (a pool process killed
    # during the shutdown never ran its own handler)
    if _node["name"]:
        _forget(f"{_node['name']}:%", like=True)


def _forget(name: str, *, like: bool = False) -> None:
    from blockreg.db import workers

    try:
        with _session_factory()() as session:
            workers.forget_heartbeat(session, name, like=like)
    except Exception as exc:  # noqa: BLE001 - best effort: the reconciler's timeout still applies
        log.warning("heartbeat of %s not removed: %s", name, exc)


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


@app.task(name=TASK_REGISTER_FRAMES, bind=True, ignore_result=True)
def register_frames(self, job_id: int, frames: list[int]) -> None:
    """Celery task: register a small batch of frames of one job (see :func:`run_frames`)."""
    # the process, not only the node: the frames of a replaced pool process must not look alive
    worker = process_name(self.request.hostname or socket.gethostname(), os.getpid())
    queue = (self.request.delivery_info or {}).get("routing_key") or "cpu"
    counts = run_frames(int(job_id), list(frames), worker=worker, sessions=_session_factory(),
                        queue=queue, task_id=self.request.id, stop_on=STOP_ON)
    log.info("job %s frames %s: %s", job_id, frames, counts)


@app.task(name=TASK_SOLVE_WINDOW, bind=True, ignore_result=True)
def solve_series_window(self, job_id: int, index: int) -> None:
    """Celery task: one window of a two-stage job's series solve (orchestrate.phases)."""
    from blockreg.orchestrate.phases import run_window

    outcome = run_window(int(job_id), int(index), sessions=_session_factory())
    log.info("job %s series window %s: %s", job_id, index, outcome)
