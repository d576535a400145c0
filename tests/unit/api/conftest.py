"""The coordinator app on a temporary SQLite DB with a fake broker and a toy algorithm."""
from __future__ import annotations

import pytest

from blockreg.registry import registered

from helpers import service_fakes as fakes


@pytest.fixture
def movie_path(tmp_path):
    path = tmp_path / "movie.npy"
    fakes.make_movie(path)
    return path


@pytest.fixture
def broker():
    return fakes.FakeBroker()


@pytest.fixture
def toy_algorithm():
    """The toy algorithm "mean-shift" (helpers.api_app.toy_spec_for), registered for one test."""
    with registered(fakes.MEAN_SHIFT) as entry:
        yield entry


@pytest.fixture
def app(tmp_path, broker, toy_algorithm):
    from blockreg.db.migrate import migrate
    from blockreg_services.coordinator import create_app

    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)  # `blockreg db upgrade`: create_app does not migrate
    app = create_app({
        "DATABASE_URL": url,
        "DATA_DIR": str(tmp_path / "data"),
        "ALLOWED_ROOTS": None,
        "CELERY": broker,
        "MAX_BATCHES_PER_JOB": 2,
    })
    yield app
    app.extensions["blockreg"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(autouse=True)
def _no_job_reports(request, monkeypatch):
    """The worker that finishes a job draws its quality report (seconds of matplotlib): only the
    tests that ask for ``job_reports`` pay for it."""
    if "job_reports" in request.fixturenames:
        return
    from blockreg.orchestrate import dispatch, finish

    monkeypatch.setattr(finish, "after_finish", lambda *args: False)
    monkeypatch.setattr(dispatch, "after_finish", lambda *args: False)


@pytest.fixture
def job_reports():
    """Finished jobs get their quality report, as in production."""
