"""The coordinator: Flask app factory (flaskr style), the /api/v1 blueprint and the dispatcher.

Configuration comes from the environment (``BLOCKREG_DATABASE_URL``, ``BLOCKREG_BROKER_URL``,
``BLOCKREG_DATA_DIR``, ``BLOCKREG_ALLOWED_ROOTS``, ``BLOCKREG_HOME``), then from the mapping given
to :func:`create_app`.  Serve with ``python -m blockreg_services.coordinator``.
"""
from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from blockreg import __version__

from .dispatcher import DEFAULTS as DISPATCH_DEFAULTS
from .dispatcher import Dispatcher

__all__ = ["create_app", "config_from_env"]


def config_from_env(environ=None) -> dict:
    """The coordinator's configuration from ``BLOCKREG_*`` environment variables."""
    env = os.environ if environ is None else environ
    home = Path(env.get("BLOCKREG_HOME") or "~/.blockreg").expanduser()
    roots = env.get("BLOCKREG_ALLOWED_ROOTS")
    return {
        "HOME": str(home),
        "DATABASE_URL": env.get("BLOCKREG_DATABASE_URL") or f"sqlite:///{home / 'blockreg.db'}",
        "BROKER_URL": env.get("BLOCKREG_BROKER_URL"),
        "DATA_DIR": env.get("BLOCKREG_DATA_DIR") or str(home),
        "ALLOWED_ROOTS": [r for r in roots.split(os.pathsep) if r] if roots else None,
    }


class Services:
    """What the blueprints need: DB sessions, the task sender, the dispatcher."""

    def __init__(self, engine, sessions, celery, dispatcher=None):
        self.engine = engine
        self.sessions = sessions
        self.celery = celery
        self.dispatcher = dispatcher

    def wake_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def broker_reachable(self, timeout: float = 2.0) -> bool:
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - health reports, it does not raise
            return False


def create_app(config: dict | None = None) -> Flask:
    """Build the coordinator app.

    Parameters
    ----------
    config : dict, optional
        Overrides of :func:`config_from_env`, plus: ``DISPATCHER`` (False: no background thread),
        ``MIGRATE`` (False: do not run Alembic at startup), ``CELERY`` (an object with
        ``send_task``; default: the Celery app on ``BROKER_URL``), ``QUEUE`` and the dispatcher
        options ``BATCH_FRAMES``, ``MAX_BATCHES_PER_JOB``, ``DISPATCH_INTERVAL_S``,
        ``QUEUED_LEASE_S``, ``RUNNING_LEASE_S``, ``MAX_ATTEMPTS``.
    """
    from blockreg.celery_app import DEFAULT_QUEUE, make_celery
    from blockreg.db import make_engine, session_factory
    from blockreg.db.ops import migrate

    from . import api

    app = Flask(__name__)
    app.config.update(VERSION=__version__, DISPATCHER=True, MIGRATE=True, QUEUE=DEFAULT_QUEUE,
                      CELERY=None, **DISPATCH_DEFAULTS)
    app.config.update(config_from_env())
    app.config.update(config or {})

    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if app.config["MIGRATE"]:
        migrate(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    celery = app.config["CELERY"] or make_celery(app.config["BROKER_URL"])
    services = Services(engine, sessions, celery)
    app.extensions["blockreg"] = services

    # Import the planning stack now, not in the first submit (which must answer in seconds).
    # The coordinator never forks workers, so loading zarr and the algorithms here is harmless.
    import blockreg.algorithms.apertures  # noqa: F401
    import blockreg.io  # noqa: F401
    import blockreg.jobs  # noqa: F401
    import blockreg.store  # noqa: F401
    import zarr  # noqa: F401

    app.register_blueprint(api.bp)
    app.teardown_appcontext(api.close_db)
    app.register_error_handler(404, api.json_http_errors)
    app.register_error_handler(405, api.json_http_errors)
    app.register_error_handler(Exception, api.json_internal_error)

    if app.config["DISPATCHER"] is not False:
        services.dispatcher = Dispatcher(
            sessions, celery, interval_s=app.config["DISPATCH_INTERVAL_S"],
            batch_frames=app.config["BATCH_FRAMES"],
            max_batches=app.config["MAX_BATCHES_PER_JOB"],
            queued_lease_s=app.config["QUEUED_LEASE_S"],
            running_lease_s=app.config["RUNNING_LEASE_S"],
            max_attempts=app.config["MAX_ATTEMPTS"])
        services.dispatcher.start()
    return app
