"""Celery worker service: ``python -m celery -A blockreg_services.worker worker --queues cpu``.

Importing this package builds the Celery app from the environment and registers the tasks; it
imports nothing heavy (no CuPy, no Zarr I/O), because the prefork pool forks from this process.
"""
from blockreg.celery_app import make_celery

app = make_celery()

from . import tasks  # noqa: E402  (registers the tasks on ``app``)

__all__ = ["app", "tasks"]
