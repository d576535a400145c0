"""Faults of the lab deployment's shape: PostgreSQL, a Redis with an append-only file (as
docker-compose.yml runs it), and separate dispatcher, coordinator and worker processes.

SIGKILL of one worker's main process, of Redis (restarted on its data, as compose's restart policy
does), a coordinator restart, and SIGKILL of every process followed by a restart: each time the job
finishes within two minutes, every frame is done once, and the output equals the undisturbed run
bit for bit.  Two coordinators at once: tests/integration/test_two_coordinators.py.

The Redis is this test's own (a free port, its own folder), so killing it disturbs nobody.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import requests

from helpers import faults
from helpers.services import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.isdir("/proc"), reason="process checks read /proc"),
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="needs redis-server to run a Redis of its own")]


class Redis:
    """A redis-server as compose runs it (append-only, noeviction) on a port of its own."""

    def __init__(self, folder):
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--maxmemory-policy", "noeviction", "--dir", str(self.folder), "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        faults.wait_for(lambda: redis.Redis(port=self.port).ping(), 20, what="Redis")

    def kill(self):
        faults.kill_group(self.proc.pid)
        self.proc.wait(10)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    return faults.job_and_expected(tmp_path_factory.mktemp("input"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """PostgreSQL + own Redis + dispatcher, coordinator and two workers, supervised in a thread
    (the compose restart policy's part)."""
    from blockreg_services.embedded import EmbeddedStack
    from helpers.services import fresh_postgres_database

    home = tmp_path_factory.mktemp("lab")
    redis_server = Redis(home)
    redis_server.start()
    try:
        with fresh_postgres_database() as database_url:
            with EmbeddedStack(home, port=0, workers=2, stop_timeout=10, database_url=database_url,
                               broker_url=redis_server.url, env=faults.FAST_RECOVERY_ENV) as stack:
                stack.redis_server = redis_server
                with faults.supervising(stack):
                    yield stack
    finally:
        redis_server.kill()


submit = faults.submit


@pytest.mark.parametrize("fault", ["worker-1", "redis", "coordinator"])
def test_a_fault_mid_job_on_postgresql_and_redis(lab, job, fault):
    spec, expected = job
    job_id = submit(lab.url, spec)
    faults.wait_until_partly_done(lab.url, job_id)
    if fault == "redis":
        lab.redis_server.kill()
        fault_at = time.monotonic()
        # the status says what the job waits for (the broker check is cached a few seconds)
        faults.wait_for(lambda: requests.get(f"{lab.url}/api/v1/jobs/{job_id}", timeout=10)
                        .json()["waiting_reason"] == "broker unreachable", 15,
                        what="waiting_reason 'broker unreachable'")
        lab.redis_server.start()
    else:
        dead = lab.child(fault)
        faults.kill_group(dead.pid, 15 if fault == "coordinator" else 9)
        fault_at = time.monotonic()
        faults.wait_for(lambda: lab.child(fault).pid != dead.pid, 30, what=f"{fault} restarted")
    faults.check_finished_once_and_identical(lab.url, job_id, expected, lab.database_url,
                                             fault_at)


def test_sigkill_of_every_process_and_a_restart(tmp_path, job):
    from blockreg_services.embedded import EmbeddedStack
    from helpers.services import fresh_postgres_database

    spec, expected = job
    redis_server = Redis(tmp_path)
    redis_server.start()
    port = free_port()
    try:
        with fresh_postgres_database() as database_url:
            options = dict(port=port, workers=2, stop_timeout=10, database_url=database_url,
                           broker_url=redis_server.url, env=faults.FAST_RECOVERY_ENV)
            stack = EmbeddedStack(tmp_path / "home", **options).__enter__()
            try:
                job_id = submit(stack.url, spec)
                faults.wait_until_partly_done(stack.url, job_id)
                for _, proc in stack.supervisor.children:
                    faults.kill_everything(proc.pid)
                redis_server.kill()
            finally:
                stack.stop()
            redis_server.start()
            with EmbeddedStack(tmp_path / "home", **options) as again:
                restarted = time.monotonic()
                faults.check_finished_once_and_identical(again.url, job_id, expected,
                                                         database_url, restarted)
    finally:
        redis_server.kill()
