"""The embedded stack's child processes: start them, restart the ones that die, stop in stages.

Every child runs in its own process group with one log file ``<log_dir>/<name>.log``, and dies with
its parent (see :func:`die_with_parent`). :meth:`Supervisor.restart_dead` restarts a child that died
after a backoff that doubles while it keeps dying, and records each death and restart in
``<log_dir>/supervisor.log`` and on stderr; the other children keep running.

Example
-------
>>> sup = Supervisor(log_dir, cwd=home, environment=lambda: dict(os.environ))   # doctest: +SKIP
>>> sup.spawn("worker-1", [sys.executable, "-m", "celery", ...])
>>> sup.restart_dead()          # call periodically
>>> sup.stop([("worker",), ("redis",)], timeout=30)
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["Supervisor", "die_with_parent", "RESTART_DELAY_S", "STABLE_AFTER_S"]

log = logging.getLogger("blockreg.embedded")

# restart backoff of a child that died: 0.5 s, 1 s, 2 s ... at most 30 s; a child that ran for a
# minute starts again from the shortest delay
RESTART_DELAY_S = (0.5, 30.0)
STABLE_AFTER_S = 60.0


def die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGKILL it when the parent dies.

    Without this a ``kill -9`` of ``blockreg up`` would leave Redis, the coordinator and the
    workers running with nobody to stop them.  SIGKILL, not SIGTERM: the parent died abruptly, so
    the private Redis dies with it, and a worker's soft shutdown (SIGTERM is remapped to SIGQUIT
    for workers) would wait forever for a broker that is gone.  Nothing is lost: the database is
    the truth, and the next dispatcher's reconciler re-sends unfinished frames within a minute.
    """
    os.setsid()  # own process group, so the final SIGKILL also reaches Celery's pool children
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    """The named child processes of one stack, in start order.

    Parameters
    ----------
    log_dir : path-like
        Folder of the children's log files and of ``supervisor.log``; must exist.
    cwd : path-like
        Working directory of the children.
    environment : callable
        Returns the environment of a child spawned without its own; called at each (re)start, so
        a restarted child sees what changed since (e.g. the broker URL once Redis is up).
    """

    def __init__(self, log_dir, cwd, environment: Callable[[], dict[str, str]]):
        self.log_dir = Path(log_dir)
        self.cwd = Path(cwd)
        self.environment = environment
        self.children: list[tuple[str, subprocess.Popen]] = []
        # how to start each child again: argv, env (None: environment()), prepare
        self._commands: dict[str, tuple[list[str], dict | None, Callable[[], None] | None]] = {}
        self._started: dict[str, float] = {}
        self._restarts: dict[str, int] = {}
        self._restart_at: dict[str, float] = {}

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              prepare: Callable[[], None] | None = None) -> subprocess.Popen:
        """Start child ``name``; ``prepare()`` runs before this start and before every restart."""
        self._commands[name] = (argv, env, prepare)
        proc = self._popen(name)
        self.children.append((name, proc))
        return proc

    def child(self, name: str) -> subprocess.Popen | None:
        """The running process of child ``name``, or None."""
        return next((proc for n, proc in self.children if n == name), None)

    def alive(self) -> bool:
        """True while every child is still running."""
        return bool(self.children) and all(p.poll() is None for _, p in self.children)

    def dead_children(self) -> list[str]:
        """Children that exited, with their exit code and last log line, for error messages."""
        return [f"{name} (exit code {proc.returncode}: {self.last_log_line(name)})"
                for name, proc in self.children if proc.poll() is not None]

    def last_log_line(self, name: str) -> str:
        """The last non-blank line of child ``name``'s log, or ``no log`` / ``empty log``."""
        try:
            lines = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        return next((line.strip() for line in reversed(lines) if line.strip()), "empty log")

    def restart_dead(self) -> list[str]:
        """One supervision step: schedule a restart of each child that died, and restart the
        ones whose backoff has passed; return the names restarted now.

        A dead child's process group is killed first (an orphaned pool process must not go on
        writing the frame the reconciler hands to someone else).
        """
        now = time.monotonic()
        restarted = []
        for position, (name, proc) in enumerate(list(self.children)):
            if proc.poll() is None:
                continue
            if name not in self._restart_at:
                ran = now - self._started.get(name, now)
                count = 0 if ran >= STABLE_AFTER_S else self._restarts.get(name, 0)
                delay = min(RESTART_DELAY_S[1], RESTART_DELAY_S[0] * 2 ** count)
                self._restarts[name] = count + 1
                self._restart_at[name] = now + delay
                self.event(f"{name} exited with code {proc.returncode} after {ran:.0f} s "
                           f"({self.last_log_line(name)}); restarting in {delay:g} s")
                _kill_group(proc)
            if now < self._restart_at[name]:
                continue
            del self._restart_at[name]
            self.children[position] = (name, self._popen(name))
            self.event(f"{name} restarted (pid {self.children[position][1].pid}, "
                       f"restart {self._restarts[name]})")
            restarted.append(name)
        return restarted

    def stop(self, stages: Iterable[tuple[str, ...]], timeout: float) -> None:
        """Stop the children stage by stage: SIGTERM to every child whose name starts with one of
        the stage's prefixes, up to ``timeout`` seconds to exit, then SIGKILL to its process group
        (which also holds Celery's pool children). Safe to call more than once."""
        for stage in stages:
            group = [proc for name, proc in self.children if name.startswith(stage)]
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in group:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                _kill_group(proc)
                proc.wait()
        self.children.clear()
        self._restart_at.clear()

    def event(self, message: str) -> None:
        """Report a death or restart: the log, stderr and ``supervisor.log``."""
        log.warning(message)
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        print(f"blockreg up: {message}", file=sys.stderr, flush=True)
        try:
            with open(self.log_dir / "supervisor.log", "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def _popen(self, name: str) -> subprocess.Popen:
        argv, env, prepare = self._commands[name]
        if prepare is not None:
            prepare()
        logfile = open(self.log_dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(
                argv, env=env or self.environment(), cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=logfile, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )
        finally:
            logfile.close()  # the child holds its own descriptor
        self._started[name] = time.monotonic()
        return proc
