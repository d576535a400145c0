"""EmbeddedStack's supervision (blockreg_services.supervisor): a dead child is restarted after a backoff that doubles while it
keeps dying, logged, and the other children are left alone (real processes: `sleep`)."""
from __future__ import annotations

import signal
import sys
import time

from blockreg_services import supervisor
from blockreg_services.embedded import EmbeddedStack


def test_a_dead_child_is_restarted_with_growing_backoff(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "RESTART_DELAY_S", (0.2, 30.0))
    stack = EmbeddedStack(tmp_path, port=0, workers=1)
    stack.log_dir.mkdir(parents=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    stack.supervisor.spawn("worker-1", sleeper)
    stack.supervisor.spawn("coordinator", sleeper)
    other = stack.child("coordinator")
    try:
        delays = []
        for _ in range(2):
            dead = stack.child("worker-1")
            dead.send_signal(signal.SIGKILL)
            dead.wait()
            died = time.monotonic()
            while not stack.restart_dead():
                time.sleep(0.01)
            delays.append(time.monotonic() - died)
            assert stack.child("worker-1").pid != dead.pid
            assert stack.child("worker-1").poll() is None
        # 0.2 s, then 0.4 s (upper bounds loose: a loaded machine polls late)
        assert 0.2 <= delays[0] < 2.0 and 0.4 <= delays[1] < 2.2
        assert stack.child("coordinator") is other and other.poll() is None
        log = (stack.log_dir / "supervisor.log").read_text()
        assert log.count("worker-1 exited with code -9") == 2
        assert "worker-1 restarted" in log and "coordinator" not in log
    finally:
        stack.stop()
    assert not stack.supervisor.children
