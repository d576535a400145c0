"""The database layer on the real PostgreSQL: migrations, bulk submit, exactly-once finalisation.

Each test module run gets its own database (created from ``test``, dropped afterwards), separate
from the end-to-end stack's, because these tests downgrade and rebuild the schema.
"""
from __future__ import annotations


import pytest
from sqlalchemy import inspect, select

from helpers.finalize_race import race_to_finalize
from helpers.services import fresh_postgres_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_url():
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def sessions(pg_url):
    from blockreg.db import make_engine, ops, session_factory

    ops.migrate(pg_url)
    engine = make_engine(pg_url)
    yield session_factory(engine)
    engine.dispose()


def test_migrations_match_models_and_downgrade(pg_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from blockreg.db import Base, make_engine, ops

    ops.migrate(pg_url)
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        spec_type = conn.exec_driver_sql(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'job' AND column_name = 'spec'").scalar()
    assert spec_type == "jsonb"
    command.downgrade(ops.alembic_config(pg_url), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    ops.migrate(pg_url)
    assert {"job", "frame", "frame_scalar", "worker_heartbeat"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_bulk_insert_of_100k_frames(sessions):
    # the COPY path (its speed is in BENCHMARKS.md, from benchmarks/bench_service.py)
    from blockreg.db import ops, queries

    with sessions() as s:
        job_id = ops.create_job(s, spec={"input": {"path": "x"}}, frames=range(100_000),
                                output_path="/data/job-{id}.zarr")
    with sessions() as s:
        assert queries.count_frames(s, job_id, "pending") == 100_000
        assert ops.enqueue_pending(s, job_id, 16) == list(range(16))


def test_completion_is_idempotent_and_scalars_stored(sessions):
    from blockreg.db import FrameScalar, Job, ops

    with sessions() as s:
        job_id = ops.create_job(s, spec={}, frames=[5, 6], output_path="/data/x")
        assert ops.claim_frame(s, job_id, 0, "w") == 5
        assert ops.complete_frame(s, job_id, 0, {"mismatch": 1.25, "lambda": float("inf")})
        assert not ops.complete_frame(s, job_id, 0, {"mismatch": 7.0})
        values = dict(s.execute(select(FrameScalar.name, FrameScalar.value)
                                .where(FrameScalar.job_id == job_id)).all())
        assert values == {"mismatch": 1.25, "lambda": None}
        assert s.get(Job, job_id, populate_existing=True).frames_done == 1
    with sessions() as s:  # what the API reads: scalars by frame, timestamps in aware UTC
        from datetime import timedelta

        from blockreg.db import queries

        frames, total = queries.list_frames(s, job_id)
        assert total == 2 and [f.scalars for f in frames] == [{"lambda": None, "mismatch": 1.25}, {}]
        assert frames[0].finished_at.utcoffset() == timedelta(0)
        assert queries.get_job(s, job_id).created_at.utcoffset() == timedelta(0)


def test_redelivered_message_reclaims_its_running_frame(sessions):
    from blockreg.db import ops

    with sessions() as s:
        job_id = ops.create_job(s, spec={}, frames=[5, 6], output_path="/data/redelivery")
        assert ops.claim_frame(s, job_id, 0, "w1", task_id="T") == 5
        assert ops.claim_frame(s, job_id, 0, "w2", task_id="other") is None
        assert ops.claim_frame(s, job_id, 0, "w2", task_id="T") == 5


def test_frame_that_keeps_killing_workers_fails(sessions):
    from datetime import timedelta

    from sqlalchemy import update

    from blockreg.db import Frame, ops, queries, workers

    with sessions() as s:
        job_id = ops.create_job(s, spec={}, frames=[7], output_path="/data/killer")
        for attempt in range(ops.MAX_ATTEMPTS):
            assert ops.claim_frame(s, job_id, 0, "w", task_id=f"T{attempt}") == 7
            s.execute(update(Frame).where(Frame.job_id == job_id)
                      .values(started_at=ops.utcnow() - timedelta(hours=1)))
            s.commit()
            workers.requeue_stale(s, queued_lease_s=60, running_lease_s=60)
        assert queries.count_frames(s, job_id, "failed") == 1
        assert ops.finalize_if_complete(s, job_id) == "failed"


def test_concurrent_processes_finalize_exactly_once(sessions, pg_url, tmp_path):
    from blockreg.db import Job, ops

    n = 200
    with sessions() as s:
        job_id = ops.create_job(s, spec={}, frames=range(n), output_path="/data/x")
        ops.enqueue_pending(s, job_id, n)
    go = tmp_path / "go"
    wins = race_to_finalize(pg_url, job_id, n, 4, go)
    assert sum(wins) == 1
    with sessions() as s:
        job = s.get(Job, job_id, populate_existing=True)
        assert (job.state, job.frames_done, job.frames_failed) == ("succeeded", n, 0)


def test_submit_100k_frame_job_through_the_api(pg_url, tmp_path, monkeypatch):
    """POST /api/v1/jobs for a 100,000-frame input on PostgreSQL: 201 (latency: bench_service.py)."""
    import numpy as np

    from blockreg.db import ops
    from blockreg_services.coordinator import create_app

    ops.migrate(pg_url)  # create_app does not migrate

    class Broker:
        def send_task(self, *args, **kwargs):
            pass

    movie = tmp_path / "long.npy"
    np.save(movie, np.random.default_rng(0).integers(100, 200, size=(100_000, 8, 8)).astype(np.uint16))
    app = create_app({"DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path / "data"),
                      "ALLOWED_ROOTS": None, "CELERY": Broker()})
    spec = {"input": {"path": str(movie)},
            "params": {"gridsize": [2, 2], "maxshift": [3, 3], "lambda": 0.1}}
    response = app.test_client().post("/api/v1/jobs", json=spec)
    app.extensions["blockreg"].engine.dispose()
    assert response.status_code == 201, response.json
