"""Array-module dispatch: one algorithm, NumPy or CuPy arrays.

Every numeric function in :mod:`blockreg.reg` asks :func:`array_module` which module owns its
inputs and computes with that module, so the same code runs on the CPU (NumPy/SciPy) and on a GPU
(CuPy/cupyx) without copies. CuPy is optional and imported only when an input is a CuPy array.
"""
from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict

import numpy as np


def _cupy():
    # Only consult cupy if something already imported it: importing it here would initialise CUDA
    # in processes (the coordinator, a Celery parent) that must never touch the GPU.
    return sys.modules.get("cupy")


def array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    cp = _cupy()
    if cp is not None:
        for a in arrays:
            if isinstance(a, cp.ndarray):
                return cp
    return np


def is_cupy(xp) -> bool:
    """True when ``xp`` is the CuPy module."""
    return xp is not np and getattr(xp, "__name__", "") == "cupy"


def fft_module(xp):
    """``scipy.fft`` for NumPy, ``cupyx.scipy.fft`` for CuPy (both have rfftn/irfftn/next_fast_len)."""
    if is_cupy(xp):
        import cupyx.scipy.fft as cfft

        return cfft
    import scipy.fft

    return scipy.fft


def ndimage_module(xp):
    """``scipy.ndimage`` for NumPy, ``cupyx.scipy.ndimage`` for CuPy."""
    if is_cupy(xp):
        import cupyx.scipy.ndimage as cndi

        return cndi
    import scipy.ndimage

    return scipy.ndimage


def to_host(a):
    """Return ``a`` as a NumPy array (copying from the device only when it is a CuPy array)."""
    cp = _cupy()
    if cp is not None and isinstance(a, cp.ndarray):
        return cp.asnumpy(a)
    return np.asarray(a)


def to_device(a, xp):
    """Return ``a`` as an array of module ``xp`` (no copy when it already is one)."""
    if is_cupy(xp):
        return xp.asarray(a)
    return to_host(a)


# Device copies of small host constants (index arrays, stencils, DFT and filter matrices) keyed
# by their content: a frame then uploads none of them again.  Bounded, least recently used first.
_CONSTANTS: "OrderedDict[tuple, object]" = OrderedDict()
_CONSTANTS_MAX_BYTES = 1 << 30
_constants_bytes = 0


def device_constant(a, xp):
    """``to_device(a, xp)`` for a host array that is the same for every frame: uploaded once.

    On the host it is ``np.asarray(a)``.  On a device the copy is cached per process, device and
    content (a hash of the bytes), so per-plan constants cross the bus once per job instead of once
    per frame.  The returned device array is shared: callers must not write into it.
    :func:`clear_device_constants` drops the cache (a worker does between jobs).
    """
    global _constants_bytes
    if not is_cupy(xp):
        return to_host(a)
    host = np.ascontiguousarray(to_host(a))
    cuda = getattr(xp, "cuda", None)
    device_id = cuda.Device().id if cuda is not None else 0
    key = (id(xp), device_id, host.dtype.str, host.shape,
           hashlib.blake2b(host.tobytes(), digest_size=16).digest())
    hit = _CONSTANTS.get(key)
    if hit is not None:
        _CONSTANTS.move_to_end(key)
        return hit
    value = xp.asarray(host)
    _CONSTANTS[key] = value
    _constants_bytes += host.nbytes
    while _constants_bytes > _CONSTANTS_MAX_BYTES and len(_CONSTANTS) > 1:
        _, old = _CONSTANTS.popitem(last=False)
        _constants_bytes -= old.nbytes
    return value


def clear_device_constants():
    """Forget the device copies made by :func:`device_constant` (their memory can be freed)."""
    global _constants_bytes
    _CONSTANTS.clear()
    _constants_bytes = 0


def float_dtype(dtype) -> np.dtype:
    """The working float type for data of ``dtype``: float inputs keep theirs, others get float32.

    This is the original's rule (integer and fixed-point camera data are computed in Float32).
    """
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float32)
