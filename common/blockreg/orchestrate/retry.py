"""Retry what fails for a passing reason (a database restart or lock, an NFS hiccup) before a frame
is failed for it.

A worker's reads and writes meet transient errors that say nothing about the frame: PostgreSQL
restarting (``OperationalError``), SQLite busy beyond its timeout, a network filesystem answering
``EIO``, ``ESTALE`` or ``ETIMEDOUT`` for a moment.  Failing the frame for them would turn a
minute's outage into failed jobs; :func:`retry_transient` tries again with exponential backoff and
lets every other error through at once.
"""
from __future__ import annotations

import errno
import logging
import time

__all__ = ["is_transient", "retry_transient", "DELAYS_S", "TRANSIENT_ERRNOS"]

log = logging.getLogger(__name__)

# the waits between attempts: about 30 s in all, longer than a database failover or NFS retry
DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.ESTALE, errno.EAGAIN, errno.EBUSY, errno.EINTR,
                              errno.ETIMEDOUT, errno.ENOLCK, errno.ECONNRESET,
                              errno.ECONNREFUSED, errno.EHOSTUNREACH})


def is_transient(exc: BaseException) -> bool:
    """True for an error worth trying again: a lost or busy database, a flaky file system."""
    from sqlalchemy.exc import DisconnectionError, OperationalError

    if isinstance(exc, (OperationalError, DisconnectionError)):
        return True
    if isinstance(exc, TimeoutError):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def retry_transient(fn, *args, session=None, delays=None, sleep=None, what=None, **kwargs):
    """``fn(*args, **kwargs)``, tried again after each delay of ``delays`` while it raises a
    transient error (:func:`is_transient`); the last error, or any other, propagates.

    ``session`` (a SQLAlchemy session) is rolled back before each new attempt, so a broken
    transaction does not fail the next one.  ``delays`` default to :data:`DELAYS_S`.
    """
    delays = DELAYS_S if delays is None else delays
    sleep = time.sleep if sleep is None else sleep
    for attempt in range(len(delays) + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == len(delays) or not is_transient(exc):
                raise
            log.warning("%s failed (%s: %s); trying again in %g s (attempt %d of %d)",
                        what or getattr(fn, "__name__", "call"), type(exc).__name__, exc,
                        delays[attempt], attempt + 2, len(delays) + 1)
            if session is not None:
                try:
                    session.rollback()
                except Exception:  # noqa: BLE001 - the connection itself may be gone
                    pass
            sleep(delays[attempt])
