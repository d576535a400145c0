"""The Celery application: broker configuration only (task bodies live in the worker service).

Frame tasks are long and heavy, so the settings follow the Redis caveats
(``../shared/reference/ecosystem.md`` §1):

- late acks + reject on worker loss: a task whose process dies is redelivered, not lost (tasks are
  idempotent: a frame rewrites its own chunk and completion is counted once);
- prefetch multiplier 1: a worker reserves no extra message behind a long task;
- visibility timeout above the task time limit, set in all three places Celery reads it, so a
  running task is never redelivered while it still runs;
- no result backend: arrays go to Zarr and scalars to SQL, nothing travels back through Redis.
"""
from __future__ import annotations

import os

from celery import Celery

__all__ = ["make_celery", "broker_url", "TASK_REGISTER_FRAMES", "DEFAULT_QUEUE",
           "TASK_TIME_LIMIT_S", "VISIBILITY_TIMEOUT_S"]

TASK_REGISTER_FRAMES = "blockreg.register_frames"
DEFAULT_QUEUE = "cpu"
TASK_TIME_LIMIT_S = 2 * 3600
# margin over the hard limit plus the time a prefetched message may wait behind a running task
VISIBILITY_TIMEOUT_S = TASK_TIME_LIMIT_S + 3600
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def broker_url(url: str | None = None) -> str:
    """``url``, else ``$BLOCKREG_BROKER_URL``, else the local Redis."""
    return url or os.environ.get("BLOCKREG_BROKER_URL") or DEFAULT_BROKER_URL


def make_celery(url: str | None = None, name: str = "blockreg") -> Celery:
    """Build a Celery app on the broker ``url`` (default ``$BLOCKREG_BROKER_URL``)."""
    app = Celery(name, broker=broker_url(url), set_as_current=False)
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=TASK_TIME_LIMIT_S,
        task_soft_time_limit=TASK_TIME_LIMIT_S - 60,
        broker_transport_options=dict(transport),
        result_backend_transport_options=dict(transport),
        visibility_timeout=VISIBILITY_TIMEOUT_S,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=DEFAULT_QUEUE,
        task_routes={TASK_REGISTER_FRAMES: {"queue": DEFAULT_QUEUE}},
        # Soft shutdown runs only on a cold shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT
        # as the compose file and `blockreg up` set for workers): the running frame gets this long,
        # then its unacked late-ack message is re-queued at once instead of after the visibility
        # timeout. A plain SIGTERM is a warm shutdown, which waits for the frame without limit.
        worker_soft_shutdown_timeout=10.0,
        # on a lost broker connection the message is redelivered; do not keep a second copy running
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app
