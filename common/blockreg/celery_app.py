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

from celery import Celery

from . import settings as _settings

__all__ = ["make_celery", "TASK_REGISTER_FRAMES", "TASK_SOLVE_WINDOW"]

TASK_REGISTER_FRAMES = "blockreg.register_frames"
# one window of a two-stage job's whole-series solve (blockreg.orchestrate.phases)
TASK_SOLVE_WINDOW = "blockreg.solve_series_window"


def make_celery(url: str | None = None, name: str = "blockreg", *,
                settings: _settings.Settings | None = None) -> Celery:
    """Build a Celery app on the broker ``url`` (default: the ``broker_url`` setting).

    The time limits, the visibility timeout, the default queue and the soft-shutdown grace come
    from ``settings`` (default: :func:`blockreg.settings.load`).
    """
    s = settings or _settings.load()
    app = Celery(name, broker=url or s.broker_url, set_as_current=False)
    transport = {"visibility_timeout": s.visibility_timeout_s}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=s.task_time_limit_s,
        task_soft_time_limit=s.task_soft_time_limit_s,
        broker_transport_options=dict(transport),
        result_backend_transport_options=dict(transport),
        visibility_timeout=s.visibility_timeout_s,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=s.queue,
        task_routes={TASK_REGISTER_FRAMES: {"queue": s.queue},
                     TASK_SOLVE_WINDOW: {"queue": s.queue}},
        # Soft shutdown runs only on a cold shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT
        # as the compose file and `blockreg up` set for workers): the running frame gets this long,
        # then its unacked late-ack message is re-queued at once instead of after the visibility
        # timeout. A plain SIGTERM is a warm shutdown, which waits for the frame without limit.
        worker_soft_shutdown_timeout=s.worker_soft_shutdown_s,
        # on a lost broker connection the message is redelivered; do not keep a second copy running
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app
