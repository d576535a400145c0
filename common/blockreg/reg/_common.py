"""Small helpers shared by the mismatch and preprocessing modules: working types, FFT threading,
argument checks."""
from __future__ import annotations

import math
import os

import numpy as np

from .._backend import array_module, float_dtype, is_cupy, to_device


def working_dtype(dtype):
    """Float type to compute in: ``float_dtype`` (float32 for integer data), at least float32.

    FFTs have no float16, and integer camera data are computed in float32 as in the original.
    """
    dt = float_dtype(dtype)
    return np.dtype(np.float32) if dt.itemsize < 4 else dt


def fft_kwargs(xp):
    """Keyword arguments for ``fft_module(xp)`` calls: scipy.fft's thread count.

    scipy.fft parallelises over ``workers`` threads (default: the CPUs this process may use, or
    ``BLOCKREG_FFT_WORKERS``, e.g. 1 in a pool of single-threaded worker processes);
    cupyx.scipy.fft has no such argument.
    """
    if is_cupy(xp):
        return {}
    workers = os.environ.get("BLOCKREG_FFT_WORKERS")
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            workers = os.cpu_count() or 1
    return {"workers": int(workers)}


NORMALIZATIONS = ("intensity", "pixels")


def check_maxshift(maxshift, shape):
    """Validate ``maxshift`` against an image ``shape``; return it as a tuple of ints."""
    try:
        m = tuple(int(v) for v in np.atleast_1d(maxshift))
    except (TypeError, ValueError):
        raise ValueError(f"maxshift must be a sequence of ints, got {maxshift!r}") from None
    if not np.array_equal(np.atleast_1d(np.asarray(maxshift, dtype=float)), m):
        raise ValueError(f"maxshift must be integers, got {maxshift!r}")
    if len(m) != len(shape):
        raise ValueError(f"maxshift has {len(m)} entries but the image has {len(shape)} axes")
    if any(v < 0 for v in m):
        raise ValueError(f"maxshift must be non-negative, got {m}")
    if any(v >= n for v, n in zip(m, shape)):
        raise ValueError(f"maxshift {m} must be smaller than the image size {tuple(shape)}")
    return m


def lambda_count(lo, hi) -> int:
    """Number of lambdas ``lo * 2**k`` (``k = 0, 1, ...``) the auto-lambda search tries on ``[lo, hi)``.

    The one definition of the ladder's length: the search builds its ladder with it and
    :class:`blockreg.Apertures` validates ``lam`` ranges and declares its arrays with it.
    """
    return math.ceil(math.log2(hi) - math.log2(lo))


def check_normalization(normalization):
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return normalization


def check_pair(fixed, moving):
    """Return ``(xp, fixed, moving)`` as arrays of one module; ValueError on an ndim mismatch."""
    xp = array_module(fixed, moving)
    fixed, moving = to_device(fixed, xp), to_device(moving, xp)
    if fixed.ndim != moving.ndim:
        raise ValueError(f"fixed and moving must have the same number of axes, got fixed.ndim="
                         f"{fixed.ndim} and moving.ndim={moving.ndim}")
    if fixed.ndim == 0:
        raise ValueError("fixed must have at least one axis")
    return xp, fixed, moving
