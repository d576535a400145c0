"""Two coordinators started at once on one empty PostgreSQL database.

Each "coordinator" is what compose starts for one: ``blockreg db upgrade``, then the API (waitress)
and a dispatcher, all real processes, plus two real Celery workers. Both upgrades run at once on
the empty database: one creates the schema, the other waits for the lock and finds it current.
Both dispatchers run: one holds the lock and acts. A job submitted to either coordinator finishes
with every frame claimed once; when the active dispatcher is killed the other takes over.

Isolation: a fresh PostgreSQL database, the session's Redis database number and a queue name of
this test's own (the session's workers consume ``cpu`` on the same Redis).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import requests

from helpers.services import fresh_postgres_database, free_port

pytestmark = pytest.mark.integration

SPEC = {"fixed_index": 0, "preprocess": {"bias": 100.0, "sigma_lp": 1.0, "sigma_hp": 8.0},
        "params": {"gridsize": [2, 2], "maxshift": [3, 3], "lambda": 1e-3}, "monitor": ["u"]}
NFRAMES = 6


class Processes:
    """Child processes with one log file each; all killed at the end."""

    def __init__(self, folder, env):
        self.folder = folder
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name, *argv):
        log = open(self.folder / f"{name}.log", "wb")
        self.children[name] = subprocess.Popen(
            [sys.executable, *argv], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self.children[name]

    def log(self, name) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self):
        for proc in self.children.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _healthy(url) -> bool:
    try:
        return requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _active_dispatcher(procs) -> str | None:
    active = [name for name in ("dispatcher-1", "dispatcher-2")
              if procs.children[name].poll() is None and "dispatcher active" in procs.log(name)]
    assert len(active) <= 1, active
    return active[0] if active else None


def test_two_coordinators_share_one_schema_and_dispatch_each_frame_once(tmp_path, redis_url):
    from sqlalchemy import create_engine, text

    from blockreg import Client
    from blockreg.synthetic import make_movie

    frames, _, _ = make_movie((48, 48), NFRAMES, max_translation=2, max_local=1, seed=5)
    np.save(tmp_path / "movie.npy", frames)
    spec = dict(SPEC, input={"path": str(tmp_path / "movie.npy")})

    with fresh_postgres_database() as database_url:
        env = dict(os.environ, BLOCKREG_DATABASE_URL=database_url, BLOCKREG_BROKER_URL=redis_url,
                   BLOCKREG_QUEUE=f"two-coordinators-{uuid.uuid4().hex[:8]}",
                   BLOCKREG_DATA_DIR=str(tmp_path / "data"), BLOCKREG_HOME=str(tmp_path),
                   BLOCKREG_DISPATCH_INTERVAL_S="0.5", BLOCKREG_FFT_WORKERS="1",
                   REMAP_SIGTERM="SIGQUIT", PYTHONUNBUFFERED="1")
        procs = Processes(tmp_path, env)
        try:
            # both start-ups migrate the empty database at the same moment (unserialised, one
            # of two such upgrades fails: "duplicate key value violates unique constraint")
            at = time.time() + 3
            upgrade = ("import sys, time\n"
                       "from blockreg_services.cli import main\n"
                       f"time.sleep(max(0.0, {at} - time.time()))\n"
                       "sys.exit(main(['db', 'upgrade']))\n")
            upgrades = [procs.start(f"upgrade-{i}", "-c", upgrade) for i in (1, 2)]
            for i, proc in enumerate(upgrades, 1):
                assert proc.wait(120) == 0, procs.log(f"upgrade-{i}")
            urls = []
            for i in (1, 2):
                port = free_port()
                procs.start(f"coordinator-{i}", "-m", "blockreg_services.coordinator",
                            "--port", str(port))
                procs.start(f"dispatcher-{i}", "-m", "blockreg_services.dispatcher")
                procs.start(f"worker-{i}", "-m", "celery", "-A", "blockreg_services.worker",
                            "worker", "--queues", env["BLOCKREG_QUEUE"], "--concurrency", "1",
                            "--pool", "prefork", "--loglevel", "INFO",
                            "--hostname", f"two-coordinators-{i}@%h")
                urls.append(f"http://127.0.0.1:{port}")
            _wait_for(lambda: all(_healthy(url) for url in urls), 60, "both coordinators")
            _wait_for(lambda: _active_dispatcher(procs), 30, "an active dispatcher")

            engine = create_engine(database_url)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
                tables = set(conn.execute(text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
            assert {"job", "frame", "frame_scalar", "worker_heartbeat", "alembic_version"} <= tables

            jobs = [Client(url).submit(spec) for url in urls]  # one job through each
            for url, job in zip(urls, jobs):
                assert Client(url).wait(job, timeout=120)["state"] == "succeeded"

            # the active dispatcher dies: the other one takes over and serves the next job
            first = _active_dispatcher(procs)
            os.killpg(procs.children[first].pid, signal.SIGKILL)
            procs.children[first].wait()
            _wait_for(lambda: _active_dispatcher(procs) not in (None, first), 30,
                      "the standby dispatcher to take over")
            jobs.append(Client(urls[0]).submit(spec))
            assert Client(urls[1]).wait(jobs[-1], timeout=120)["state"] == "succeeded"

            with engine.connect() as conn:
                rows = conn.execute(text("SELECT job_id, state, attempts FROM frame")).all()
            engine.dispose()
            assert len(rows) == NFRAMES * len(jobs)
            assert {(state, attempts) for _, state, attempts in rows} == {("done", 1)}
            for name in ("upgrade-1", "upgrade-2", "coordinator-1", "coordinator-2"):
                assert "Traceback" not in procs.log(name), procs.log(name)
        finally:
            procs.stop()
