"""Why an active job is not progressing: the ``waiting`` / ``waiting_reason`` of a job's status.

A job whose queue has no live worker (no fresh heartbeat naming the queue) or whose broker cannot
be reached would otherwise show a frozen ``running``.  The coordinator computes the reason on each
read: one small query of the heartbeats and a broker check cached for a few seconds.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from blockreg import settings as _settings
from blockreg.states import ACTIVE_JOB_STATES

__all__ = ["waiting_reason", "Waiting"]

BROKER_CHECK_CACHE_S = 3.0


def waiting_reason(state: str, queue: str, live_queues: set[str], broker_ok: bool) -> str | None:
    """What an active job waits for, or None (a finished job, or nothing missing)."""
    if state not in ACTIVE_JOB_STATES:
        return None
    if not broker_ok:
        return "broker unreachable"
    if queue not in live_queues:
        return f"no live worker on queue {queue}"
    return None


class Waiting:
    """The per-request view of what jobs wait for (see :func:`waiting_reason`).

    Parameters
    ----------
    services : blockreg_services.coordinator.Services
    session : sqlalchemy.orm.Session
    """

    _lock = threading.Lock()
    _broker_checked: dict[int, tuple[float, bool]] = {}

    def __init__(self, services, session):
        self.services = services
        self.session = session
        self._live: set[str] | None = None
        self._broker: bool | None = None
        self._over: set[int] | None = None

    def live_queues(self) -> set[str]:
        from blockreg.db import ops, queries

        if self._live is None:
            lost_s = _settings.get("worker_lost_s")
            since = ops.utcnow() - timedelta(seconds=lost_s)
            workers = queries.live_workers(self.session, since)
            self._live = {q.strip() for queues in workers.values() for q in queues.split(",")}
        return self._live

    def broker_ok(self) -> bool:
        if self._broker is None:
            key = id(self.services)
            now = time.monotonic()
            with self._lock:
                checked = self._broker_checked.get(key)
            if checked is not None and now - checked[0] < BROKER_CHECK_CACHE_S:
                self._broker = checked[1]
            else:
                self._broker = self.services.broker_reachable(timeout=1.0)
                with self._lock:
                    self._broker_checked[key] = (now, self._broker)
        return self._broker

    def fields(self, job) -> dict:
        """``{"waiting": bool, "waiting_reason": str | None}`` of a job row."""
        if job.state not in ACTIVE_JOB_STATES:
            return {"waiting": False, "waiting_reason": None}
        reason = waiting_reason(job.state, job.queue, self.live_queues(), self.broker_ok())
        if reason is None:
            reason = self.user_limit(job)
        return {"waiting": reason is not None, "waiting_reason": reason}

    def user_limit(self, job) -> str | None:
        """``"user limit"`` for a job past its owner's ``user_max_jobs`` older active jobs (the
        dispatcher sends it nothing until one ends: blockreg.orchestrate.fairness)."""
        return "user limit" if job.id in self.over_user_limit() else None

    def over_user_limit(self) -> set[int]:
        """The active jobs the dispatcher holds back by the user limit (one query per request,
        however many jobs a listing shows; the dispatcher's own rule)."""
        if self._over is None:
            from sqlalchemy import select

            from blockreg.db.models import Job
            from blockreg.orchestrate.fairness import jobs_over_user_limit

            rows = self.session.execute(select(Job.id, Job.owner_id)
                                        .where(Job.state.in_(ACTIVE_JOB_STATES))).all()
            self._over = jobs_over_user_limit([_Active(job_id, owner) for job_id, owner in rows],
                                              _settings.get("user_max_jobs"))
        return self._over


@dataclass(frozen=True)
class _Active:
    job_id: int
    owner: int | None
