"""The array of the strict CuPy stand-in (:mod:`helpers.strict_cupy`) and its transfer counts.

:class:`ndarray` holds NumPy data that NumPy itself may not touch: ``np.asarray(a)``, NumPy
functions and ufuncs raise :class:`HostRoundTrip` (a ``TypeError``, as CuPy's arrays do), and so
does a NumPy array mixed into its operators. Every explicit crossing of the bus is counted in
:data:`transfers` (and located in :data:`trace` when that is a list). :mod:`helpers.strict_cupy`
builds the ``cupy`` module API around it.
"""
from __future__ import annotations

import operator
import sys
from collections import Counter

import numpy as np

# frames skipped when tracing: the stand-in itself and blockreg's dispatch layer
_PLUMBING = ("strict_array.py", "strict_cupy.py", "_backend.py")

#: Counts of bus crossings: ``h2d`` (host to device), ``d2h`` (device to host), ``scalar``
#: (scalar reads), and ``h2d_bytes``/``d2h_bytes``.
transfers: Counter = Counter()


#: When a list, every transfer appends ``(kind, "file:line function")`` of the code that caused
#: it (the first frame outside the stand-in and blockreg._backend), to find where a count comes
#: from.
trace = None


def reset_transfers():
    """Zero :data:`transfers` (and empty :data:`trace` when tracing)."""
    transfers.clear()
    if trace is not None:
        trace.clear()


def count(kind, nbytes):
    """Record one bus crossing of ``kind`` (``h2d``, ``d2h`` or ``scalar``) of ``nbytes``."""
    transfers[kind] += 1
    if kind != "scalar":
        transfers[f"{kind}_bytes"] += int(nbytes)
    if trace is not None:
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.endswith(_PLUMBING):
            frame = frame.f_back
        where = "?" if frame is None else \
            f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        trace.append((kind, where))


class HostRoundTrip(TypeError):
    """A device array was handed to NumPy, or a host array to a device operation."""


def _refuse_host(value, where):
    raise HostRoundTrip(f"{where}: a NumPy array of shape {value.shape} mixed with device "
                        "arrays (CuPy raises TypeError here; move it to the device explicitly)")


def unwrap(value, where="cupy", allow_host=False):
    """The NumPy data of device arrays inside ``value`` (recursing into lists/tuples/dicts)."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value
        if allow_host:
            count("h2d", value.nbytes)
            return value
        _refuse_host(value, where)
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(v, where, allow_host) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v, where, allow_host) for k, v in value.items()}
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


def device_function(fn, name, allow_host=False):
    """A CuPy-like function: device arrays in, device arrays out, NumPy arrays refused."""

    def call(*args, **kwargs):
        out = kwargs.get("out")
        args = unwrap(args, name, allow_host)
        kwargs = unwrap(kwargs, name, allow_host)
        result = fn(*args, **kwargs)
        if isinstance(out, ndarray) and result is out._a:
            return out
        return _wrap(result)

    call.__name__ = name
    call.__qualname__ = name
    return call


class ndarray:  # noqa: N801  (CuPy's name)
    """A "device" array: NumPy data that NumPy itself may not touch."""

    __module__ = "cupy"             # as CuPy's (GridDeformation's repr names the array module)
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
        count("d2h", self._a.nbytes)
        return np.array(self._a, order=order)

    def _scalar(self):
        if self._a.size != 1:
            raise TypeError("only size-1 arrays can be converted to Python scalars")
        count("scalar", 0)
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
            return device_function(value, f"ndarray.{name}")
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
        # CuPy copies a host value up, implicitly (counted by unwrap)
        self._a[_index(key)] = unwrap(value, "ndarray.__setitem__", allow_host=True)

    def __reduce__(self):
        raise TypeError("device arrays are not pickled (move them to the host first)")


def _index(key):
    """An index with device arrays unwrapped; host index arrays are copied up (counted)."""
    return unwrap(key if isinstance(key, tuple) else key, "index", allow_host=True)


def _binary(op, reflected=False, inplace=False):
    def method(self, other):
        if isinstance(other, np.ndarray) and other.ndim:
            _refuse_host(other, f"operator {op.__name__}")
        b = unwrap(other)
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
