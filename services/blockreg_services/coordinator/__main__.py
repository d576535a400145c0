"""Serve the coordinator with waitress: ``python -m blockreg_services.coordinator``.

Host, port and the number of request threads default to the settings ``host``, ``port`` and
``wsgi_threads`` (``$BLOCKREG_HOST``, ``$BLOCKREG_PORT``, ``$BLOCKREG_WSGI_THREADS``). The
database must be migrated first (``blockreg db upgrade``) and frames are dispatched by
``python -m blockreg_services.dispatcher``.
"""
from __future__ import annotations

import argparse
import logging
import signal

from blockreg import settings


def main(argv=None) -> None:
    s = settings.load()
    parser = argparse.ArgumentParser(prog="python -m blockreg_services.coordinator",
                                     description="blockreg coordinator (the REST API)")
    parser.add_argument("--host", default=s.host, help=f"interface to bind (default {s.host})")
    parser.add_argument("--port", type=int, default=s.port, help=f"port (default {s.port})")
    parser.add_argument("--threads", type=int, default=s.wsgi_threads,
                        help=f"request threads (default {s.wsgi_threads})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=s.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import waitress

    from . import create_app

    try:
        app = create_app()
    except ValueError as exc:  # a refused configuration (BLOCKREG_AUTH without data roots)
        parser.exit(2, f"{parser.prog}: {exc}\n")
    if not app.config.get("AUTH"):
        logging.getLogger("blockreg").warning(
            "single-user mode: no authentication (BLOCKREG_AUTH unset); anyone who reaches "
            "%s:%s can submit, read and cancel every job", args.host, args.port)
    # As a container's PID 1 the process has no default SIGTERM action: `docker stop` would wait
    # its whole grace period and then kill it. Stop at once instead: requests are short, and a
    # submit cut off mid-way rolls back its rows (its half-made store folder may stay on disk,
    # with no job pointing at it: the same as a SIGKILL, which docker would send anyway).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    waitress.serve(app, host=args.host, port=args.port, threads=args.threads, ident="blockreg")


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
