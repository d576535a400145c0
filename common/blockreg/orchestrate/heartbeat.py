"""The heartbeat of a worker process: a thread that records it alive every few seconds, also while
the process registers a frame, so the reconciler (:mod:`.reconcile`) can tell a busy worker from a
dead one within ``worker_lost_s`` instead of after the running lease (hours).

The name a process records is also what it writes on the frames it claims (``Frame.worker``):
:func:`process_name` adds the pid to the Celery node name, because one node replaces its pool
process after a crash, and the frames of the dead process must not look alive through the new one.
"""
from __future__ import annotations

import logging
import os
import threading

__all__ = ["process_name", "Heartbeat"]

log = logging.getLogger(__name__)


def process_name(node: str, pid: int | None = None) -> str:
    """``node:pid``, the name of one worker process (``embedded-1@host:4242``)."""
    return f"{node}:{os.getpid() if pid is None else pid}"


class Heartbeat:
    """A daemon thread writing this process's ``worker_heartbeat`` row every ``interval_s``.

    Parameters
    ----------
    sessions : callable
        Session factory of the service database.
    name : str
        :func:`process_name` of this process.
    queues : str
        The queues it consumes, comma-separated (the coordinator tells a job with no live worker
        on its queue by this).
    interval_s : float
    device : str
    """

    def __init__(self, sessions, name: str, queues: str, interval_s: float, device: str = "cpu"):
        self.sessions = sessions
        self.name = name
        self.queues = queues
        self.interval_s = interval_s
        self.device = device
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Write the row once."""
        from ..db import workers

        with self.sessions() as session:
            workers.record_heartbeat(session, hostname=self.name, pid=os.getpid(), queues=self.queues,
                                 device=self.device)

    def start(self) -> "Heartbeat":
        self._thread = threading.Thread(target=self._run, name="blockreg-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried, never fatal
                log.warning("heartbeat not written: %s", exc)
            self._stop.wait(self.interval_s)
