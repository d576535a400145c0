"""Small helpers shared by the registration modules: working types, FFT threading, the layout of
mismatch arrays, shift margins, argument checks.

Every argument check raises :class:`~blockreg.errors.ParameterError` naming the argument, so the
layers above (job-spec checks, CLI, API) report the field without repeating the rule.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import settings
from .._backend import array_module, float_dtype, is_cupy, to_device
from ..errors import ParameterError

# --- working types and FFT threads ---------------------------------------------------------------


def working_dtype(dtype) -> np.dtype:
    """Float type to compute in for data of ``dtype``: ``float_dtype``, at least float32.

    Integer camera data are computed in float32 as in the original; float16 is promoted to float32
    because FFTs have no float16 and sub-pixel coordinates need the precision.  :func:`warp` wants
    a precomputed ``field`` in this type.
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
    workers = settings.get("fft_workers")
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            workers = os.cpu_count() or 1
    return {"workers": int(workers)}


# --- mismatch arrays: where num/denom sits, how far a shift may go --------------------------------


def _last_pair_axis(shape):
    # Shift axes have odd length (2m + 1), so the num/denom axis is the last one of length 2.
    for axis in range(len(shape) - 1, -1, -1):
        if shape[axis] == 2:
            return axis
    return None


def pair_axis(mm, axis=None, name="mm") -> int:
    """The num/denom axis of a mismatch array ``mm`` (``(2, *(2m+1))``) or ``mms`` (``(*g, 2, ...)``).

    Parameters
    ----------
    mm : ndarray
    axis : int, optional
        The axis, when the caller knows it (checked to have length 2); by default the last axis of
        length 2 (shift axes have odd lengths).
    name : str
        The argument's name in errors.
    """
    if mm.ndim == 0:
        raise ParameterError(name, "must be an array with a num/denom axis, got a scalar")
    if axis is not None:
        axis = int(axis) % mm.ndim
        if mm.shape[axis] != 2:
            raise ParameterError(name, f"axis {axis} must have length 2 (num, denom), got shape "
                                       f"{tuple(mm.shape)}")
        return axis
    axis = _last_pair_axis(mm.shape)
    if axis is None:
        raise ParameterError(name, f"has no num/denom axis of length 2, shape {tuple(mm.shape)}")
    return axis


def aperture_ndim(mms, name="mms") -> int:
    """Number of spatial axes N of aperture mismatches shaped ``(*gridsize, 2, *(2*maxshift+1))``.

    The num/denom axis (:func:`pair_axis`) must sit between N grid axes and N odd shift axes.
    """
    N = (mms.ndim - 1) // 2
    if (mms.ndim < 3 or mms.ndim % 2 == 0 or _last_pair_axis(mms.shape) != N
            or any(s % 2 == 0 for s in mms.shape[N + 1:])):
        raise ParameterError(name, f"must have shape (*gridsize, 2, *(2*maxshift+1)) with one grid "
                                   f"axis per spatial axis, got shape {tuple(mms.shape)}")
    return N


#: The mismatch interpolant (a quadratic B-spline over the shifts ``-m .. m``) can be read where
#: ``|u_a| < m_a - 0.5``: half a pixel further would need the coefficients beyond the array.
INTERPOLANT_MARGIN = 0.5
#: The optimiser's box bounds (and :func:`~blockreg.reg.fit.uisvalid`) stay just inside it.
BOUND_MARGIN = 0.5001
#: Starting points are clamped a little further in (:func:`~blockreg.reg.fit.clamp_shifts`).
CLAMP_MARGIN = 0.51


def shift_limit(maxshift, margin, ncomp=None) -> np.ndarray:
    """Largest allowed ``|u_a|`` per component: ``maxshift_a - margin`` (float64, on the host).

    ``ncomp``, when given, is the number of components ``maxshift`` must have.
    """
    m = np.asarray(maxshift, dtype=np.float64)
    if ncomp is not None and (m.ndim != 1 or m.size != ncomp):
        raise ParameterError("maxshift", f"must have one entry per component of u ({ncomp}), "
                                         f"got {maxshift!r}")
    return m - margin


# --- argument checks ------------------------------------------------------------------------------

NORMALIZATIONS = ("intensity", "pixels")


def per_axis(value, ndim, name, *, integer=False, finite=True, positive=False) -> tuple:
    """``value`` as ``ndim`` non-negative numbers, one per axis (a single number applies to all).

    Parameters
    ----------
    value : number or sequence of numbers
        One number, or a 1-D sequence of one or ``ndim`` numbers.
    ndim : int
        Number of axes.
    name : str
        The argument's name in errors.
    integer : bool
        Require whole numbers and return ints.
    finite : bool
        Refuse ``inf`` (NaN and negative numbers are always refused).
    positive : bool
        Refuse 0 too.

    Returns
    -------
    tuple of float (or int with ``integer``)

    Raises
    ------
    ParameterError
        Naming ``name`` and what is wrong.
    """
    try:
        values = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(name, f"expected a number or {ndim} numbers, got {value!r}") from None
    if values.ndim > 1:
        raise ParameterError(name, f"must be a number or a 1-D sequence, got shape {values.shape}")
    values = np.atleast_1d(values)
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.size != ndim:
        raise ParameterError(name, f"has {values.size} entries but the image has {ndim} axes")
    if np.isnan(values).any() or (values < 0).any():
        raise ParameterError(name, f"must be non-negative, got {tuple(values.tolist())}")
    if positive and (values == 0).any():
        raise ParameterError(name, f"must be positive, got {tuple(values.tolist())}")
    if finite and not np.isfinite(values).all():
        raise ParameterError(name, f"must be finite, got {tuple(values.tolist())}")
    if integer:
        if not np.array_equal(values, np.round(values)):
            raise ParameterError(name, f"must be integers, got {value!r}")
        return tuple(int(v) for v in values)
    return tuple(float(v) for v in values)


def check_maxshift(maxshift, shape):
    """Validate ``maxshift`` against an image ``shape``; return it as a tuple of ints."""
    try:
        m = tuple(int(v) for v in np.atleast_1d(maxshift))
    except (TypeError, ValueError):
        raise ParameterError("maxshift", f"must be a sequence of ints, got {maxshift!r}") from None
    if not np.array_equal(np.atleast_1d(np.asarray(maxshift, dtype=float)), m):
        raise ParameterError("maxshift", f"must be integers, got {maxshift!r}")
    if len(m) != len(shape):
        raise ParameterError("maxshift", f"has {len(m)} entries but the image has {len(shape)} axes")
    if any(v < 0 for v in m):
        raise ParameterError("maxshift", f"must be non-negative, got {m}")
    for axis, (v, n) in enumerate(zip(m, shape)):
        # per axis, so that a job spec's error names params.maxshift.<axis> (Apertures calls this)
        if v >= n:
            raise ParameterError(f"maxshift.{axis}",
                                 f"{v} must be smaller than the image size {n} along axis {axis}")
    return m


def lambda_count(lo, hi) -> int:
    """Number of lambdas ``lo * 2**k`` (``k = 0, 1, ...``) the auto-lambda search tries on ``[lo, hi)``.

    The one definition of the ladder's length: the search builds its ladder with it and
    :class:`blockreg.Apertures` validates ``lam`` ranges and declares its arrays with it.
    """
    return math.ceil(math.log2(hi) - math.log2(lo))


def check_normalization(normalization):
    """Return ``normalization`` if it is one of :data:`NORMALIZATIONS`."""
    if normalization not in NORMALIZATIONS:
        raise ParameterError("normalization", f"must be one of {NORMALIZATIONS}, got {normalization!r}")
    return normalization


def check_pair(fixed, moving):
    """Return ``(xp, fixed, moving)`` as arrays of one module; ParameterError on an ndim mismatch."""
    xp = array_module(fixed, moving)
    fixed, moving = to_device(fixed, xp), to_device(moving, xp)
    if fixed.ndim != moving.ndim:
        raise ParameterError("moving", f"must have as many axes as fixed (fixed.ndim={fixed.ndim}, "
                                       f"moving.ndim={moving.ndim})")
    if fixed.ndim == 0:
        raise ParameterError("fixed", "must have at least one axis")
    return xp, fixed, moving
