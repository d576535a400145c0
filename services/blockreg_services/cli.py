"""The ``blockreg`` command: register in-process, run the embedded stack, talk to a coordinator.

Subcommands: ``register``, ``up``, ``db upgrade``, ``demo`` here; ``submit``, ``status``,
``cancel``, ``list`` (:mod:`.commands.jobs`), ``user``, ``warp``, ``report`` and ``export`` in
:mod:`blockreg_services.commands`, each module adding its own parsers.

Bad input (a missing file, an invalid spec, an unknown job, an unreachable server, a bad
``BLOCKREG_*`` variable) prints one line per problem on stderr and exits with code 2, never a
traceback. Output piped into a program that stops reading (``blockreg list | head``) ends quietly. ``submit --wait`` exits 0 when the
job succeeded and 1 when it failed or was cancelled.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from blockreg import settings

from .commands import users as users_commands

__all__ = ["main", "CliError", "read_spec", "absolute_paths", "default_server", "ProgressBar"]

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2
# what `blockreg up`, `db` and `demo` import beyond the library (the `server` extra)
SERVER_MODULES = ("flask", "waitress", "celery", "redis", "sqlalchemy", "alembic")


class CliError(Exception):
    """A user-facing problem: each entry of ``problems`` is printed on a line of its own."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# -- job specs -------------------------------------------------------------------------------
def read_spec(path: str | os.PathLike) -> dict:
    """Read a JSON/TOML/YAML job spec, validate it here, and return it ready to submit.

    Input and output paths are made absolute against the current directory. The input is
    checked against the spec only when it exists on this machine: a remote coordinator may see
    a filesystem this machine does not, and it validates the spec again in full.

    Raises
    ------
    CliError
        One line per problem: the file cannot be read or parsed, or a field is invalid.
    """
    from blockreg.jobspec import SpecError, load_spec_file, validate_spec

    try:
        data = absolute_paths(load_spec_file(path), Path.cwd())
    except ValueError as exc:
        raise CliError(str(exc)) from None
    section = data.get("input")
    input_path = section.get("path") if isinstance(section, dict) else None
    try:
        validate_spec(data, check_input=_exists_here(input_path))
    except SpecError as exc:
        raise CliError(*(f"{e['field']}: {e['problem']}" for e in exc.errors)) from None
    return data


def _exists_here(path) -> bool:
    # only a str is a path (validation names any other type); a path os calls refuse (NUL byte,
    # unknown ~user) is left to validation too, which reports it by field
    if not isinstance(path, str) or not path:
        return False
    try:
        return Path(path).expanduser().exists()
    except (RuntimeError, ValueError, OSError):
        return False


def absolute_paths(data: dict, base: Path) -> dict:
    """Make ``input.path``, ``output.path`` and ``source.path`` (warp, optimize) absolute
    against ``base``.

    The coordinator runs in another working directory (the embedded stack's home, a container),
    so a path relative to where the user typed the command would mean something else there.
    """
    data = dict(data)
    for section in ("input", "output", "source"):
        part = data.get(section)
        if isinstance(part, dict) and isinstance(part.get("path"), str):
            try:
                path = Path(part["path"]).expanduser()
            except RuntimeError:  # "~nosuchuser/...": validation names the field
                continue
            data[section] = {**part, "path": str(path if path.is_absolute() else base / path)}
    return data


# -- finding and calling the server ----------------------------------------------------------
def default_server(home=None) -> str:
    """``$BLOCKREG_SERVER``, else the URL the embedded stack running in ``home`` (default: the
    ``home`` setting) wrote there, else the local coordinator on the ``port`` setting."""
    s = settings.load()
    if s.server:
        return s.server
    from .embedded import running_stack

    info = running_stack(Path(home).expanduser() if home else s.home)
    return info["url"] if info and isinstance(info.get("url"), str) else s.server_url


def _client(args):
    from blockreg import Client
    from blockreg.client import read_token_file

    home = getattr(args, "home", None)
    token = getattr(args, "token", None)
    if token is None and home:  # the token file of that home, as `blockreg user add --home` wrote
        token = read_token_file(Path(home).expanduser())
    return Client(args.server or default_server(home), token=token)


def server_options(p) -> None:
    """``--server``, ``--token`` and ``--home`` (where ``blockreg up --home`` wrote its URL)."""
    p.add_argument("--server", metavar="URL",
                   help="coordinator URL (default: $BLOCKREG_SERVER, else the `blockreg up` "
                        "running in --home, else %s)" % settings.load().server_url)
    p.add_argument("--token", help="API token of a server with --auth (default: "
                                   "$BLOCKREG_TOKEN, else the token file in the home)")
    p.add_argument("--home", help="the home of the `blockreg up` to talk to (default: "
                                  "$BLOCKREG_HOME or ~/.blockreg)")


def _call(fn, *args, **kwargs):
    """Run a client call, turning HTTP and connection errors into CliError lines."""
    import requests

    from blockreg.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        lines = [f"server: {exc.message} (HTTP {exc.status})"]
        lines += [f"{err.get('field', '?')}: {err.get('problem', '?')}" for err in exc.errors]
        raise CliError(*lines) from None
    except (ConnectionError, requests.ConnectionError):
        url = getattr(getattr(fn, "__self__", None), "url", "the server")
        raise CliError(f"server: cannot reach {url} (is `blockreg up` running?)") from None
    except (TimeoutError, requests.RequestException) as exc:
        raise CliError(f"server: {exc}") from None


class ProgressBar:
    """A one-line text progress bar for job status dicts, redrawn in place on a terminal."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self._last = None
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, status: dict) -> None:
        total = status.get("frames_total") or 0
        done = status.get("frames_done") or 0
        failed = status.get("frames_failed") or 0
        filled = int(self.width * (done + failed) / total) if total else 0
        line = (f"job {status.get('id', '?')} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{done}/{total} frames" + (f", {failed} failed" if failed else "")
                + f"  {status.get('state', '?')}")
        if status.get("phase") in ("optimize", "stitching"):  # a two-stage job's series solve
            line += f"  series {status.get('phase_done', 0)}/{status.get('phase_total', 0)} windows"
        if status.get("waiting_reason"):  # e.g. no live worker on its queue, broker down
            line += f"  waiting: {status['waiting_reason']}"
        if line == self._last:
            return
        self._last = line
        # on a terminal redraw in place; in a log file one line per change reads better
        self.stream.write(("\r" + line) if self._tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self._tty and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


def wait_with_progress(client, job_id: int, stream=None, timeout: float | None = None) -> dict:
    """Wait for a job to end, drawing a progress bar; return its final status."""
    bar = ProgressBar(stream)
    try:
        return _call(client.wait, job_id, timeout=timeout, progress=bar)
    finally:
        bar.close()


# -- subcommands (submit, status, cancel and list: commands/jobs.py) ------------------------
def require_server_extra() -> None:
    """Raise CliError naming the missing modules when the ``server`` extra is not installed."""
    import importlib.util

    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(f"needs the server extra ({', '.join(missing)} not installed): "
                       'pip install "blockreg[server]"')


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_up(args) -> int:
    require_server_extra()
    from .embedded import EmbeddedStack, default_home

    home = Path(args.home) if args.home else default_home()
    env = users_commands.up_environment(args, settings.load())  # --auth, --data-root
    # SIGTERM (systemd, docker, kill) stops the stack the same way Ctrl-C does
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with EmbeddedStack(home, port=args.port, workers=args.workers, host=args.host,
                           env=env) as stack:
            print(f"blockreg is up at {stack.url} (home {stack.home}, {args.workers} workers); "
                  "Ctrl-C stops it", flush=True)
            stack.supervise()  # restarts a child that dies, until Ctrl-C
    except KeyboardInterrupt:
        print("blockreg stopped", file=sys.stderr)
        return EXIT_OK
    except RuntimeError as exc:
        raise CliError(str(exc)) from None


def cmd_db(args) -> int:
    require_server_extra()
    from blockreg.db.migrate import migrate
    from blockreg.db.session import database_url

    url = args.database_url or database_url()
    try:
        migrate(url)
    except Exception as exc:  # noqa: BLE001 - unreachable server, bad URL, refused login...
        raise CliError(f"upgrade of {_safe_url(url)} failed: {exc}") from None
    print(f"database {_safe_url(url)} is at the current schema", file=sys.stderr)
    return EXIT_OK


def _safe_url(url: str) -> str:
    """``url`` without its password (it goes to logs)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparsable: the error message says so
        return url


def cmd_demo(args) -> int:
    if args.server is None:  # an embedded stack is started
        require_server_extra()
    from .demo import run_demo

    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    return run_demo(home=Path(args.home) if args.home else None, frames=args.frames,
                    workers=args.workers, keep_running=args.keep_running, server=args.server,
                    port=args.port)


def cmd_register(args) -> int:
    from blockreg.commandline import run_register

    return run_register(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blockreg", description="Aperture-based deformable registration, in-process or as a service.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    defaults = settings.load()

    from blockreg.commandline import add_register_parser

    add_register_parser(sub).set_defaults(func=cmd_register)

    up = sub.add_parser("up", help="run the embedded stack in the foreground (Ctrl-C stops it)")
    up.add_argument("--home", help="stack folder (default: $BLOCKREG_HOME or ~/.blockreg)")
    up.add_argument("--port", type=port_number, default=defaults.port,
                    help=f"coordinator port (default {defaults.port})")
    up.add_argument("--workers", type=positive_int, default=defaults.workers,
                    help=f"worker processes (default {defaults.workers})")
    up.add_argument("--host", default=defaults.host,
                    help=f"interface to bind (default {defaults.host})")
    users_commands.add_up_options(up, defaults)
    up.set_defaults(func=cmd_up)

    db = sub.add_parser("db", help="manage the service database")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    upgrade = db_sub.add_parser(
        "upgrade", help="create or migrate the schema to the current version (safe to run "
                        "concurrently: one process migrates, the others wait)")
    upgrade.add_argument("--database-url", metavar="URL",
                         help="SQLAlchemy URL (default: $BLOCKREG_DATABASE_URL, else "
                              "SQLite in $BLOCKREG_HOME)")
    upgrade.set_defaults(func=cmd_db)

    demo = sub.add_parser("demo", help="register a generated movie end to end and report its quality")
    demo.add_argument("--home", help="stack folder (default: $BLOCKREG_HOME or ~/.blockreg)")
    demo.add_argument("--frames", type=positive_int, default=12, help="movie length (default 12)")
    demo.add_argument("--workers", type=positive_int, default=defaults.workers,
                      help=f"worker processes (default {defaults.workers})")
    demo.add_argument("--port", type=port_number, default=0, help="coordinator port (default: a free one)")
    demo.add_argument("--keep-running", action="store_true",
                      help="keep the stack up after the demo until Ctrl-C")
    demo.add_argument("--server", metavar="URL",
                      help="use this coordinator instead of starting an embedded stack")
    demo.set_defaults(func=cmd_demo)
    # the subcommands kept in commands/ (jobs: submit, status, cancel, list; report and export:
    # the quality report and exports)
    for name in ("jobs", "users", "warp", "report", "export"):
        importlib.import_module(f".commands.{name}", __package__).add_parsers(sub)
    return parser


def _int_in(text: str, low: int, high: int | None, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_in(text, 1, None, "at least 1")


def port_number(text: str) -> int:
    """A TCP port, 0 (a free one) to 65535, for ``--port``."""
    return _int_in(text, 0, 65535, "in 0..65535")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``blockreg`` command; returns the exit code."""
    command = "blockreg"
    try:
        args = build_parser().parse_args(argv)  # argparse itself exits 2 on bad usage
        command = f"blockreg {args.command}"
        return args.func(args)
    except (CliError, settings.SettingError) as exc:
        for line in getattr(exc, "problems", [str(exc)]):
            print(f"{command}: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`blockreg list | head`): stop quietly, and keep Python's exit
        # flush from hitting the closed pipe again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1  # Python's convention for EPIPE; the pipeline's status is the reader's


if __name__ == "__main__":
    # `python -m blockreg_services.cli` runs this file as __main__, a second copy of the module:
    # run the package's own, whose CliError is the one the command modules raise
    from blockreg_services.cli import main as package_main

    sys.exit(package_main())
