"""Shared parts of the fault tests (tests/integration/test_faults_*.py): a small job, the settings
that make recovery fast, fault injection by signal, and the checks every fault must pass.

The checks: the job finishes within two minutes of the fault, every frame is done exactly once in
the database (``frames_done`` = frames = rows ``done``; a frame run again after its worker died
is counted once), and the output equals an undisturbed run bit for bit.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import numpy as np

SHAPE, NFRAMES = (64, 64), 240
RECOVERY_S = 120.0

# short leases: a lost message or a dead worker is noticed within seconds, not a minute
FAST_RECOVERY_ENV = {
    "BLOCKREG_QUEUED_GRACE_S": "1",
    "BLOCKREG_WORKER_LOST_S": "2",
    "BLOCKREG_HEARTBEAT_INTERVAL_S": "0.25",
    "BLOCKREG_RECONCILE_INTERVAL_S": "0.5",
    "BLOCKREG_DISPATCH_INTERVAL_S": "0.25",
    "BLOCKREG_WORKER_SOFT_SHUTDOWN_S": "1",
    "BLOCKREG_FFT_WORKERS": "1",
}


def job_spec(folder) -> dict:
    """Write the test movie into ``folder``; return the spec of the job the fault tests run."""
    from blockreg.synthetic import make_movie

    movie = os.path.join(folder, "movie.npy")
    if not os.path.exists(movie):
        frames, _, _ = make_movie(SHAPE, NFRAMES, max_translation=2, max_local=1, seed=7)
        np.save(movie, frames)
    return {"input": {"path": movie}, "fixed_index": 0,
            "preprocess": {"bias": 100.0, "sigma_lp": 1.0, "sigma_hp": 10.0},
            "params": {"gridsize": [4, 4], "maxshift": [6, 6], "lambda": 1e-3},
            "monitor": ["u", "mismatch"]}


def undisturbed_u(spec) -> np.ndarray:
    """``u`` of the job run in this process, with nothing disturbing it."""
    from blockreg.jobs import run_inprocess

    return np.asarray(run_inprocess(spec)["u"])


def job_and_expected(folder) -> tuple[dict, np.ndarray]:
    """The fault tests' job spec (input written into ``folder``) and its undisturbed ``u``."""
    spec = job_spec(str(folder))
    return spec, undisturbed_u(spec)


def wait_for(condition, timeout: float, step: float = 0.05, what: str = "condition"):
    """Poll ``condition()`` until it returns something truthy; return that, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - the API may be down mid-fault
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def progress(url: str, job_id: int) -> int:
    import requests

    return requests.get(f"{url}/api/v1/jobs/{job_id}", timeout=5).json()["frames_done"]


def wait_until_partly_done(url: str, job_id: int, at_least: int = NFRAMES // 5,
                           timeout: float = 120.0) -> int:
    """Wait for ``at_least`` frames done (the fault then hits a job in the middle)."""
    done = wait_for(lambda: (progress(url, job_id) >= at_least) and progress(url, job_id),
                    timeout, step=0.02, what=f"{at_least} frames of job {job_id}")
    assert done < NFRAMES, "the job finished before the fault; make it longer"
    return done


def kill_group(pid: int, sig=signal.SIGKILL) -> None:
    """Signal a process's whole group (a Celery worker and its pool processes)."""
    try:
        os.killpg(os.getpgid(pid), sig)
    except ProcessLookupError:
        pass


def check_finished_once_and_identical(url: str, job_id: int, expected_u, database_url: str,
                                      fault_at: float) -> dict:
    """Wait for the job (at most RECOVERY_S after ``fault_at``); check once-only and the bits."""
    import requests
    from sqlalchemy import func, select

    from blockreg import Client
    from blockreg.db import Frame, make_engine, session_factory

    remaining = RECOVERY_S - (time.monotonic() - fault_at)
    status = wait_for(
        lambda: (lambda s: s if s["state"] in ("succeeded", "failed", "cancelled") else None)(
            requests.get(f"{url}/api/v1/jobs/{job_id}", timeout=5).json()),
        max(remaining, 1.0), step=0.2, what=f"job {job_id} to finish after the fault")
    assert status["state"] == "succeeded", status
    assert status["frames_done"] == status["frames_total"] == NFRAMES
    assert status["frames_failed"] == 0
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            by_state = dict(session.execute(select(Frame.state, func.count())
                                            .where(Frame.job_id == job_id)
                                            .group_by(Frame.state)).all())
            attempts = session.scalar(select(func.max(Frame.attempts))
                                      .where(Frame.job_id == job_id))
    finally:
        engine.dispose()
    assert by_state == {"done": NFRAMES}
    assert attempts <= 3
    u = np.asarray(Client(url).results(job_id)["u"][...])
    np.testing.assert_array_equal(u, expected_u)
    return status


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_everything(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it at once (a power cut of the stack)."""
    for victim in [pid] + descendants(pid):
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def submit(url: str, spec: dict) -> int:
    """POST a job spec; its id (the submit must succeed)."""
    import requests

    response = requests.post(f"{url}/api/v1/jobs", json=spec, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@contextlib.contextmanager
def supervising(stack):
    """Run ``stack``'s supervisor in a thread, as ``blockreg up`` runs it, until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=stack.supervise, kwargs={"poll_s": 0.1, "until": stop.is_set})
    thread.start()
    try:
        yield stack
    finally:
        stop.set()
        thread.join(10)
