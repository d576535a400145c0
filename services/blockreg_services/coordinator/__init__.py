"""The coordinator: the Flask app factory (flaskr style) and the /api/v1 blueprint.

:func:`create_app` builds the app and nothing else: it neither migrates the database
(``blockreg db upgrade`` does) nor dispatches frames (the dispatcher is its own process,
``python -m blockreg_services.dispatcher``). Its configuration comes from
:mod:`blockreg.settings`, then from the mapping given to it. Serve it with
``python -m blockreg_services.coordinator`` (waitress, a production WSGI server).
"""
from __future__ import annotations

from flask import Flask

from blockreg import __version__
from blockreg import settings as _settings

__all__ = ["create_app", "config_from_settings", "check_auth_config"]


def config_from_settings(s: _settings.Settings | None = None) -> dict:
    """The app's configuration keys from the settings (default: :func:`blockreg.settings.load`)."""
    s = s or _settings.load()
    return {
        "DATABASE_URL": s.database_url,
        "BROKER_URL": s.broker_url,
        "DATA_DIR": str(s.data_dir),
        "DATA_ROOTS": [str(root) for root in s.data_roots] if s.data_roots else None,
        # the old name of DATA_ROOTS (read when DATA_ROOTS is None)
        "ALLOWED_ROOTS": [str(root) for root in s.data_roots] if s.data_roots else None,
        "AUTH": s.auth,
        "QUEUE": s.queue,
    }


def check_auth_config(config) -> None:
    """With ``AUTH`` on, at least one data root is required: a shared server must not read and
    write anywhere its own user can.

    Raises
    ------
    ValueError
        Naming the setting to give.
    """
    if config.get("AUTH") and not (config.get("DATA_ROOTS") or config.get("ALLOWED_ROOTS")):
        raise ValueError("BLOCKREG_AUTH needs at least one data root (BLOCKREG_DATA_ROOTS, "
                         "`blockreg up --data-root DIR`): without one, users could read and "
                         "write any file the server can")


class Services:
    """What the blueprints need: DB sessions and the task sender."""

    def __init__(self, engine, sessions, celery):
        self.engine = engine
        self.sessions = sessions
        self.celery = celery

    def broker_reachable(self, timeout: float = 2.0) -> bool:
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - health reports, it does not raise
            return False


def create_app(config: dict | None = None) -> Flask:
    """Build the coordinator app (no side effects: nothing is migrated, started or connected).

    Parameters
    ----------
    config : dict, optional
        Overrides of :func:`config_from_settings` (``DATABASE_URL``, ``BROKER_URL``,
        ``DATA_DIR``, ``ALLOWED_ROOTS`` (list or None), ``QUEUE``), plus ``CELERY``: an object
        with ``send_task`` (default: the Celery app on ``BROKER_URL``; tests inject a fake).
    """
    from blockreg.celery_app import make_celery
    from blockreg.db import make_engine, session_factory

    from . import api, browse, dashboard, limits, report, tune

    app = Flask(__name__)
    app.config.update(VERSION=__version__, CELERY=None)
    app.config.update(config_from_settings())
    app.config.update(config or {})
    check_auth_config(app.config)

    engine = make_engine(app.config["DATABASE_URL"])  # connects on first use
    celery = app.config["CELERY"] or make_celery(app.config["BROKER_URL"])
    app.extensions["blockreg"] = Services(engine, session_factory(engine), celery)

    # Import the planning stack now, not in the first submit (which must answer in seconds).
    # The coordinator never forks workers, so loading zarr and the algorithms here is harmless.
    import blockreg.algorithms.apertures  # noqa: F401
    import blockreg.io  # noqa: F401
    import blockreg.jobs  # noqa: F401
    import blockreg.store  # noqa: F401
    import zarr  # noqa: F401

    limits.install(app)  # request body size and JSON nesting depth
    app.register_blueprint(api.bp)
    app.register_blueprint(report.bp)  # GET /api/v1/jobs/<id>/report
    for blueprint in (browse.bp, tune.bp, dashboard.bp):  # data views, tuning, the web pages
        app.register_blueprint(blueprint)
    app.teardown_appcontext(api.close_db)
    app.register_error_handler(404, api.json_http_errors)
    app.register_error_handler(405, api.json_http_errors)
    app.register_error_handler(Exception, api.json_internal_error)
    return app
