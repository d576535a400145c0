"""The device of a worker process: CPU, or one GPU through CuPy (issue 10).

A GPU worker process owns one device.  CUDA is initialised here, in the pool process, after the
fork (Celery's ``worker_process_init``): a CUDA context does not survive a fork, so the parent
must never touch it.  Between jobs the device memory a job held is released; a device error fails
the frame it happened in, and the job's context is rebuilt for the next frame, so the worker
stays usable.
"""
from __future__ import annotations

import importlib
import logging
import sys

__all__ = ["setup", "describe", "on_gpu", "upload", "release", "is_device_error"]

log = logging.getLogger(__name__)

_state = {"device": "cpu", "description": "cpu"}


def setup(worker_device: str = "cpu", test_array_module: str | None = None) -> str:
    """Select this process's device; returns its description (``cpu``, ``gpu:0 <name>``).

    Parameters
    ----------
    worker_device : str
        ``cpu``, ``gpu`` (the first visible device) or ``gpu:N`` (the ``worker_device`` setting).
    test_array_module : str, optional
        Tests only: a module with an ``install()`` that makes ``import cupy`` return a stand-in.
    """
    if test_array_module:
        importlib.import_module(test_array_module).install()
    if worker_device == "cpu":
        _state.update(device="cpu", description="cpu")
        return "cpu"
    import cupy

    index = int(worker_device.partition(":")[2] or 0)
    cupy.cuda.Device(index).use()
    name = cupy.cuda.runtime.getDeviceProperties(index)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    description = f"gpu:{index} {name}"
    _state.update(device=f"gpu:{index}", description=description)
    log.info("worker process computes on %s", description)
    return description


def describe() -> str:
    """This process's device as its heartbeat records it."""
    return _state["description"]


def on_gpu() -> bool:
    return _state["device"] != "cpu"


def upload(array):
    """``array`` on this process's device (unchanged on a CPU worker)."""
    if not on_gpu():
        return array
    import cupy

    return cupy.asarray(array)


def release() -> None:
    """Give back the device memory cached by CuPy and blockreg (between jobs, after an error)."""
    cupy = sys.modules.get("cupy")
    if cupy is None or not on_gpu():
        return
    from .._backend import clear_device_constants

    clear_device_constants()
    try:
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception as exc:  # noqa: BLE001 - a broken device reports on the next frame
        log.warning("device memory not released: %s", exc)


def is_device_error(exc: BaseException) -> bool:
    """True for CUDA/CuPy errors (out of memory, a failed kernel or FFT plan)."""
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return False
    module = type(exc).__module__ or ""
    return module.startswith(("cupy", "cupyx", "cupy_backends")) or isinstance(exc, MemoryError)
