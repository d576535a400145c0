"""Faults of the embedded stack (`blockreg up`: SQLite, a private Redis, real worker processes):
Ctrl-C and restart, SIGKILL of everything and restart, SIGKILL of one worker's main process, of
Redis, of the coordinator.  Each time the job finishes within two minutes of the fault, every
frame is done once, and the output equals the undisturbed run bit for bit (tests/helpers/faults.py).

Recovery is fast because the test environment shortens the reconciler's leases
(faults.FAST_RECOVERY_ENV); the defaults are seconds to a minute.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from helpers import faults
from helpers.services import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.isdir("/proc"), reason="process checks read /proc")]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The job's spec and the undisturbed run's ``u``."""
    return faults.job_and_expected(tmp_path_factory.mktemp("input"))


@pytest.fixture(scope="module")
def supervised(tmp_path_factory):
    """An embedded stack whose supervisor runs in a thread, as `blockreg up` runs it."""
    from blockreg_services.embedded import EmbeddedStack

    with EmbeddedStack(tmp_path_factory.mktemp("home"), port=0, workers=2, stop_timeout=10,
                       env=faults.FAST_RECOVERY_ENV) as stack, faults.supervising(stack):
        yield stack


submit = faults.submit


@pytest.mark.parametrize("victim", ["worker-1", "redis", "coordinator"])
def test_sigkill_of_one_child_is_restarted_and_the_job_finishes(supervised, job, victim):
    spec, expected = job
    job_id = submit(supervised.url, spec)
    faults.wait_until_partly_done(supervised.url, job_id)
    dead = supervised.child(victim)
    faults.kill_group(dead.pid)  # a worker with its pool process; Redis; the coordinator
    fault = time.monotonic()
    faults.wait_for(lambda: supervised.child(victim).pid != dead.pid, 30,
                    what=f"{victim} to be restarted")
    assert all(proc.poll() is None for name, proc in supervised.supervisor.children if name != victim)
    faults.check_finished_once_and_identical(supervised.url, job_id, expected,
                                             supervised.database_url, fault)
    log = (supervised.log_dir / "supervisor.log").read_text()
    assert f"{victim} exited" in log and f"{victim} restarted" in log


class BlockregUp:
    """`blockreg up` as a user runs it, in its own session, on a fixed home and port."""

    def __init__(self, home, port):
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def start(self):
        env = dict(os.environ, **faults.FAST_RECOVERY_ENV)
        env.pop("BLOCKREG_DATABASE_URL", None)
        env.pop("BLOCKREG_BROKER_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "blockreg_services.cli", "up", "--home", str(self.home),
             "--port", str(self.port), "--workers", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        faults.wait_for(lambda: requests.get(f"{self.url}/api/v1/health", timeout=2).ok, 60,
                        what="blockreg up to answer")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            faults.kill_everything(self.proc.pid)
            self.proc.wait(10)


@pytest.fixture
def up(tmp_path):
    stack = BlockregUp(tmp_path / "home", free_port())
    yield stack
    stack.stop()


@pytest.mark.parametrize("fault", ["ctrl-c", "sigkill-everything"])
def test_blockreg_up_stopped_mid_job_and_started_again_finishes_the_job(up, job, fault):
    spec, expected = job
    up.start()
    job_id = submit(up.url, spec)
    faults.wait_until_partly_done(up.url, job_id)
    if fault == "ctrl-c":
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(60) == 0
        assert b"Traceback" not in up.proc.stderr.read()
    else:
        faults.kill_everything(up.proc.pid)
        up.proc.wait(10)
    up.start()
    restarted = time.monotonic()
    faults.check_finished_once_and_identical(up.url, job_id, expected,
                                             f"sqlite:///{up.home / 'blockreg.db'}", restarted)
