"""The database layer on the real PostgreSQL: migrations, bulk submit, exactly-once finalisation.

Each test module run gets its own database (created from ``test``, dropped afterwards), separate
from the end-to-end stack's, because these tests downgrade and rebuild the schema.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import inspect, select

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


def test_submitting_100k_frames_is_fast(sessions):
    from blockreg.db import ops

    start = time.perf_counter()
    with sessions() as s:
        job_id = ops.create_job(s, spec={"input": {"path": "x"}}, frames=range(100_000),
                                output_path="/data/job-{id}.zarr")
    elapsed = time.perf_counter() - start
    print(f"\n100,000 frame rows on PostgreSQL (COPY): {elapsed:.2f} s")
    with sessions() as s:
        assert ops.count_frames(s, job_id, "pending") == 100_000
        assert ops.enqueue_pending(s, job_id, 16) == list(range(16))
    assert elapsed < 5.0


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


WORKER = textwrap.dedent("""
    import os, sys, time
    from blockreg.db import make_engine, ops, session_factory
    url, job_id, k, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    sessions = session_factory(make_engine(url))
    while not os.path.exists(go):
        time.sleep(0.005)
    wins = 0
    with sessions() as s:
        for i in range(n):
            if i % 3 == k or i % 4 == k:  # overlapping: some frames completed by two processes
                ops.complete_frame(s, job_id, i)
                wins += ops.finalize_if_complete(s, job_id) is not None
    print(wins)
""")


def test_concurrent_processes_finalize_exactly_once(sessions, pg_url, tmp_path):
    from blockreg.db import Job, ops

    n = 200
    with sessions() as s:
        job_id = ops.create_job(s, spec={}, frames=range(n), output_path="/data/x")
        ops.enqueue_pending(s, job_id, n)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, pg_url, str(job_id), str(k), str(n),
                               str(go)], stdout=subprocess.PIPE, text=True) for k in range(4)]
    time.sleep(1.5)
    go.touch()
    wins = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(wins) == 1
    with sessions() as s:
        job = s.get(Job, job_id, populate_existing=True)
        assert (job.state, job.frames_done, job.frames_failed) == ("succeeded", n, 0)


def test_submit_100k_frame_job_through_the_api(pg_url, tmp_path, monkeypatch):
    """POST /api/v1/jobs for a 100,000-frame input returns 201 in under 5 s on PostgreSQL."""
    import numpy as np

    from blockreg_services.coordinator import create_app

    class Broker:
        def send_task(self, *args, **kwargs):
            pass

    movie = tmp_path / "long.npy"
    np.save(movie, np.random.default_rng(0).integers(100, 200, size=(100_000, 8, 8)).astype(np.uint16))
    app = create_app({"DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path / "data"),
                      "ALLOWED_ROOTS": None, "DISPATCHER": False, "CELERY": Broker()})
    spec = {"input": {"path": str(movie)},
            "params": {"gridsize": [2, 2], "maxshift": [3, 3], "lambda": 0.1}}
    start = time.perf_counter()
    response = app.test_client().post("/api/v1/jobs", json=spec)
    elapsed = time.perf_counter() - start
    app.extensions["blockreg"].engine.dispose()
    print(f"\nPOST /api/v1/jobs, 100,000 frames, PostgreSQL: {elapsed:.2f} s")
    assert response.status_code == 201, response.json
    assert elapsed < 5.0
