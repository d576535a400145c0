"""The dispatcher process (blockreg_services.dispatcher): prompt dispatch of new jobs, one active
dispatcher per database, and the database lock it relies on.

SQLite here (the lock is a file lock); the same on PostgreSQL, with processes killed for real, is
tests/integration/test_two_coordinators.py.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time

from blockreg import settings
from blockreg.db import ops
from blockreg.db.locks import DatabaseLock
from blockreg_services.dispatcher import Dispatcher, heartbeat_is_fresh, main
from helpers.service_fakes import FakeBroker


def new_job(sessions, frames=10) -> int:
    with sessions() as session:
        return ops.create_job(session, spec={}, frames=range(frames), output_path="/tmp/x.zarr")


class Running:
    """A Dispatcher in a thread, stopped (and its lock released) on exit."""

    def __init__(self, sessions, url, broker, tmp_path=None, **options):
        s = settings.load({}, max_batches_per_job=2, **options)
        heartbeat = tmp_path / "alive" if tmp_path else None
        self.dispatcher = Dispatcher(sessions, broker, DatabaseLock(url, "dispatcher"), s,
                                     heartbeat=heartbeat)
        self.thread = threading.Thread(target=self.dispatcher.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.dispatcher

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.dispatcher.stop()
        if self.thread.is_alive():
            self.thread.join(10)
        assert not self.thread.is_alive()


def lock_is_free(url, name="dispatcher") -> bool:
    lock = DatabaseLock(url, name)
    free = lock.acquire(blocking=False)
    lock.release()
    return free


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_new_job_is_dispatched_at_the_next_poll_not_the_next_round(sessions, url, tmp_path):
    broker = FakeBroker()
    # a round every minute: only the poll for new jobs can send the job's batches in time
    with Running(sessions, url, broker, tmp_path, dispatch_interval_s=60.0,
                 dispatch_poll_s=0.05) as dispatcher:
        assert wait_for(lambda: dispatcher.active)
        time.sleep(0.2)  # the first round ran before the job existed
        job_id = new_job(sessions, frames=64)  # shards of ceil(64 / 16) = 4 frames
        submitted = time.monotonic()
        assert wait_for(lambda: len(broker.sent) == 2, timeout=5)
        latency = time.monotonic() - submitted
    assert [(job, list(frames)) for _, (job, frames), _ in broker.sent] == [
        (job_id, [0, 1, 2, 3]), (job_id, [4, 5, 6, 7])]
    assert latency < 2.0
    assert heartbeat_is_fresh(tmp_path / "alive", 30)
    assert not heartbeat_is_fresh(tmp_path / "missing", 30)


def test_one_dispatcher_acts_and_a_standby_takes_over(sessions, url):
    options = dict(dispatch_interval_s=0.1, dispatch_poll_s=0.02)
    brokers = [FakeBroker(), FakeBroker()]
    runs = [Running(sessions, url, broker, **options) for broker in brokers]
    try:
        for run in runs:
            run.thread.start()
        assert wait_for(lambda: any(run.dispatcher.active for run in runs))
        time.sleep(0.3)
        assert [run.dispatcher.active for run in runs].count(True) == 1  # one holds the lock
        active = 0 if runs[0].dispatcher.active else 1
        standby = 1 - active
        job_id = new_job(sessions, frames=64)  # shards of 4 frames, 2 batches out at once
        assert wait_for(lambda: brokers[active].sent)
        time.sleep(0.3)
        assert brokers[standby].sent == []
        # the active one goes away: the standby takes over and serves the next job
        runs[active].stop()
        assert wait_for(lambda: runs[standby].dispatcher.active, timeout=5)
        later = new_job(sessions, frames=4)
        assert wait_for(lambda: any(args[0] == later for _, args, _ in brokers[standby].sent))
    finally:
        for run in runs:
            run.stop()
    sent = [frame for broker in brokers for _, (job, frames), _ in broker.sent for frame in frames
            if job == job_id]
    assert sorted(sent) == list(range(8))  # two shards of the first job, each sent once


def test_database_lock_excludes_until_released(url):
    holder, other = DatabaseLock(url, "x"), DatabaseLock(url, "x")
    assert holder.acquire(blocking=False) and holder.held()
    assert not other.acquire(blocking=False)
    assert DatabaseLock(url, "another name").acquire(blocking=False)
    holder.release()
    assert not holder.held()
    assert other.acquire(blocking=False)
    other.release()


def test_a_killed_holder_frees_the_lock(url):
    code = ("import sys, time\n"
            "from blockreg.db.locks import DatabaseLock\n"
            f"lock = DatabaseLock({url!r}, 'dispatcher')\n"
            "assert lock.acquire(blocking=False)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert not lock_is_free(url)
    finally:
        proc.kill()
        proc.wait()
    assert lock_is_free(url)


def test_the_health_check_reads_the_heartbeat(tmp_path):
    beat = tmp_path / "alive"
    assert main(["--check-heartbeat", str(beat)]) == 1
    beat.touch()
    assert main(["--check-heartbeat", str(beat)]) == 0


def test_the_process_stops_on_sigterm_and_releases_the_lock(url, tmp_path):
    import os
    import signal

    env = dict(os.environ, BLOCKREG_DATABASE_URL=url, BLOCKREG_BROKER_URL="redis://127.0.0.1:1/0")
    proc = subprocess.Popen([sys.executable, "-m", "blockreg_services.dispatcher",
                             "--heartbeat", str(tmp_path / "alive")],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (tmp_path / "alive").exists(), timeout=30)
        assert wait_for(lambda: not lock_is_free(url))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "dispatcher stopped" in proc.stderr.read()
    assert lock_is_free(url)


def test_a_job_held_back_does_not_make_every_poll_a_round(sessions, url, monkeypatch):
    """A job the round saw and held back (here: its owner's job limit) stays queued; the polls
    look only for newer jobs, so rounds stay at dispatch_interval_s."""
    from blockreg.orchestrate import dispatch

    rounds = []
    original = dispatch.dispatch_once
    monkeypatch.setattr(dispatch, "dispatch_once",
                        lambda *a, **k: rounds.append(1) or original(*a, **k))
    monkeypatch.setenv("BLOCKREG_USER_MAX_JOBS", "1")
    first, held = new_job(sessions), new_job(sessions)
    broker = FakeBroker()
    with Running(sessions, url, broker, dispatch_interval_s=60.0,
                 dispatch_poll_s=0.02) as dispatcher:
        assert wait_for(lambda: dispatcher.active and rounds)
        time.sleep(0.5)  # 25 polls
        assert len(rounds) == 1
        assert {job for _, (job, _), _ in broker.sent} == {first}
        newer = new_job(sessions)  # a new job still starts a round at the next poll
        assert wait_for(lambda: len(rounds) == 2, timeout=5)
    with sessions() as session:
        assert session.get(dispatch.Job, held).state == "queued"
    assert newer > held
