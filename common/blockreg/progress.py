"""A one-line progress bar with rate and ETA for terminals (``blockreg register``).

Drawn on a terminal only: in a log file, a pipe or a CI job a bar redrawn with carriage returns is
noise, so the bar stays silent there (and with ``--quiet``).
"""
from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar", "format_duration"]


def format_duration(seconds: float) -> str:
    """``1:02:03``, ``2:03``, or ``?`` for an unknown duration."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Call with ``(done, total)`` after each frame; :meth:`close` ends the line.

    Parameters
    ----------
    stream : file, optional
        Default ``sys.stderr``.
    enabled : bool, optional
        Default: whether ``stream`` is a terminal.
    width : int
        Characters of the bar itself.
    min_interval : float
        Seconds between redraws (the last frame is always drawn).
    clock : callable
        Seconds, monotonic (tests pass a fake).
    """

    def __init__(self, stream=None, enabled=None, width: int = 30, min_interval: float = 0.1,
                 clock=time.monotonic):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = bool(enabled)
        self.width = width
        self.min_interval = min_interval
        self.clock = clock
        self.start = clock()
        self._drawn = None
        self._last = None

    def line(self, done: int, total: int) -> str:
        """The text of the bar for ``done`` of ``total`` frames."""
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else None
        filled = int(self.width * done / total) if total else self.width
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} frames  "
                f"{rate:.1f} frames/s  elapsed {format_duration(elapsed)}  "
                f"ETA {format_duration(eta) if done < total else '0:00'}")

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if done < total and self._last is not None and now - self._last < self.min_interval:
            return
        self._last = now
        self._drawn = self.line(done, total)
        self.stream.write("\r" + self._drawn)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._drawn is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = None
