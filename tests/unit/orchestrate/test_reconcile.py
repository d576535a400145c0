"""The reconciler's decisions (pure) and its passes on a SQLite database (the broker faked by a
list of messages; the real Redis is in tests/integration/test_faults_*.py)."""
from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from blockreg import settings
from blockreg.celery_app import TASK_REGISTER_FRAMES
from blockreg.db import Frame, WorkerHeartbeat, make_engine, ops, queries, session_factory, workers
from blockreg.orchestrate import reconcile
from blockreg.orchestrate.reconcile import BrokerMessage, Reconciler, lost_queued, lost_running


def kombu_payload(task_id, job_id, frames, task=TASK_REGISTER_FRAMES):
    body = base64.b64encode(json.dumps([[job_id, frames], {}, {}]).encode()).decode()
    return json.dumps({"body": body, "headers": {"id": task_id, "task": task},
                       "properties": {"body_encoding": "base64"}})


def test_decode_message_reads_queue_and_unacked_entries():
    raw = kombu_payload("t1", 3, [0, 1])
    assert reconcile.decode_message(raw) == BrokerMessage("t1", 3, (0, 1), None)
    unacked = json.dumps([json.loads(raw), "", "cpu"])
    assert reconcile.decode_message(unacked, 5.0) == BrokerMessage("t1", 3, (0, 1), 5.0)
    assert reconcile.decode_message(kombu_payload("t2", 3, [0], task="other")) is None
    assert reconcile.decode_message("not json") is None


def test_lost_queued_keeps_frames_of_waiting_and_live_messages():
    queued = [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4)]
    messages = [BrokerMessage("wait", 1, (0,)),                      # waiting in the queue
                BrokerMessage("live", 1, (1,), delivered_at=90.0),    # claimed by a live worker
                BrokerMessage("dead", 1, (2,), delivered_at=90.0),    # claimed by a dead one
                BrokerMessage("new", 1, (3,), delivered_at=99.0)]     # delivered, not claimed yet
    claimed = {"live": {"w:1"}, "dead": {"w:2"}}
    lost = lost_queued(queued, messages, claimed, {"w:1"}, now=100.0, delivery_grace_s=5.0)
    assert lost == {(1, 2), (1, 4)}
    # a delivered message nobody claimed for longer than the grace is dead too
    assert lost_queued([(1, 3)], messages, claimed, set(), now=200.0,
                       delivery_grace_s=5.0) == {(1, 3)}


def test_lost_running_is_the_frames_of_silent_workers():
    running = [(1, 0, "a:1"), (1, 1, "b:2")]
    assert lost_running(running, {"a:1"}) == {(1, 1, "b:2")}


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ops.migrate(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


class FakeBroker:
    """A Celery stand-in whose broker holds ``messages`` (reconcile.broker_messages is patched)."""

    def __init__(self):
        self.messages = []


def age(sessions, job_id, seconds):
    """Make every frame of the job look queued/started ``seconds`` ago."""
    with sessions() as s:
        past = ops.utcnow() - timedelta(seconds=seconds)
        s.execute(update(Frame).where(Frame.job_id == job_id)
                  .values(enqueued_at=past, started_at=past))
        s.commit()


def test_reconciler_returns_forgotten_and_orphaned_frames_after_two_passes(sessions, monkeypatch):
    broker = FakeBroker()
    monkeypatch.setattr(reconcile, "broker_messages", lambda app, queues: list(broker.messages))
    s = settings.load({}, queued_grace_s=1, worker_lost_s=1, max_attempts=2)
    with sessions() as session:
        job_id = ops.create_job(session, spec={}, frames=range(6), output_path="/tmp/x")
        assert ops.enqueue_pending(session, job_id, 6) == list(range(6))
        workers.record_heartbeat(session, hostname="live:1", pid=1)
        workers.record_heartbeat(session, hostname="dead:2", pid=2)
        assert ops.claim_frame(session, job_id, 0, "live:1", task_id="m0") is not None
        assert ops.claim_frame(session, job_id, 1, "dead:2", task_id="m1") is not None
    age(sessions, job_id, 10)
    with sessions() as session:  # the dead worker went silent; the live one beats
        session.execute(update(WorkerHeartbeat).where(WorkerHeartbeat.pid == 2)
                        .values(last_seen=ops.utcnow() - timedelta(seconds=10)))
        session.commit()
        workers.record_heartbeat(session, hostname="live:1", pid=1)
    # frames 2, 3 travel in a waiting message; 4, 5 were forgotten by the broker
    broker.messages = [BrokerMessage("m2", job_id, (2, 3))]
    rec = Reconciler(object(), s)
    with sessions() as session:
        assert rec.run(session) == 0          # first pass: suspects only
        assert rec.run(session) == 3          # second pass agrees: 1 (dead worker), 4, 5
        states = {f.index: f.state for f in queries.list_frames(session, job_id)[0]}
    assert states == {0: "running", 1: "pending", 2: "queued", 3: "queued", 4: "pending",
                      5: "pending"}


def test_a_frame_that_loses_its_worker_max_attempts_times_fails(sessions, monkeypatch):
    monkeypatch.setattr(reconcile, "broker_messages", lambda app, queues: [])
    s = settings.load({}, queued_grace_s=1, worker_lost_s=1, max_attempts=1)
    with sessions() as session:
        job_id = ops.create_job(session, spec={}, frames=range(1), output_path="/tmp/x")
        ops.enqueue_pending(session, job_id, 1)
        ops.claim_frame(session, job_id, 0, "gone:9", task_id="m")
    age(sessions, job_id, 10)
    rec = Reconciler(object(), s)
    with sessions() as session:
        rec.run(session)
        assert rec.run(session) == 1
        frame = queries.list_frames(session, job_id)[0][0]
        assert (frame.state, frame.error) == ("failed", "worker lost 1 times while running this frame")
        assert queries.get_job(session, job_id).frames_failed == 1


def test_a_frame_claimed_again_between_the_passes_is_left_alone(sessions, monkeypatch):
    monkeypatch.setattr(reconcile, "broker_messages", lambda app, queues: [])
    s = settings.load({}, queued_grace_s=1, worker_lost_s=1)
    with sessions() as session:
        job_id = ops.create_job(session, spec={}, frames=range(1), output_path="/tmp/x")
        ops.enqueue_pending(session, job_id, 1)
    age(sessions, job_id, 10)
    rec = Reconciler(object(), s)
    with sessions() as session:
        rec.run(session)
        workers.record_heartbeat(session, hostname="w:1", pid=1)
        assert ops.claim_frame(session, job_id, 0, "w:1") is not None
        assert rec.run(session) == 0
        assert queries.list_frames(session, job_id)[0][0].state == "running"
