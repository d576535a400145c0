"""blockreg.orchestrate.fairness: places in the broker shared between users, then their jobs."""
from __future__ import annotations

from blockreg.orchestrate.fairness import JobLoad, Limits, allocate, jobs_over_user_limit


def load(job_id, owner, queued=0, in_flight=0, batch=8, pending=True):
    return JobLoad(job_id, owner, queued, in_flight, batch, pending)


def test_a_new_users_job_gets_the_next_free_place():
    # A's long job fills the broker; one place frees up: it goes to B, not to A
    jobs = [load(1, "A", queued=3, in_flight=40), load(2, "B")]
    assert allocate(jobs, Limits(max_queued_batches=4)) == {1: 0, 2: 1}


def test_places_alternate_between_users_then_jobs():
    jobs = [load(1, "A"), load(2, "A"), load(3, "B")]
    grant = allocate(jobs, Limits(max_queued_batches=4))
    assert grant == {1: 1, 2: 1, 3: 2}  # two per user, A's split between its jobs
    assert sum(allocate(jobs, Limits(max_queued_batches=3)).values()) == 3


def test_a_full_broker_sends_nothing():
    jobs = [load(1, "A", queued=4), load(2, "B")]
    assert allocate(jobs, Limits(max_queued_batches=4)) == {1: 0, 2: 0}


def test_per_job_and_per_user_limits():
    limits = Limits(max_queued_batches=10, max_batches_per_job=2, user_max_jobs=1,
                    user_max_frames_in_flight=20)
    jobs = [load(1, "A"), load(2, "A"), load(3, "B", in_flight=16)]
    grant = allocate(jobs, limits)
    assert grant[2] == 0                 # A's second job waits: user limit
    assert grant[1] == 2                 # the per-job cap
    assert grant[3] == 0                 # 16 + 8 frames would pass B's 20
    assert jobs_over_user_limit(jobs, 1) == {2}


def test_a_user_with_nothing_in_flight_may_send_one_large_batch():
    limits = Limits(max_queued_batches=4, user_max_frames_in_flight=10)
    assert allocate([load(1, "A", batch=64)], limits) == {1: 1}


def test_jobs_without_pending_frames_or_owner():
    jobs = [load(1, None, pending=False), load(2, None)]
    assert allocate(jobs, Limits(max_queued_batches=2)) == {1: 0, 2: 2}


def test_each_queue_shares_its_own_places(tmp_path):
    """A gpu job whose messages nobody consumes does not hold back the cpu jobs (fair_caps)."""
    from blockreg.db import make_engine, ops, session_factory
    from blockreg.db.migrate import migrate
    from blockreg.orchestrate.shares import fair_caps
    from blockreg.orchestrate.shards import enqueue_shards

    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    try:
        with sessions() as s:
            gpu = ops.create_job(s, spec={}, frames=range(64), output_path="/g", queue="gpu")
            cpu = ops.create_job(s, spec={}, frames=range(64), output_path="/c", queue="cpu")
            assert len(enqueue_shards(s, gpu, 4)) == 4  # the gpu queue's places are all taken
            caps = fair_caps(s, [gpu, cpu], Limits(max_queued_batches=4))
        assert caps == {gpu: 4, cpu: 4}
        with sessions() as s:  # the gpu job gets no more, the cpu job its 4 places
            assert enqueue_shards(s, gpu, caps[gpu]) == []
            assert len(enqueue_shards(s, cpu, caps[cpu])) == 4
    finally:
        engine.dispose()
