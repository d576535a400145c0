"""The Celery app's settings (the team's fixed points) and the worker package's import weight."""
from __future__ import annotations

import subprocess
import sys

from blockreg.celery_app import TASK_REGISTER_FRAMES, make_celery


def test_settings_for_long_heavy_tasks():
    conf = make_celery("redis://127.0.0.1:6379/9").conf
    assert conf.broker_url == "redis://127.0.0.1:6379/9"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_backend is None and conf.task_ignore_result
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    # visibility timeout above the hard time limit, in all three places Celery reads it
    for timeout in (conf.broker_transport_options["visibility_timeout"],
                    conf.result_backend_transport_options["visibility_timeout"],
                    conf.visibility_timeout):
        assert timeout > conf.task_time_limit
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_routes[TASK_REGISTER_FRAMES]["queue"] == "cpu"


def test_broker_from_environment(monkeypatch):
    monkeypatch.setenv("BLOCKREG_BROKER_URL", "redis+socket:///tmp/x/redis.sock")
    assert make_celery().conf.broker_url == "redis+socket:///tmp/x/redis.sock"


def test_worker_registers_the_task_and_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from blockreg_services.worker import app\n"
        "task = app.tasks['blockreg.register_frames']\n"
        "print(task.ignore_result, task.name)\n"
        "print(sorted(m for m in ('zarr', 'cupy', 'flask', 'scipy', 'sqlalchemy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()
    assert first == "True blockreg.register_frames"
    # the prefork parent must not hold zarr's I/O thread, a CUDA context or DB connections
    assert second == "[]"
