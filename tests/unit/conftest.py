"""Fixtures shared by the unit tests of the database layer and the services."""
from __future__ import annotations

import pytest


@pytest.fixture
def url(tmp_path):
    """A migrated SQLite database of the service, empty."""
    from blockreg.db.migrate import migrate

    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)
    return url


@pytest.fixture
def sessions(url):
    """A session factory on :func:`url`."""
    from blockreg.db import make_engine, session_factory

    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()
