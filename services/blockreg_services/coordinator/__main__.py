"""Serve the coordinator: ``python -m blockreg_services.coordinator --host 127.0.0.1 --port 8750``."""
from __future__ import annotations

import argparse
import logging


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m blockreg_services.coordinator",
                                     description="blockreg coordinator (REST API + dispatcher)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8750)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from werkzeug.serving import run_simple

    from . import create_app

    app = create_app()
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
