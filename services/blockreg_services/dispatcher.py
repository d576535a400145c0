"""The dispatcher process: ``python -m blockreg_services.dispatcher``.

It runs :func:`blockreg.orchestrate.dispatch.dispatch_once` every ``dispatch_interval_s`` (re-queue
lost frames, top up each job's batches in the broker, finalise finished jobs), and at once when a
new job appears, which it checks for every ``dispatch_poll_s`` with one read-only query: the
coordinator only records a submitted job, and the first frames leave within that poll interval.

It also reconciles the database with the broker and the workers' heartbeats
(:class:`blockreg.orchestrate.reconcile.Reconciler`) when it becomes active and every
``reconcile_interval_s``: frames queued in no live message or running on a dead worker are sent
again within a minute of a Redis restart, a lost message or a killed worker.

Only one dispatcher acts at a time: the active one holds the database lock ``dispatcher`` (a
PostgreSQL advisory lock, or a file lock beside the SQLite file). Others stand by, try the lock
every ``dispatch_interval_s``, and the first to get it takes over when the active one dies. Even
two active dispatchers would never send a frame twice (a frame moves to ``queued`` in one
conditional UPDATE); the lock saves the duplicated work.

A compose service and a child of ``blockreg up``; SIGTERM or SIGINT stops it cleanly.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from blockreg import settings as _settings

__all__ = ["Dispatcher", "main"]

log = logging.getLogger("blockreg.dispatcher")


class Dispatcher:
    """The dispatch loop of one process (see the module docstring).

    Parameters
    ----------
    sessions : sessionmaker
    celery_app : object with ``send_task``
    lock : blockreg.db.locks.DatabaseLock
        The lock that makes this dispatcher the active one.
    settings : blockreg.settings.Settings, optional
        ``dispatch_interval_s``, ``dispatch_poll_s`` and the options of ``dispatch_once``.
    heartbeat : path-like, optional
        A file touched at every round, active or standing by (the container health check).
    """

    def __init__(self, sessions, celery_app, lock, settings: _settings.Settings | None = None,
                 heartbeat=None):
        self.sessions = sessions
        self.celery = celery_app
        self.lock = lock
        self.settings = settings or _settings.load()
        self.heartbeat = Path(heartbeat) if heartbeat else None
        self.active = False
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to return (from another thread or a signal handler)."""
        self._stopping.set()

    def run(self) -> None:
        """Dispatch until :meth:`stop`; release the lock on the way out."""
        from blockreg.orchestrate.dispatch import dispatch_once, has_new_jobs, newest_job_id
        from blockreg.orchestrate.reconcile import Reconciler

        s = self.settings
        reconciler = None
        options = dict(max_batches=s.max_batches_per_job,
                       queued_lease_s=s.queued_lease_s, running_lease_s=s.running_lease_s,
                       max_attempts=s.max_attempts)
        next_round = 0.0
        seen_job = 0  # the newest job id when the last round started
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= next_round:
                    self._beat()
                if not self._take_or_keep_lock(check=now >= next_round):
                    reconciler = None
                    self._stopping.wait(s.dispatch_interval_s)
                    continue
                if reconciler is None:
                    # just became active (started, or took over): reconcile at once, and again
                    # a second later, since a frame is given back when two passes agree
                    reconciler, next_reconcile, passes = Reconciler(self.celery, s), now, 0
                try:
                    with self.sessions() as session:
                        if now >= next_reconcile:
                            passes += 1
                            next_reconcile = now + (min(1.0, s.reconcile_interval_s)
                                                    if passes == 1 else s.reconcile_interval_s)
                            if passes == 1:
                                reconciler.prune(session)
                            if reconciler.run(session):
                                next_round = now  # send the returned frames in this round
                        if now >= next_round or has_new_jobs(session, seen_job):
                            newest = newest_job_id(session)
                            dispatch_once(session, self.celery, **options)
                            seen_job, next_round = newest, now + s.dispatch_interval_s
                except Exception:  # noqa: BLE001 - the loop must survive a DB or broker hiccup
                    log.exception("dispatch round failed")
                    next_round = now + s.dispatch_interval_s
                self._stopping.wait(s.dispatch_poll_s)
        finally:
            self.lock.release()
            self.active = False

    def _take_or_keep_lock(self, check: bool) -> bool:
        if not self.active:
            if self.lock.acquire(blocking=False):
                self.active = True
                log.info("dispatcher active (holds the database lock)")
            return self.active
        if check and not self.lock.held():
            self.active = False
            log.warning("dispatcher lost its database lock; standing by")
        return self.active

    def _beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
            self.heartbeat.touch()


def heartbeat_is_fresh(path, max_age_s: float) -> bool:
    """True when ``path`` was touched within ``max_age_s`` seconds."""
    try:
        return time.time() - Path(path).stat().st_mtime <= max_age_s
    except OSError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blockreg_services.dispatcher",
        description="blockreg dispatcher: feeds pending frames to the queue; one acts at a time")
    parser.add_argument("--heartbeat", metavar="FILE",
                        help="touch FILE every round (for a container health check)")
    parser.add_argument("--check-heartbeat", metavar="FILE",
                        help="exit 0 if FILE is fresh, 1 if not (the health check itself)")
    args = parser.parse_args(argv)
    s = _settings.load()
    if args.check_heartbeat:
        return 0 if heartbeat_is_fresh(args.check_heartbeat, 5 * s.dispatch_interval_s + 30) else 1
    logging.basicConfig(level=s.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from blockreg.celery_app import make_celery
    from blockreg.db import make_engine, session_factory
    from blockreg.db.locks import DatabaseLock

    engine = make_engine(s.database_url)
    dispatcher = Dispatcher(session_factory(engine), make_celery(settings=s),
                            DatabaseLock(s.database_url, "dispatcher"), s,
                            heartbeat=args.heartbeat)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: dispatcher.stop())
    log.info("dispatcher started (pid %s)", os.getpid())
    try:
        dispatcher.run()
    finally:
        engine.dispose()
    log.info("dispatcher stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
