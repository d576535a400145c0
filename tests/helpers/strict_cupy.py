"""A strict, NumPy-backed stand-in for CuPy: device bugs show up on a machine without a GPU.

CI has no GPU, yet the registration must run on CuPy arrays without hidden host round trips.
This module imitates the part of CuPy's behaviour that catches such bugs:

- its arrays (:class:`ndarray`) refuse implicit conversion to NumPy (``np.asarray(a)`` raises
  ``TypeError``, as CuPy's ``__array__`` does) and refuse NumPy functions and ufuncs
  (``np.sum(a)``, ``np.add(a, 1)``), so code that hands a device array to NumPy fails;
- its functions and operators refuse NumPy arrays mixed with device arrays (CuPy raises
  ``TypeError`` for ``cupy_array + numpy_array``);
- every explicit crossing of the bus is counted in :data:`transfers`: host to device
  (``asarray``/``array`` of host data, a NumPy array assigned into or used to index a device
  array), device to host (``asnumpy``, ``.get()``) and scalar reads (``float(a)``, ``bool(a)``,
  ``int(a)``, each one a synchronising copy of a scalar).

The data stay NumPy arrays inside; results are bit-identical to NumPy's, so a test can compare
the device path with the host path exactly.

The array and the transfer counts are in :mod:`helpers.strict_array` (set
``helpers.strict_array.trace = []`` to see where each transfer comes from); this module is the
``cupy`` namespace around them and the ``cupyx.scipy`` shims.

Use :func:`install` (e.g. with pytest's ``monkeypatch``) to make ``import cupy``,
``import cupyx.scipy.fft`` and ``import cupyx.scipy.ndimage`` return the stand-in; blockreg's
``_backend`` then treats its arrays as device arrays.  Worker processes of the service can be
started with it through ``BLOCKREG_TEST_ARRAY_MODULE=helpers.strict_cupy`` (test-only).
"""
from __future__ import annotations

import sys
import types

import numpy as np
import scipy.fft as _sfft
import scipy.ndimage as _sndi

from .strict_array import (HostRoundTrip, count, device_function, ndarray, reset_transfers,
                           transfers, unwrap)

__all__ = ["ndarray", "HostRoundTrip", "transfers", "reset_transfers", "install", "modules",
           "asarray", "array", "asnumpy", "get_array_module"]

__name__ = "cupy"  # noqa: A001  (blockreg._backend.is_cupy recognises the module by this name)
__version__ = "0.0-strict-standin"

# --- module-level functions ---------------------------------------------------------------------

def asarray(a, dtype=None, order=None, *, blocking=False):
    """Device copy of host data (counted), or ``a`` itself when it is already a device array."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else ndarray(a._a.astype(dtype))
    host = np.asarray(a, dtype=dtype, order=order)
    count("h2d", host.nbytes)
    return ndarray(np.array(host, copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0, *, blocking=False):
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    host = np.array(unwrap(a, "array", allow_host=True), dtype=dtype, order=order, ndmin=ndmin)
    count("h2d", host.nbytes)
    return ndarray(host)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


_CREATION = {"zeros", "ones", "empty", "full", "arange", "eye", "identity", "linspace",
             "zeros_like", "ones_like", "empty_like", "full_like", "meshgrid", "indices"}


def __getattr__(name):
    value = getattr(np, name)
    if isinstance(value, type) or not callable(value):
        return value                       # dtypes, constants (nan, inf, newaxis)
    fn = device_function(value, name)
    globals()[name] = fn
    return fn


class _Namespace(types.SimpleNamespace):
    pass


lib = _Namespace(stride_tricks=_Namespace(
    sliding_window_view=device_function(np.lib.stride_tricks.sliding_window_view,
                                         "sliding_window_view"),
    as_strided=device_function(np.lib.stride_tricks.as_strided, "as_strided")))
linalg = _Namespace(**{n: device_function(getattr(np.linalg, n), f"linalg.{n}")
                       for n in ("eigh", "solve", "norm", "inv", "qr", "cholesky", "svd")})
fft = _Namespace(**{n: device_function(getattr(np.fft, n), f"fft.{n}")
                    for n in ("fftn", "ifftn", "rfftn", "irfftn", "fft", "ifft", "rfft", "irfft",
                              "fftfreq", "rfftfreq", "fftshift", "ifftshift")})


class _MemoryPool:
    def __init__(self):
        self.freed = 0

    def free_all_blocks(self):
        self.freed += 1

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0


_pool = _MemoryPool()
_pinned_pool = _MemoryPool()


def get_default_memory_pool():
    return _pool


def get_default_pinned_memory_pool():
    return _pinned_pool


class _Device:
    def __init__(self, id=0):
        self.id = id

    def synchronize(self):
        pass

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(i):
        return {"name": b"strict-cupy stand-in", "totalGlobalMem": 0}

    @staticmethod
    def memGetInfo():
        return 0, 0

    @staticmethod
    def runtimeGetVersion():
        return 0


class CUDARuntimeError(RuntimeError):
    """Stands for ``cupy.cuda.runtime.CUDARuntimeError`` (a device error)."""


cuda = _Namespace(Device=_Device, runtime=_Runtime(), is_available=lambda: True)
cuda.runtime.CUDARuntimeError = CUDARuntimeError


class _Generator:
    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name):
        return device_function(getattr(self._rng, name), f"random.{name}")


random = _Namespace(default_rng=_Generator)


# --- cupyx shims ---------------------------------------------------------------------------------

def _fft_shim():
    mod = types.ModuleType("cupyx.scipy.fft")
    for n in ("fftn", "ifftn", "rfftn", "irfftn", "fft", "ifft", "rfft", "irfft"):
        setattr(mod, n, device_function(getattr(_sfft, n), f"cupyx.scipy.fft.{n}"))
    mod.next_fast_len = _sfft.next_fast_len
    return mod


def _ndimage_shim():
    mod = types.ModuleType("cupyx.scipy.ndimage")
    for n in ("gaussian_filter", "gaussian_filter1d", "map_coordinates", "shift", "zoom",
              "correlate1d", "convolve1d", "uniform_filter", "median_filter", "affine_transform",
              "spline_filter"):
        setattr(mod, n, device_function(getattr(_sndi, n), f"cupyx.scipy.ndimage.{n}"))
    return mod


def modules():
    """``{module name: module}`` that make this stand-in importable as cupy and cupyx."""
    this = sys.modules[__spec__.name] if __spec__ else sys.modules["helpers.strict_cupy"]
    cupyx = types.ModuleType("cupyx")
    scipy_ = types.ModuleType("cupyx.scipy")
    fft_mod, ndi_mod = _fft_shim(), _ndimage_shim()
    cupyx.scipy, scipy_.fft, scipy_.ndimage = scipy_, fft_mod, ndi_mod
    return {"cupy": this, "cupyx": cupyx, "cupyx.scipy": scipy_, "cupyx.scipy.fft": fft_mod,
            "cupyx.scipy.ndimage": ndi_mod}


def install(monkeypatch=None):
    """Make ``import cupy`` (and the cupyx modules blockreg uses) return this stand-in.

    With pytest's ``monkeypatch`` the modules are restored after the test; without, they stay
    (a worker process started for tests).  Returns the stand-in module.
    """
    for name, mod in modules().items():
        if monkeypatch is not None:
            monkeypatch.setitem(sys.modules, name, mod)
        else:
            sys.modules[name] = mod
    return sys.modules["cupy"]
