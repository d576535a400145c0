"""Every setting of blockreg in one place: its name, type, default and environment variable.

Each field of :class:`Settings` is read from the environment variable ``BLOCKREG_<NAME>``
(``database_url`` from ``BLOCKREG_DATABASE_URL``); an unset or empty variable means the default.
Values that must follow another one are derived, not set (the running-frame lease and the broker's
visibility timeout follow the task time limit). ``docs/deployment.md`` lists the table that
:func:`settings_table` prints (``python -m blockreg.settings``), and a test keeps the two equal.

Standard library only: the registration code (``blockreg.reg``) reads ``fft_workers`` through
:func:`get`, and it imports nothing of the server or of pydantic.

Example
-------
>>> from blockreg import settings
>>> s = settings.load({"BLOCKREG_HOME": "/srv/blockreg"})
>>> s.database_url
'sqlite:////srv/blockreg/blockreg.db'
>>> s.running_lease_s > s.task_time_limit_s
True
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path

__all__ = ["Settings", "SettingError", "load", "get", "env_name", "settings_table", "PREFIX"]

PREFIX = "BLOCKREG_"


class SettingError(ValueError):
    """An environment variable (or override) that cannot be parsed: names the variable."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{env_name(name)}: {problem}")
        self.name = name
        self.problem = problem


# -- parsers: text of the environment -> value -------------------------------------------------
def _text(text: str) -> str:
    return text


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean (use true or false): {text!r}")


def _device(text: str) -> str:
    text = text.strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "gpu") or (index and (kind == "cpu" or not index.isdigit())):
        raise ValueError(f"must be cpu, gpu or gpu:N, got {text!r}")
    return text


def _paths(text: str) -> tuple[Path, ...] | None:
    return tuple(Path(part).expanduser() for part in text.split(os.pathsep) if part) or None


def _module_names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


# the kinds of value a setting holds: its type annotation and the parser of its variable
_KINDS = {
    "str": ("str", _text), "str?": ("str | None", _text), "int": ("int", _int),
    "int?": ("int | None", _int), "float": ("float", _float), "bool": ("bool", _bool),
    "path": ("Path", _path), "paths": ("tuple[Path, ...] | None", _paths),
    "device": ("str", _device), "names": ("tuple[str, ...]", _module_names),
}

# Every setting: its name, kind (_KINDS), default, minimum (None: any), and where the default
# derives from another setting, the default as the docs show it.  What each one does is in
# _MEANINGS, the third column of the docs' table.
_TABLE = (
    # where things are
    ("home", "path", None, None, "`~/.blockreg`"),
    ("database_url", "str", None, None, "`sqlite:///$BLOCKREG_HOME/blockreg.db`"),
    ("data_dir", "path", None, None, "`$BLOCKREG_HOME`"),
    ("data_roots", "paths", None, None, "unset: any path (single-user mode)"),
    ("broker_url", "str", "redis://127.0.0.1:6379/0", None),
    # the coordinator and its clients
    ("host", "str", "127.0.0.1", None),
    ("port", "int", 8750, 0),
    ("server", "str?", None, None, "`http://127.0.0.1:$BLOCKREG_PORT`"),
    ("auth", "bool", False, None, "`false` (single-user mode)"),
    ("token", "str?", None, None, "unset: the token file"),
    ("wsgi_threads", "int", 8, 1),
    # the dispatcher
    ("queue", "str", "cpu", None),
    ("max_batches_per_job", "int", 16, 1),
    ("dispatch_interval_s", "float", 1.0, 0.01),
    ("dispatch_poll_s", "float", 0.1, 0.01),
    ("max_queued_batches", "int", 4, 1),
    ("user_max_jobs", "int", 8, 1),
    ("user_max_frames_in_flight", "int", 4096, 1),
    ("queued_lease_s", "float", 3600.0, 1),
    ("reconcile_interval_s", "float", 5.0, 0.1),
    ("queued_grace_s", "float", 20.0, 0.1),
    ("worker_lost_s", "float", 45.0, 0.1),
    ("heartbeat_interval_s", "float", 5.0, 0.05),
    ("max_attempts", "int", 3, 1),
    # the workers
    ("task_time_limit_s", "float", 7200.0, 120),
    ("worker_soft_shutdown_s", "float", 10.0, 0),
    ("workers", "int", 2, 1),
    ("fft_workers", "int?", None, 1, "the CPUs the process may use"),
    ("gpu_queue", "str", "gpu", None),
    ("worker_device", "device", "cpu", None),
    ("test_array_module", "str?", None, None, "unset"),
    # everyone
    ("sqlite_timeout_s", "float", 30.0, 0),
    ("log_level", "str", "INFO", None),
    ("algorithm_modules", "names", (), None, "unset: the built-in algorithms only"),
)

_MEANINGS = {
    "home": (
        "folder of the embedded stack (`blockreg up`, `blockreg demo`): SQLite database, "
        "results, logs, Redis socket, `server.json`; the defaults of the two settings below "
        "derive from it"),
    "database_url": (
        "SQLAlchemy URL of the service database, e.g. "
        "`postgresql+psycopg://user:pw@host:5432/blockreg`"),
    "data_dir": (
        "the coordinator puts results without an output path under "
        "`$BLOCKREG_DATA_DIR/results/job-<id>.zarr`"),
    "data_roots": (
        "folders (separated by `:`) that every input and output path must resolve inside "
        "(`blockreg up --data-root`); required with `BLOCKREG_AUTH`. The old name "
        "`BLOCKREG_ALLOWED_ROOTS` is still read (deprecated)"),
    "broker_url": (
        "Redis URL of the task queue (`redis://host:port/db` or "
        "`redis+socket:///path/redis.sock`)"),
    "host": "interface the coordinator binds to (`blockreg up --host`)",
    "port": "port the coordinator listens on (`blockreg up --port`)",
    "server": (
        "coordinator URL used by `blockreg.Client` and the CLI (the CLI first looks for the "
        "running `blockreg up`)"),
    "auth": (
        "require `Authorization: Bearer TOKEN` on the API (`blockreg up --auth`; users and "
        "tokens: `blockreg user add`); needs `BLOCKREG_DATA_ROOTS`"),
    "token": (
        "API token of `blockreg.Client` and the CLI (`--token`); when unset they read "
        "`$BLOCKREG_HOME/token`, written by `blockreg user add --home`"),
    "wsgi_threads": "request threads of the coordinator's WSGI server (waitress)",
    "queue": "Celery queue new jobs go to and the embedded workers consume",
    "max_batches_per_job": "task messages of one job waiting in the broker at once",
    "dispatch_interval_s": (
        "seconds between the dispatcher's rounds (re-queue lost frames, top up queues, finalise "
        "jobs); a standby dispatcher tries to take over this often"),
    "dispatch_poll_s": (
        "seconds between the dispatcher's checks for newly submitted jobs, which it dispatches "
        "at once (the latency from submit to the first queued frame)"),
    "max_queued_batches": (
        "task messages waiting in each broker queue at once over all jobs; each free place goes "
        "to the user with the fewest frames in flight, then to their job with the fewest "
        "messages waiting (more places make a short job wait behind a long one's messages)"),
    "user_max_jobs": (
        "jobs of one user that run at once; more wait (status `waiting_reason`: `user limit`)"),
    "user_max_frames_in_flight": (
        "frames of one user queued or running at once (a user with none may always send one "
        "message)"),
    "queued_lease_s": "a frame queued this long is presumed lost by the broker and sent again",
    "reconcile_interval_s": (
        "seconds between the dispatcher's reconciliations of the database with the broker and "
        "the workers' heartbeats (also done when it becomes active)"),
    "queued_grace_s": (
        "a frame queued this long whose message the broker no longer holds is sent again (the "
        "broker forgot it: a Redis restart, a lost message)"),
    "worker_lost_s": (
        "a running frame whose worker process has not written its heartbeat for this long is "
        "sent again (the worker died); keep it several times `heartbeat_interval_s`"),
    "heartbeat_interval_s": (
        "seconds between a worker process's heartbeats (written even while it registers a frame)"),
    "max_attempts": (
        "a frame whose worker was lost this many times fails instead of being sent again"),
    "task_time_limit_s": (
        "hard time limit of one task message (a batch of frames); the soft limit, the "
        "running-frame lease and the broker's visibility timeout derive from it"),
    "worker_soft_shutdown_s": (
        "on SIGTERM (remapped to SIGQUIT) a worker's running frame gets this long before its "
        "message goes back to the queue"),
    "workers": "worker processes `blockreg up` and `blockreg demo` start",
    "fft_workers": (
        "threads per FFT (scipy.fft `workers`); set 1 when several worker processes share a "
        "machine"),
    "gpu_queue": (
        "Celery queue of the GPU workers: jobs with `resources.device: gpu` go there, and `auto` "
        "jobs while a GPU worker is alive"),
    "worker_device": (
        "what a worker process computes on: `cpu`, `gpu` (the first device it sees; restrict "
        "with `CUDA_VISIBLE_DEVICES`) or `gpu:N`; CUDA starts in the pool process, after the fork"),
    "test_array_module": (
        "tests only: a module a GPU worker installs as `cupy` before it starts (the strict "
        "stand-in `helpers.strict_cupy` lets CI route jobs to a GPU worker without a GPU)"),
    "sqlite_timeout_s": "seconds a SQLite connection waits for another writer's lock",
    "log_level": "log level of the coordinator, dispatcher and workers",
    "algorithm_modules": (
        "Python modules (separated by `,`) imported to register extra algorithms "
        "(`blockreg.registry`); set it alike for the coordinator and the workers"),
}
# left out of the repr, so that a logged Settings never shows them
_SECRETS = frozenset({"token"})


class _SettingsBase:
    """What :class:`Settings` adds to its fields: the defaults that follow ``home``, the check of
    each minimum, and the derived values."""

    def __post_init__(self):
        # derived at construction, not import, so a changed $HOME counts
        if self.home is None:
            object.__setattr__(self, "home", Path("~/.blockreg").expanduser())
        if self.database_url is None:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'blockreg.db'}")
        if self.data_dir is None:
            object.__setattr__(self, "data_dir", self.home)
        for spec in dataclasses.fields(self):
            value, minimum = getattr(self, spec.name), spec.metadata["minimum"]
            if minimum is not None and value is not None and value < minimum:
                raise SettingError(spec.name, f"must be at least {minimum:g}, got {value}")

    # -- derived values (not settable: they must follow the time limit) -----------------------
    @property
    def task_soft_time_limit_s(self) -> float:
        """The soft limit: a minute before the hard one, so the frame fails cleanly."""
        return self.task_time_limit_s - 60.0

    @property
    def running_lease_s(self) -> float:
        """A frame running this long lost its worker: the time limit plus 10 minutes' margin."""
        return self.task_time_limit_s + 600.0

    @property
    def visibility_timeout_s(self) -> float:
        """Redis redelivers an unacknowledged message after this: the time limit plus an hour
        (a prefetched message may wait behind a running task)."""
        return self.task_time_limit_s + 3600.0

    @property
    def allowed_roots(self) -> tuple[Path, ...] | None:
        """Deprecated name of ``data_roots``."""
        return self.data_roots

    @property
    def server_url(self) -> str:
        """``server``, else the coordinator on this machine's ``port``."""
        return (self.server or f"http://127.0.0.1:{self.port}").rstrip("/")


def _field(name, kind, default, minimum, shown_default=None):
    annotation, parse = _KINDS[kind]
    return name, annotation, field(default=default, repr=name not in _SECRETS, metadata={
        "doc": _MEANINGS[name], "parse": parse, "minimum": minimum, "shown_default": shown_default})


_SETTINGS_DOC = """The configuration of every blockreg process (see the module docstring): one
field per row of the settings table.

``database_url`` and ``data_dir`` default to places inside ``home``; ``server`` defaults to the
local coordinator on ``port``.
"""
if {row[0] for row in _TABLE} != set(_MEANINGS):  # a setting added to one table only
    raise AssertionError("settings: _TABLE and _MEANINGS name different settings")
Settings = dataclasses.make_dataclass(
    "Settings", [_field(*row) for row in _TABLE], bases=(_SettingsBase,), frozen=True,
    namespace={"__module__": __name__, "__doc__": _SETTINGS_DOC})


_FIELDS = {spec.name: spec for spec in dataclasses.fields(Settings)}
# the data roots' old name, still read when BLOCKREG_DATA_ROOTS is unset
DEPRECATED_ROOTS = PREFIX + "ALLOWED_ROOTS"
DERIVED = ("task_soft_time_limit_s", "running_lease_s", "visibility_timeout_s")


def env_name(name: str) -> str:
    """The environment variable of setting ``name``: ``BLOCKREG_`` + its name in capitals."""
    return PREFIX + name.upper()


def _parse(name: str, text: str):
    try:
        return _FIELDS[name].metadata["parse"](text)
    except ValueError as exc:
        raise SettingError(name, str(exc)) from None


def load(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """The settings from ``environ`` (default ``os.environ``), then ``overrides`` (by field name).

    Raises
    ------
    SettingError
        A variable that does not parse or is out of range; the message names the variable.
    """
    env = os.environ if environ is None else environ
    unknown = set(overrides) - set(_FIELDS)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    values = {}
    for name in _FIELDS:
        text = env.get(env_name(name))
        if text:
            values[name] = _parse(name, text)
    if "data_roots" not in values and env.get(DEPRECATED_ROOTS):
        values["data_roots"] = _parse("data_roots", env[DEPRECATED_ROOTS])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def get(name: str, environ: Mapping[str, str] | None = None):
    """One setting, parsing only its own variable (for hot paths such as the FFT thread count)."""
    spec = _FIELDS[name]
    env = os.environ if environ is None else environ
    text = env.get(env_name(name)) or (env.get(DEPRECATED_ROOTS) if name == "data_roots" else None)
    if not text:
        return getattr(Settings(), name)
    value = _parse(name, text)
    minimum = spec.metadata["minimum"]
    if minimum is not None and value < minimum:
        raise SettingError(name, f"must be at least {minimum:g}, got {value}")
    return value


def _shown(spec) -> str:
    if spec.metadata["shown_default"] is not None:
        return spec.metadata["shown_default"]
    default = spec.default
    return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"


def settings_table() -> str:
    """The Markdown table of every setting (docs/deployment.md holds a copy; a test compares)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{env_name(spec.name)}` | {_shown(spec)} | {spec.metadata['doc']} |"
             for spec in dataclasses.fields(Settings)]
    defaults = Settings()
    for name in DERIVED:
        doc = " ".join(getattr(Settings, name).__doc__.split())
        rows.append(f"| (derived) `{name}` | `{getattr(defaults, name):g}` | {doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
