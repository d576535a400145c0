"""Transient database and file-system errors in a worker are retried with backoff before a frame
fails; other errors fail it at once (blockreg.orchestrate.retry, used by run_frames)."""
from __future__ import annotations

import errno

import pytest
from sqlalchemy.exc import OperationalError

from blockreg.orchestrate.retry import is_transient, retry_transient


def flaky(errors, result="ok"):
    """A callable raising each of ``errors`` in turn, then returning ``result``."""
    calls = []

    def call(*args):
        calls.append(args)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result
    call.calls = calls
    return call


def test_transient_errors_are_told_apart():
    assert is_transient(OSError(errno.EIO, "I/O error"))
    assert is_transient(OSError(errno.ESTALE, "Stale file handle"))
    assert is_transient(OperationalError("SELECT 1", {}, Exception("server closed")))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "gone"))
    assert not is_transient(ValueError("bad frame"))


def test_transient_errors_are_retried_with_growing_waits():
    waits = []
    call = flaky([OSError(errno.EIO, "eio"), OSError(errno.ESTALE, "estale")])
    assert retry_transient(call, 1, delays=(0.5, 1.0, 2.0), sleep=waits.append) == "ok"
    assert waits == [0.5, 1.0] and len(call.calls) == 3


def test_other_errors_and_exhausted_retries_propagate():
    waits = []
    with pytest.raises(ValueError):
        retry_transient(flaky([ValueError("no")]), delays=(1.0,), sleep=waits.append)
    assert waits == []
    with pytest.raises(OSError):
        retry_transient(flaky([OSError(errno.EIO, "a"), OSError(errno.EIO, "b")]),
                        delays=(1.0,), sleep=waits.append)
    assert waits == [1.0]


def test_the_session_is_rolled_back_between_attempts():
    class Session:
        rolled = 0

        def rollback(self):
            self.rolled += 1

    session = Session()
    retry_transient(flaky([OperationalError("x", {}, Exception("gone"))]), session=session,
                    delays=(0.0,), sleep=lambda s: None)
    assert session.rolled == 1
