"""A worker killed in the middle of its shard loses nothing (issue 9: sharded stores).

A real worker process (``run_frames`` in a child Python, on a PostgreSQL database of its own, no
dispatcher of the session's service involved) registers one shard of a job, slowly, and is killed
with SIGKILL part-way.  Then:

- every frame the database records done has its values in the store (a frame is recorded done
  only after its buffered values were written);
- the broker's redelivery of the same message (same task id) takes back the frames the dead
  worker held and writes them into the same shard, keeping the frames already there;
- in the end every frame of the shard holds the value computed directly from the movie, and the
  other shards were not touched.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import service_fakes as fakes
from helpers.api_app import toy_spec_for
from helpers.services import fresh_postgres_database

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]

WORKER = """
import sys, time
import helpers.toy_algorithm  # registers "mean-shift"
from helpers import service_fakes as fakes
import blockreg.orchestrate.batch as batch
from blockreg.db.session import make_engine, session_factory
from blockreg.orchestrate.frames import run_frames

slow = fakes.MeanShiftAlgorithm.run_frame
def run_frame(self, frame, t, wanted):
    time.sleep(0.08)
    return slow(self, frame, t, wanted)
fakes.MeanShiftAlgorithm.run_frame = run_frame
batch.ShardBuffer.__init__.__defaults__ = (batch.FLUSH_BYTES, 0.25)  # flush often
url, job_id, frames = sys.argv[1], int(sys.argv[2]), [int(i) for i in sys.argv[3].split(",")]
run_frames(job_id, frames, worker="doomed", sessions=session_factory(make_engine(url)),
           task_id="message-1")
"""


@pytest.fixture
def own_database():
    from blockreg.db.migrate import migrate

    with fresh_postgres_database() as url:
        migrate(url)
        yield url


def test_worker_killed_mid_shard_loses_nothing(own_database, tmp_path):
    from blockreg.db import queries
    from blockreg.db.session import make_engine, session_factory
    from blockreg.jobspec import validate_spec
    from blockreg.orchestrate.dispatch import dispatch_once
    from blockreg.orchestrate.frames import run_frames
    from blockreg.orchestrate.submit import submit_job
    from blockreg.registry import registered
    from blockreg.store import member, open_store

    n_frames = 320                        # shards of min(64, ceil(320 / 16)) = 20 frames
    movie = fakes.make_movie(tmp_path / "m.npy", shape=(n_frames, 12, 10), seed=3)
    engine = make_engine(own_database)
    sessions = session_factory(engine)
    broker = fakes.FakeBroker()
    with registered(fakes.MEAN_SHIFT):
        spec = validate_spec(toy_spec_for(tmp_path / "m.npy", fixed_index=0,
                                          params={"gridsize": [2, 2]},
                                          monitor=["u", "mismatch", "warped"]))
        with sessions() as session:
            job_id = submit_job(session, spec, data_dir=tmp_path)
            dispatch_once(session, broker, max_batches=1)
            path = queries.get_job(session, job_id).output_path
        shard = broker.sent[0][1][1]
        assert shard == list(range(20))
        assert open_store(path).attrs["blockreg"]["shard_frames"] == 20

        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        child = subprocess.Popen([sys.executable, "-c", WORKER, own_database, str(job_id),
                                  ",".join(map(str, shard))], env=env)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with sessions() as session:
                    done = queries.count_frames(session, job_id, "done")
                if done >= 5 or child.poll() is not None:
                    break
                time.sleep(0.02)
            assert child.poll() is None, "the worker ended before it could be killed"
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
        assert 5 <= done < len(shard)

        expected_u = [fakes.expected_u(movie, t, 0, [[0, 12], [0, 10]], [2, 2], 100)
                      for t in range(n_frames)]
        expected_warped = fakes.shot_noise_flattened(movie, 100)

        def check_done_frames_are_stored():
            store = open_store(path)
            with sessions() as session:
                rows, _ = queries.list_frames(session, job_id, state="done", limit=n_frames)
                indices = [row.index for row in rows]
            for index in indices:
                np.testing.assert_allclose(store["u"][index], expected_u[index], rtol=1e-6)
                np.testing.assert_array_equal(member(store, "warped")[index],
                                              expected_warped[index])
            return indices

        before = check_done_frames_are_stored()
        assert len(before) >= 5
        # the broker redelivers the message (acks_late, the worker was lost): same task id
        counts = run_frames(job_id, shard, worker="heir", sessions=sessions, task_id="message-1")
        assert counts["done"] == len(shard) - len(before) and counts["failed"] == 0
        after = check_done_frames_are_stored()
        assert sorted(after) == shard
        # the frames of the other shards were never written
        store = open_store(path)
        assert np.isnan(store["u"][20:]).all() and np.isnan(member(store, "warped")[20:]).all()
    engine.dispose()
