"""Named locks that every process using one database sees: one migrator, one active dispatcher.

PostgreSQL: a session-level advisory lock on a connection of its own. The server releases it when
that connection ends, so a process that dies (even by SIGKILL) frees the lock at once and a
waiting process takes over. SQLite: an exclusive ``flock`` on a file beside the database file
(never the database file itself: closing any descriptor of it would drop SQLite's own locks of
this process); the kernel releases it with the process.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.pool import NullPool

from .session import database_url, make_engine, sqlite_path

__all__ = ["DatabaseLock"]

log = logging.getLogger(__name__)


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL's advisory lock key type)."""
    digest = hashlib.blake2b(f"blockreg:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class DatabaseLock:
    """An exclusive lock called ``name`` on the database at ``url``.

    Use ``with DatabaseLock(url, "migrate"):`` to wait for it, or :meth:`acquire` with
    ``blocking=False`` to try, then :meth:`held` to check it is still ours (a PostgreSQL lock is
    lost with its connection).

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL (default: the ``database_url`` setting); PostgreSQL or SQLite.
    name : str
        What the lock protects; processes using the same name exclude each other.
    """

    def __init__(self, url: str | None = None, name: str = "lock"):
        self.url = database_url(url)
        self.name = name
        self._engine = None
        self._connection = None
        self._file = None
        self._local = None  # in-memory SQLite: one process, so a thread lock will do
        self._held = False
        self._path = sqlite_path(self.url)
        if self.url.startswith("postgresql"):
            self._kind = "postgresql"
        elif self.url.startswith("sqlite"):
            self._kind = "file" if self._path is not None else "memory"
        else:
            raise ValueError(f"database url: locks need PostgreSQL or SQLite, got {self.url!r}")

    @property
    def path(self) -> Path | None:
        """The lock file (SQLite), else None."""
        if self._path is None:
            return None
        return self._path.with_name(f"{self._path.name}.{self.name}.lock")

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False at once if another process has it."""
        if self._held:
            return True
        if self._kind == "postgresql":
            self._held = self._acquire_advisory(blocking)
        elif self._kind == "file":
            self._held = self._acquire_file(blocking)
        else:
            self._local = self._local or threading.Lock()
            self._held = self._local.acquire(blocking)
        return self._held

    def _acquire_advisory(self, blocking: bool) -> bool:
        if self._engine is None:
            self._engine = make_engine(self.url, poolclass=NullPool)
        connection = self._engine.connect()
        try:
            key = {"key": _advisory_key(self.name)}
            if blocking:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
                got = True
            else:
                got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                              key).scalar())
            connection.commit()  # the lock outlives the transaction; an idle one would not
        except BaseException:
            connection.close()
            raise
        if got:
            self._connection = connection
        else:
            connection.close()
        return got

    def _acquire_file(self, blocking: bool) -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        except BaseException:
            handle.close()
            raise
        self._file = handle
        return True

    def held(self) -> bool:
        """True while the lock is still ours (checks that PostgreSQL's connection is alive)."""
        if not self._held:
            return False
        if self._kind == "postgresql":
            try:
                self._connection.execute(text("SELECT 1"))
                self._connection.commit()
            except Exception:  # noqa: BLE001 - a dropped connection took the lock with it
                log.warning("lost the database lock %r with its connection", self.name)
                self._drop_connection()
                self._held = False
        return self._held

    def release(self) -> None:
        """Give the lock back (safe to call when not held)."""
        if self._kind == "postgresql":
            if self._connection is not None and self._held:
                try:
                    self._connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                             {"key": _advisory_key(self.name)})
                    self._connection.commit()
                except Exception:  # noqa: BLE001 - closing the connection releases it anyway
                    pass
            self._drop_connection()
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
        elif self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
        elif self._local is not None and self._held:
            self._local.release()
        self._held = False

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            self._connection = None

    def __enter__(self) -> "DatabaseLock":
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
