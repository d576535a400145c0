"""Database models, migrations and the atomic state transitions, on SQLite."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, update

from blockreg.db import Base, Frame, FrameScalar, Job, make_engine, ops, queries, workers
from helpers.finalize_race import race_to_finalize


def new_job(sessions, n=10, **kwargs):
    with sessions() as s:
        return ops.create_job(s, spec={"k": 1}, frames=range(100, 100 + n),
                              output_path="/tmp/out-{id}.zarr", **kwargs)


def job(sessions, job_id):
    with sessions() as s:
        return s.get(Job, job_id)


def test_migrated_schema_matches_the_models(url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                   for p in ("journal_mode", "foreign_keys", "synchronous")}
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1}
    engine.dispose()


def test_downgrade_and_upgrade_again(url):
    from alembic import command

    command.downgrade(ops.alembic_config(url), "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    ops.migrate(url)
    assert {"job", "frame", "frame_scalar", "worker_heartbeat"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_create_job_rows(sessions):
    job_id = new_job(sessions, n=5, name="x")
    j = job(sessions, job_id)
    assert (j.state, j.frames_total, j.frames_done, j.output_path) == (
        "queued", 5, 0, f"/tmp/out-{job_id}.zarr")
    with sessions() as s:
        rows = s.execute(select(Frame.index, Frame.source_t, Frame.state)
                         .where(Frame.job_id == job_id).order_by(Frame.index)).all()
    assert rows == [(i, 100 + i, "pending") for i in range(5)]


def test_create_job_rolls_back_when_the_hook_fails(sessions):
    def boom(job_id, path):
        raise OSError("disk full")

    with pytest.raises(OSError), sessions() as s:
        ops.create_job(s, spec={}, frames=[0, 1], output_path="x", before_commit=boom)
    with sessions() as s:
        assert s.scalars(select(Job)).all() == [] and s.scalars(select(Frame)).all() == []
    with pytest.raises(ValueError, match="frames"), sessions() as s:
        ops.create_job(s, spec={}, frames=[], output_path="x")


def test_bulk_insert_of_100k_frames(sessions):
    # the bulk path (its speed is in BENCHMARKS.md, from benchmarks/bench_service.py)
    job_id = new_job(sessions, n=100_000)
    with sessions() as s:
        assert queries.count_frames(s, job_id, "pending") == 100_000


def test_a_batch_is_claimed_in_one_statement_whatever_its_size(sessions):
    from sqlalchemy import event

    from blockreg.orchestrate.batch import claim_batch

    job_id = new_job(sessions, n=64)
    with sessions() as s:
        assert ops.claim_frame(s, job_id, 3, "other") == 103     # running elsewhere
        assert ops.claim_frame(s, job_id, 4, "w") == 104 and ops.complete_frame(s, job_id, 4)
    statements = []
    event.listen(sessions.kw["bind"], "before_cursor_execute",
                 lambda conn, cursor, statement, *a: statements.append(statement))
    with sessions() as s:
        claimed = claim_batch(s, job_id, range(64), "w", "T")  # the worker's claim
    assert claimed == {i: 100 + i for i in range(64) if i not in (3, 4)}
    assert sum(q.lstrip().upper().startswith("UPDATE FRAME") for q in statements) == 1
    with sessions() as s:  # the message redelivered: its frames are claimed again
        assert ops.claim_frames(s, job_id, [0, 1, 3], "w2", task_id="T") == {0: 100, 1: 101}
        assert ops.claim_frames(s, job_id, [0], "w3", task_id="U") == {}
        assert s.get(Frame, (job_id, 0)).attempts == 2


def test_a_written_buffer_is_recorded_done_in_one_commit(sessions, monkeypatch):
    from sqlalchemy import event

    import blockreg.store
    from blockreg.orchestrate.batch import ShardBuffer

    monkeypatch.setattr(blockreg.store, "write_frame_set", lambda store, indices, values: None)
    job_id = new_job(sessions, n=16)
    with sessions() as s:
        ops.claim_frames(s, job_id, range(16), "w")
        assert ops.complete_frame(s, job_id, 5, {"m": 9.0})  # done before: not counted again
    commits = []
    event.listen(sessions.kw["bind"], "commit", lambda conn: commits.append(1))
    buffer = ShardBuffer()
    for index in range(16):
        buffer.add(index, {"m": float(index)}, 0.1)
    with sessions() as s:
        assert buffer.flush(None, s, job_id, lambda values: values) == 15
        assert len(commits) == 1
        assert s.get(Job, job_id).frames_done == 16
        scalars = dict(s.execute(select(FrameScalar.index, FrameScalar.value)
                                 .where(FrameScalar.job_id == job_id)).all())
    assert scalars == {i: (9.0 if i == 5 else float(i)) for i in range(16)}


def test_claim_complete_and_idempotence(sessions):
    job_id = new_job(sessions, n=3)
    with sessions() as s:
        assert ops.claim_frame(s, job_id, 1, "w") == 101
        assert ops.claim_frame(s, job_id, 1, "w2") is None  # already running elsewhere
        assert ops.complete_frame(s, job_id, 1, {"mismatch": 0.5, "lambda": float("nan")}, 1.5)
        assert not ops.complete_frame(s, job_id, 1, {"mismatch": 9.0})  # redelivered: no-op
        assert ops.claim_frame(s, job_id, 1, "w") is None  # done frames are skipped
        frame = s.get(Frame, (job_id, 1))
        scalars = dict(s.execute(select(FrameScalar.name, FrameScalar.value)
                                 .where(FrameScalar.job_id == job_id)).all())
    assert (frame.state, frame.attempts, frame.worker, frame.duration_s) == ("done", 1, "w", 1.5)
    assert scalars == {"mismatch": 0.5, "lambda": None}  # NaN stored as NULL
    j = job(sessions, job_id)
    assert (j.state, j.frames_done) == ("running", 1) and j.started_at is not None


def test_finalize_exactly_once_and_failure_summary(sessions):
    job_id = new_job(sessions, n=3)
    with sessions() as s:
        ops.complete_frame(s, job_id, 0)
        assert ops.finalize_if_complete(s, job_id) is None  # job still queued with frames open
        assert ops.fail_frame(s, job_id, 2, "ValueError: bad frame")
        assert not ops.fail_frame(s, job_id, 2, "again")  # counted once
        ops.enqueue_pending(s, job_id, 10)  # marks the job running
        assert ops.finalize_if_complete(s, job_id) is None
        ops.complete_frame(s, job_id, 1)
        assert ops.finalize_if_complete(s, job_id) == "failed"
        assert ops.finalize_if_complete(s, job_id) is None
    j = job(sessions, job_id)
    assert (j.frames_done, j.frames_failed, j.state) == (2, 1, "failed")
    assert j.error == "1 of 3 frames failed; first (frame 2): ValueError: bad frame"


def test_cancel(sessions):
    job_id = new_job(sessions, n=2)
    with sessions() as s:
        assert ops.cancel_job(s, job_id)
        assert not ops.cancel_job(s, job_id)
        assert ops.claim_frame(s, job_id, 0, "w") is None
        assert ops.enqueue_pending(s, job_id, 10) == []
        assert ops.finalize_if_complete(s, job_id) is None
    assert job(sessions, job_id).state == "cancelled"


def test_enqueue_and_requeue_stale(sessions):
    job_id = new_job(sessions, n=6)
    with sessions() as s:
        assert ops.enqueue_pending(s, job_id, 4) == [0, 1, 2, 3]
        assert ops.enqueue_pending(s, job_id, 4) == [4, 5]
        assert ops.claim_frame(s, job_id, 0, "w") == 100
        assert workers.requeue_stale(s, queued_lease_s=60, running_lease_s=60) == 0
        # age the running frame and one queued frame past their leases
        old = ops.utcnow() - timedelta(hours=1)
        s.execute(update(Frame).where(Frame.job_id == job_id, Frame.index.in_([0, 1]))
                  .values(started_at=old, enqueued_at=old))
        s.commit()
        assert workers.requeue_stale(s, queued_lease_s=60, running_lease_s=60) == 2
        assert ops.enqueue_pending(s, job_id, 10) == [0, 1]
        assert ops.release_frames(s, job_id, [0, 1]) == 2
        assert queries.count_frames(s, job_id, "pending") == 2


def test_redelivered_message_reclaims_its_running_frame(sessions):
    # a worker killed mid-frame leaves it `running`; the same message comes back (acks_late)
    job_id = new_job(sessions, n=2)
    with sessions() as s:
        assert ops.claim_frame(s, job_id, 0, "w1", task_id="T") == 100
        # ... the worker dies here ...
        assert ops.claim_frame(s, job_id, 0, "w2", task_id="other") is None
        assert ops.claim_frame(s, job_id, 0, "w2") is None
        assert ops.claim_frame(s, job_id, 0, "w2", task_id="T") == 100
        frame = s.get(Frame, (job_id, 0), populate_existing=True)
        assert (frame.state, frame.worker, frame.task_id, frame.attempts) == ("running", "w2", "T", 2)
        assert ops.complete_frame(s, job_id, 0)
        assert ops.claim_frame(s, job_id, 0, "w3", task_id="T") is None  # done stays done


def test_frame_that_keeps_killing_workers_fails(sessions):
    job_id = new_job(sessions, n=2)
    old = ops.utcnow() - timedelta(hours=1)

    def claim_and_lose(s, index, task_id):
        assert ops.claim_frame(s, job_id, index, "w", task_id=task_id) is not None
        s.execute(update(Frame).where(Frame.job_id == job_id, Frame.index == index)
                  .values(started_at=old))
        s.commit()

    with sessions() as s:
        assert ops.claim_frame(s, job_id, 1, "w") == 101 and ops.complete_frame(s, job_id, 1)
        for attempt in range(1, ops.MAX_ATTEMPTS):
            claim_and_lose(s, 0, f"T{attempt}")
            assert workers.requeue_stale(s, queued_lease_s=60, running_lease_s=60) == 1
            assert queries.count_frames(s, job_id, "pending") == 1  # re-queued while attempts remain
        claim_and_lose(s, 0, "T-last")
        # the same message redelivered after its last allowed attempt does not run it again
        assert ops.claim_frame(s, job_id, 0, "w", task_id="T-last") is None
        assert workers.requeue_stale(s, queued_lease_s=60, running_lease_s=60) == 1
        frame = s.get(Frame, (job_id, 0), populate_existing=True)
        assert frame.state == "failed"
        assert frame.error == f"worker lost {ops.MAX_ATTEMPTS} times while running this frame"
        assert ops.finalize_if_complete(s, job_id) == "failed"
    assert job(sessions, job_id).frames_failed == 1
    assert "worker lost" in job(sessions, job_id).error


def test_max_attempts_is_a_setting(sessions):
    job_id = new_job(sessions, n=1)
    with sessions() as s:
        assert ops.claim_frame(s, job_id, 0, "w") == 100
        s.execute(update(Frame).values(started_at=ops.utcnow() - timedelta(hours=1)))
        s.commit()
        assert workers.requeue_stale(s, queued_lease_s=60, running_lease_s=60, max_attempts=1) == 1
        assert queries.count_frames(s, job_id, "failed") == 1
        with pytest.raises(ValueError, match="max_attempts"):
            workers.requeue_stale(s, queued_lease_s=60, running_lease_s=60, max_attempts=0)


def test_timestamps_read_back_as_aware_utc(sessions):
    # SQLite has no time zones: the model layer gives every reader aware UTC datetimes
    from datetime import timezone

    job_id = new_job(sessions, n=2)
    with sessions() as s:
        ops.claim_frame(s, job_id, 0, "w")
        ops.complete_frame(s, job_id, 0)
    with sessions() as s:
        j = queries.get_job(s, job_id)
        frame = s.get(Frame, (job_id, 0))
        for value in (j.created_at, j.started_at, frame.started_at, frame.finished_at):
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        assert j.started_at >= j.created_at and j.elapsed_s >= 0
        assert j.finished_at is None  # elapsed runs to now while the job is active
    with sessions() as s:  # an aware non-UTC value is stored as the same instant
        later = j.created_at.astimezone(timezone(timedelta(hours=5)))
        s.execute(update(Job).where(Job.id == job_id).values(finished_at=later))
        s.commit()
        assert queries.get_job(s, job_id).finished_at == j.created_at
        assert queries.get_job(s, job_id).finished_at.tzinfo == timezone.utc


def test_list_and_paginate(sessions):
    ids = [new_job(sessions, n=4) for _ in range(3)]
    with sessions() as s:
        jobs, total = queries.list_jobs(s, offset=1, limit=1)
        assert total == 3 and [j.id for j in jobs] == [ids[1]]
        ops.complete_frame(s, ids[0], 2, {"mismatch": 2.0})
        frames, total = queries.list_frames(s, ids[0], offset=1, limit=2)
        assert total == 4 and [(f.index, f.scalars) for f in frames] == [(1, {}), (2, {"mismatch": 2.0})]
        ops.complete_frame(s, ids[0], 1, {"mismatch": 1.0, "lambda": 0.5})
        done, total = queries.list_frames(s, ids[0], state="done")
        assert total == 2 and [(f.index, f.scalars) for f in done] == [
            (1, {"lambda": 0.5, "mismatch": 1.0}), (2, {"mismatch": 2.0})]


def test_heartbeat_upsert(sessions):
    from blockreg.db import WorkerHeartbeat

    with sessions() as s:
        workers.record_heartbeat(s, hostname="h", pid=1)
        first = s.get(WorkerHeartbeat, ("h", 1)).last_seen
        workers.record_heartbeat(s, hostname="h", pid=1, device="cuda:0")
        rows = s.scalars(select(WorkerHeartbeat)).all()
    assert len(rows) == 1 and rows[0].device == "cuda:0" and rows[0].last_seen >= first


def test_forget_heartbeat_of_a_process_and_of_a_node(sessions):
    from blockreg.db import WorkerHeartbeat

    with sessions() as s:
        for name, pid in (("gpu-1@h:10", 10), ("gpu-1@h:11", 11), ("cpu-1@h:12", 12)):
            workers.record_heartbeat(s, hostname=name, pid=pid)
        assert workers.forget_heartbeat(s, "gpu-1@h:10") == 1
        assert workers.forget_heartbeat(s, "gpu-1@h:%", like=True) == 1
        left = [row.hostname for row in s.scalars(select(WorkerHeartbeat))]
    assert left == ["cpu-1@h:12"]


def test_concurrent_completions_finalize_once_threads(sessions):
    n = 40
    job_id = new_job(sessions, n=n)
    with sessions() as s:
        ops.enqueue_pending(s, job_id, n)
    winners = []

    def complete(indices):
        with sessions() as s:
            for i in indices:
                ops.complete_frame(s, job_id, i)
                ops.complete_frame(s, job_id, (i + 1) % n)  # duplicates must not double-count
                state = ops.finalize_if_complete(s, job_id)
                if state is not None:
                    winners.append(state)

    threads = [threading.Thread(target=complete, args=(range(k, n, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert winners == ["succeeded"]
    assert job(sessions, job_id).frames_done == n


@pytest.mark.slow
def test_concurrent_completions_finalize_once_processes(sessions, url, tmp_path):
    n = 60
    job_id = new_job(sessions, n=n)
    with sessions() as s:
        ops.enqueue_pending(s, job_id, n)
    go = tmp_path / "go"
    wins = race_to_finalize(url, job_id, n, 3, go)
    assert sum(wins) == 1
    j = job(sessions, job_id)
    assert (j.state, j.frames_done) == ("succeeded", n)
