"""The coordinator app on a temporary SQLite DB with a fake broker and a toy algorithm."""
from __future__ import annotations

import pytest

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
def app(tmp_path, monkeypatch, broker):
    from blockreg.db.migrate import migrate
    from blockreg_services.coordinator import create_app

    fakes.install(monkeypatch)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)  # `blockreg db upgrade`: create_app does not migrate
    app = create_app({
        "DATABASE_URL": url,
        "DATA_DIR": str(tmp_path / "data"),
        "ALLOWED_ROOTS": None,
        "CELERY": broker,
        "BATCH_FRAMES": 4,
        "MAX_BATCHES_PER_JOB": 2,
    })
    yield app
    app.extensions["blockreg"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()
