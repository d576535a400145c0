"""Reconcile the database with the broker and the live workers: frames that are not really queued
or running go back to ``pending``, promptly.

The database is the truth; the broker only delivers and may forget (a Redis restart without
persistence, a message lost between the dispatcher's commit and its send, a worker killed while it
held a message).  Leases alone recover from all of that only after the longest legitimate wait (a
batch may run for hours), so the dispatcher also compares what the database says with what it can
see, at start and every ``reconcile_interval_s``:

- a frame **queued** for longer than ``queued_grace_s`` must be in a message the broker still holds:
  one waiting in its queue, or one delivered (kombu's ``unacked`` hash) to a worker that is alive.
  A delivered message counts as alive while a frame claimed under its id belongs to a live worker,
  or for ``worker_lost_s`` after delivery while none is claimed yet.  Otherwise the frame goes back
  to pending and the next round sends it again.
- a frame **running** for longer than ``worker_lost_s`` must belong to a worker process whose
  heartbeat (``worker_heartbeat``, written by a thread of every worker process, even while busy)
  is younger than ``worker_lost_s``.  Otherwise its worker died: the frame goes back to pending,
  or fails once it has been claimed ``max_attempts`` times (a frame that kills its worker).

A frame is judged lost only when two consecutive passes agree, so a message caught between the
broker's queue and its ``unacked`` hash (or a claim in flight) is never mistaken for a lost one.
Sending a frame twice would still be harmless: a claim is one conditional UPDATE, so a frame runs
under one worker at a time and is counted done once.

The decisions (:func:`lost_queued`, :func:`lost_running`) are pure functions; :class:`Reconciler`
reads the database and the broker and applies them.
"""
from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from ..celery_app import TASK_REGISTER_FRAMES

__all__ = ["BrokerMessage", "decode_message", "broker_messages", "lost_queued", "lost_running",
           "Reconciler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerMessage:
    """A frame message the broker holds.

    ``delivered_at`` is the time (``time.time()``) a worker took it, or None while it waits in
    its queue.
    """

    task_id: str
    job_id: int
    frames: tuple[int, ...]
    delivered_at: float | None = None


def decode_message(payload, delivered_at: float | None = None) -> BrokerMessage | None:
    """The frame message in a kombu Redis payload (JSON text), or None if it is not one.

    A queue entry is the message itself; an ``unacked`` entry is ``[message, exchange,
    routing_key]``.  The body is Celery's protocol 2: ``[args, kwargs, embed]``, base64-encoded.
    """
    try:
        data = json.loads(payload)
        if isinstance(data, list):
            data = data[0]
        headers = data.get("headers") or {}
        if headers.get("task") != TASK_REGISTER_FRAMES:
            return None
        body = data["body"]
        if (data.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        job_id, frames = int(args[0]), tuple(int(i) for i in args[1])
        return BrokerMessage(str(headers["id"]), job_id, frames, delivered_at)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def broker_messages(celery_app, queues, timeout: float = 2.0) -> list[BrokerMessage] | None:
    """Every frame message in the Redis broker: waiting in ``queues`` or delivered, not acked.

    Returns None when the broker cannot be read (down, or not Redis): then nothing is known and
    the reconciler judges no queued frame.
    """
    connect = getattr(celery_app, "connection_for_read", None)
    if connect is None:  # a stand-in without a broker (unit tests)
        return None
    try:
        with connect() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            channel = conn.default_channel
            client = channel.client
            if not hasattr(channel, "unacked_key"):
                return None
            # the queue first: a message moves queue -> unacked, so read in that order it is
            # seen at least once (except inside the move itself, which the second pass covers)
            waiting = []
            for queue in sorted(set(queues)):
                for priority in channel.priority_steps:
                    waiting += client.lrange(channel._q_for_pri(queue, priority), 0, -1)
            delivered = client.hgetall(channel.unacked_key)
            since = dict(client.zrange(channel.unacked_index_key, 0, -1, withscores=True))
    except Exception as exc:  # noqa: BLE001 - an unreadable broker is "unknown", not an error
        log.debug("broker not readable: %s", exc)
        return None
    messages = [decode_message(p) for p in waiting]
    messages += [decode_message(p, since.get(tag, 0.0)) for tag, p in delivered.items()]
    return [m for m in messages if m is not None]


def lost_queued(queued, messages, claimed_by, live, now: float,
                delivery_grace_s: float) -> set[tuple[int, int]]:
    """Queued frames no live message carries.

    Parameters
    ----------
    queued : iterable of (job_id, index)
        Frames queued in the database (past the grace).
    messages : list of BrokerMessage
        What the broker holds.
    claimed_by : dict of task_id -> set of worker names
        The workers that claimed frames under each delivered message.
    live : set of str
        Worker processes with a fresh heartbeat.
    now : float
        ``time.time()``.
    delivery_grace_s : float
        A delivered message none of whose frames is claimed yet counts as alive this long.
    """
    carried = set()
    for m in messages:
        if m.delivered_at is not None:
            workers = claimed_by.get(m.task_id, set())
            alive = (workers & live) if workers else (now - m.delivered_at < delivery_grace_s)
            if not alive:
                continue
        carried.update((m.job_id, i) for i in m.frames)
    return {(job_id, index) for job_id, index in queued if (job_id, index) not in carried}


def lost_running(running, live) -> set[tuple[int, int, str]]:
    """Running frames ``(job_id, index, worker)`` whose worker has no fresh heartbeat."""
    return {(job_id, index, worker) for job_id, index, worker in running if worker not in live}


class Reconciler:
    """Reconcile passes of one dispatcher (it remembers the previous pass's suspects).

    Parameters
    ----------
    celery_app : Celery app (its broker is read), or anything with ``send_task`` (then only the
        running frames are reconciled)
    settings : blockreg.settings.Settings
        ``queued_grace_s``, ``worker_lost_s``, ``max_attempts``, ``queue``.
    """

    def __init__(self, celery_app, settings):
        self.celery = celery_app
        self.settings = settings
        self._suspects: set = set()

    def run(self, session) -> int:
        """One pass: return the number of frames given back to pending (or failed)."""
        from ..db import ops, queries, workers
        from ..db.models import Job
        from ..states import ACTIVE_JOB_STATES
        from sqlalchemy import select

        s = self.settings
        now_db = ops.utcnow()
        now = time.time()
        queued_before = now_db - timedelta(seconds=s.queued_grace_s)
        running_before = now_db - timedelta(seconds=s.worker_lost_s)
        live = set(queries.live_workers(session, running_before))
        running = [(j, i, w) for j, i, w, _ in
                   queries.open_frames(session, "running", running_before)]
        suspects = {("running", f) for f in lost_running(running, live)}
        queued = [(j, i) for j, i, _, _ in queries.open_frames(session, "queued", queued_before)]
        if queued:
            queues = set(session.scalars(select(Job.queue).where(
                Job.state.in_(ACTIVE_JOB_STATES)))) | {s.queue}
            messages = broker_messages(self.celery, queues)
            if messages is not None:
                delivered = {m.task_id for m in messages if m.delivered_at is not None}
                claimed_by = queries.task_workers(session, delivered)
                suspects |= {("queued", f) for f in
                             lost_queued(queued, messages, claimed_by, live, now, s.worker_lost_s)}
        session.rollback()
        confirmed, self._suspects = suspects & self._suspects, suspects
        if not confirmed:
            return 0
        moved = workers.return_lost_frames(
            session, queued=[f for kind, f in confirmed if kind == "queued"],
            running=[f for kind, f in confirmed if kind == "running"],
            queued_before=queued_before, running_before=running_before,
            max_attempts=s.max_attempts)
        if moved:
            n_running = sum(kind == "running" for kind, _ in confirmed)
            log.warning("reconciled %d frames: %d queued in no live message, %d running on a "
                        "worker without heartbeat; they are sent again", moved,
                        len(confirmed) - n_running, n_running)
        return moved

    def prune(self, session, older_than_s: float = 86400.0) -> int:
        """Forget heartbeats of processes silent for ``older_than_s`` (a day by default)."""
        from ..db import ops, workers

        return workers.prune_heartbeats(session, ops.utcnow() - timedelta(seconds=older_than_s))
