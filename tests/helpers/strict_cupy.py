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

Use :func:`install` (e.g. with pytest's ``monkeypatch``) to make ``import cupy``,
``import cupyx.scipy.fft`` and ``import cupyx.scipy.ndimage`` return the stand-in; blockreg's
``_backend`` then treats its arrays as device arrays.  Worker processes of the service can be
started with it through ``BLOCKREG_TEST_ARRAY_MODULE=helpers.strict_cupy`` (test-only).
"""
from __future__ import annotations

import operator
import sys
import types
from collections import Counter

import numpy as np
import scipy.fft as _sfft
import scipy.ndimage as _sndi

__name__ = "cupy"  # noqa: A001  (blockreg._backend.is_cupy recognises the module by this name)
__version__ = "0.0-strict-standin"

#: Counts of bus crossings: ``h2d`` (host to device), ``d2h`` (device to host), ``scalar``
#: (scalar reads), and ``h2d_bytes``/``d2h_bytes``.
transfers: Counter = Counter()


#: When a list, every transfer appends ``(kind, "file:line function")`` of the code that caused
#: it (the first frame outside this module and blockreg._backend), to find where a count comes
#: from.
trace = None


def reset_transfers():
    """Zero :data:`transfers` (and empty :data:`trace` when tracing)."""
    transfers.clear()
    if trace is not None:
        trace.clear()


def _count(kind, nbytes):
    transfers[kind] += 1
    if kind != "scalar":
        transfers[f"{kind}_bytes"] += int(nbytes)
    if trace is not None:
        frame = sys._getframe(1)
        while frame is not None and (frame.f_code.co_filename == __file__
                                     or frame.f_code.co_filename.endswith("_backend.py")):
            frame = frame.f_back
        where = "?" if frame is None else \
            f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        trace.append((kind, where))


class HostRoundTrip(TypeError):
    """A device array was handed to NumPy, or a host array to a device operation."""


def _refuse_host(value, where):
    raise HostRoundTrip(f"{where}: a NumPy array of shape {value.shape} mixed with device "
                        "arrays (CuPy raises TypeError here; move it to the device explicitly)")


def _unwrap(value, where="cupy", allow_host=False):
    """The NumPy data of device arrays inside ``value`` (recursing into lists/tuples/dicts)."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value
        if allow_host:
            _count("h2d", value.nbytes)
            return value
        _refuse_host(value, where)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, where, allow_host) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v, where, allow_host) for k, v in value.items()}
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_)):
        return ndarray(np.asarray(value))       # CuPy reductions return 0-d arrays
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _device_function(fn, name, allow_host=False):
    """A CuPy-like function: device arrays in, device arrays out, NumPy arrays refused."""

    def call(*args, **kwargs):
        out = kwargs.get("out")
        args = _unwrap(args, name, allow_host)
        kwargs = _unwrap(kwargs, name, allow_host)
        result = fn(*args, **kwargs)
        if isinstance(out, ndarray) and result is out._a:
            return out
        return _wrap(result)

    call.__name__ = name
    call.__qualname__ = name
    return call


class ndarray:  # noqa: N801  (CuPy's name)
    """A "device" array: NumPy data that NumPy itself may not touch."""

    __slots__ = ("_a",)
    __array_ufunc__ = None          # np.add(a, ...), host_array + a: NumPy defers, then refuses

    def __init__(self, data):
        object.__setattr__(self, "_a", data)

    # --- the refusals that make it strict -------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise HostRoundTrip("Implicit conversion to a NumPy array is not allowed (a device array "
                            "reached NumPy: use asnumpy()/.get() explicitly)")

    def __array_function__(self, func, types_, args, kwargs):
        raise HostRoundTrip(f"NumPy function {func.__module__}.{func.__name__} applied to a "
                            "device array")

    # --- explicit transfers ---------------------------------------------------------------------
    def get(self, stream=None, out=None, order="C", blocking=True):
        _count("d2h", self._a.nbytes)
        return np.array(self._a, order=order)

    def _scalar(self):
        if self._a.size != 1:
            raise TypeError("only size-1 arrays can be converted to Python scalars")
        _count("scalar", 0)
        return self._a.reshape(())[()]

    def __float__(self):
        return float(self._scalar())

    def __int__(self):
        return int(self._scalar())

    def __index__(self):
        if self._a.dtype.kind not in "iu":
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return operator.index(self._scalar())

    def __bool__(self):
        return bool(self._scalar())

    def __complex__(self):
        return complex(self._scalar())

    def item(self):
        return self._scalar().item()

    def tolist(self):
        return self.get().tolist()

    # --- attributes and methods ---------------------------------------------------------------
    def __getattr__(self, name):
        if name.startswith("__"):
            # NumPy would read the data through __array_interface__/__array_struct__/buffers
            raise AttributeError(name)
        value = getattr(self._a, name)
        if callable(value):
            return _device_function(value, f"ndarray.{name}")
        return _wrap(value) if isinstance(value, np.ndarray) else value

    def __setattr__(self, name, value):
        if name == "shape":
            self._a.shape = value
        else:
            raise AttributeError(name)

    @property
    def T(self):  # noqa: N802
        return ndarray(self._a.T)

    @property
    def real(self):
        return ndarray(self._a.real)

    @property
    def imag(self):
        return ndarray(self._a.imag)

    @property
    def flat(self):
        raise TypeError("ndarray.flat iterates on the host; not supported on the device")

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield ndarray(self._a[i])

    def __repr__(self):
        return f"strict_cupy.ndarray(shape={self._a.shape}, dtype={self._a.dtype})"

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        # CuPy copies a host value up, implicitly (counted by _unwrap)
        self._a[_index(key)] = _unwrap(value, "ndarray.__setitem__", allow_host=True)

    def __reduce__(self):
        raise TypeError("device arrays are not pickled (move them to the host first)")


def _index(key):
    """An index with device arrays unwrapped; host index arrays are copied up (counted)."""
    return _unwrap(key if isinstance(key, tuple) else key, "index", allow_host=True)


def _binary(op, reflected=False, inplace=False):
    def method(self, other):
        if isinstance(other, np.ndarray) and other.ndim:
            _refuse_host(other, f"operator {op.__name__}")
        b = _unwrap(other)
        if inplace:
            op(self._a, b)
            return self
        return _wrap(op(b, self._a) if reflected else op(self._a, b))

    return method


for _name, _op in {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
                   "truediv": operator.truediv, "floordiv": operator.floordiv,
                   "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
                   "and": operator.and_, "or": operator.or_, "xor": operator.xor}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
    _iop = getattr(operator, f"i{_name}")
    setattr(ndarray, f"__i{_name}__", _binary(_iop, inplace=True))
for _name, _op in {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
                   "eq": operator.eq, "ne": operator.ne}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
ndarray.__hash__ = None
ndarray.__neg__ = lambda self: ndarray(-self._a)
ndarray.__pos__ = lambda self: ndarray(+self._a)
ndarray.__abs__ = lambda self: ndarray(abs(self._a))
ndarray.__invert__ = lambda self: ndarray(~self._a)


# --- module-level functions ---------------------------------------------------------------------

def asarray(a, dtype=None, order=None, *, blocking=False):
    """Device copy of host data (counted), or ``a`` itself when it is already a device array."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else ndarray(a._a.astype(dtype))
    host = np.asarray(a, dtype=dtype, order=order)
    _count("h2d", host.nbytes)
    return ndarray(np.array(host, copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0, *, blocking=False):
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    host = np.array(_unwrap(a, "array", allow_host=True), dtype=dtype, order=order, ndmin=ndmin)
    _count("h2d", host.nbytes)
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
    fn = _device_function(value, name)
    globals()[name] = fn
    return fn


class _Namespace(types.SimpleNamespace):
    pass


lib = _Namespace(stride_tricks=_Namespace(
    sliding_window_view=_device_function(np.lib.stride_tricks.sliding_window_view,
                                         "sliding_window_view"),
    as_strided=_device_function(np.lib.stride_tricks.as_strided, "as_strided")))
linalg = _Namespace(**{n: _device_function(getattr(np.linalg, n), f"linalg.{n}")
                       for n in ("eigh", "solve", "norm", "inv", "qr", "cholesky", "svd")})
fft = _Namespace(**{n: _device_function(getattr(np.fft, n), f"fft.{n}")
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
        return _device_function(getattr(self._rng, name), f"random.{name}")


random = _Namespace(default_rng=_Generator)


# --- cupyx shims ---------------------------------------------------------------------------------

def _fft_shim():
    mod = types.ModuleType("cupyx.scipy.fft")
    for n in ("fftn", "ifftn", "rfftn", "irfftn", "fft", "ifft", "rfft", "irfft"):
        setattr(mod, n, _device_function(getattr(_sfft, n), f"cupyx.scipy.fft.{n}"))
    mod.next_fast_len = _sfft.next_fast_len
    return mod


def _ndimage_shim():
    mod = types.ModuleType("cupyx.scipy.ndimage")
    for n in ("gaussian_filter", "gaussian_filter1d", "map_coordinates", "shift", "zoom",
              "correlate1d", "convolve1d", "uniform_filter", "median_filter", "affine_transform",
              "spline_filter"):
        setattr(mod, n, _device_function(getattr(_sndi, n), f"cupyx.scipy.ndimage.{n}"))
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
