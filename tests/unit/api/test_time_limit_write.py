"""The task time limit firing while a batch writes its frames: they are written, not failed."""
from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from blockreg.db import queries

from helpers import service_fakes as fakes
from helpers.api_app import toy_spec_for


@pytest.fixture
def movie_path(tmp_path):
    """48 frames: shards (and so batches) of 3 frames."""
    path = tmp_path / "movie.npy"
    fakes.make_movie(path, shape=(48, 24, 20))
    return path


@pytest.fixture
def slow_first_write(monkeypatch):
    """The first write to a store raises the soft time limit; the next ones write."""
    import blockreg.store

    write = blockreg.store.write_frame_set
    calls = []

    def once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise SoftTimeLimitExceeded()
        return write(*args, **kwargs)

    monkeypatch.setattr(blockreg.store, "write_frame_set", once)


def _batch(app, client, broker, movie_path):
    from blockreg.orchestrate.dispatch import dispatch_once

    job_id = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    with app.extensions["blockreg"].sessions() as session:
        dispatch_once(session, broker, max_batches=1)
    return job_id, broker.sent[0][1][1]


def _states(app, job_id):
    with app.extensions["blockreg"].sessions() as session:
        return {state: queries.count_frames(session, job_id, state)
                for state in ("done", "failed", "pending", "running")}


def test_a_limit_during_the_last_write_records_the_frames_done(app, client, broker, movie_path,
                                                                slow_first_write):
    from blockreg.orchestrate.frames import run_frames
    from blockreg_services.worker.tasks import STOP_ON

    job_id, batch = _batch(app, client, broker, movie_path)
    counts = run_frames(job_id, batch, worker="w", sessions=app.extensions["blockreg"].sessions,
                        stop_on=STOP_ON)
    assert counts == {"done": len(batch), "failed": 0, "skipped": 0}
    assert _states(app, job_id)["done"] == len(batch)


def test_a_limit_during_a_write_ends_the_batch(app, client, broker, movie_path, slow_first_write,
                                               monkeypatch):
    from blockreg.orchestrate import batch as batch_module
    from blockreg.orchestrate.frames import run_frames
    from blockreg_services.worker.tasks import STOP_ON

    monkeypatch.setattr(batch_module.ShardBuffer, "due", lambda self: bool(self.items))
    job_id, batch = _batch(app, client, broker, movie_path)
    counts = run_frames(job_id, batch, worker="w", sessions=app.extensions["blockreg"].sessions,
                        stop_on=STOP_ON)
    assert counts == {"done": 1, "failed": 0, "skipped": 0}
    assert len(batch) == 3
    states = _states(app, job_id)
    assert states["done"] == 1 and states["failed"] == 0 and states["running"] == 0
    assert states["pending"] == 48 - 1  # the batch's other frames went back at once
