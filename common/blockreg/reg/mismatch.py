"""Mismatch between a fixed and a moving image over a range of integer shifts.

A mismatch array ``mm`` has shape ``(2, *(2 * maxshift + 1))``: ``mm[0]`` is the numerator (sum of
squared differences), ``mm[1]`` the denominator, index ``maxshift`` is zero shift, and entry ``s``
compares ``fixed(x)`` with ``moving(x + s)``. So if ``moving(x) = fixed(x - d)`` the minimum of
``num / denom`` is at ``s = d``. Numerators and denominators are kept apart so that apertures can be
summed before dividing; NaN pixels are missing and excluded from both.

References
----------
.. [1] HolyLab, RegisterMismatch.jl, RegisterMismatchCommon.jl and RegisterCore.jl
   (https://github.com/HolyLab).
"""
from __future__ import annotations

import numpy as np

from .._backend import array_module, float_dtype, to_device
from ..errors import ParameterError
from ._common import check_normalization, check_pair, pair_axis, working_dtype
from .mismatch_plan import MismatchPlan

__all__ = ["mismatch", "mismatch_apertures", "MismatchPlan", "mismatch_zeroshift",
           "register_translate", "ratio", "argmin_mismatch", "correct_bias", "truncate_noise",
           "nanpad"]


def mismatch(fixed, moving, maxshift, normalization="intensity", *, dtype=None):
    """Whole-image mismatch for every integer shift ``|s_a| <= maxshift_a``.

    Parameters
    ----------
    fixed, moving : array_like
        Images (NumPy or CuPy) with the same number of axes; NaN = missing. ``moving`` may be
        larger than ``fixed``: ``fixed`` sits at the origin of ``moving``'s coordinates.
    maxshift : tuple of int
        Largest shift per axis (non-negative, smaller than ``fixed.shape``).
    normalization : {"intensity", "pixels"}, optional
        Denominator ``sum(f**2 + m**2)`` or the number of overlapping valid pixel pairs.
    dtype : dtype, optional
        Working float type (default ``float_dtype(fixed.dtype)``).

    Returns
    -------
    ndarray, shape ``(2, *(2 * maxshift + 1))``
        Numerator and denominator.

    Examples
    --------
    >>> f = np.random.default_rng(0).random((20, 20))
    >>> mm = mismatch(f, np.roll(f, (2, -1), axis=(0, 1)), (3, 3))
    >>> r = mm[0] / mm[1]
    >>> tuple(int(i) - 3 for i in np.unravel_index(np.argmin(r), r.shape))
    (2, -1)
    """
    _, fixed, moving = check_pair(fixed, moving)
    plan = MismatchPlan._whole_image(fixed, maxshift, normalization, dtype)
    return plan.compute(moving)[(0,) * fixed.ndim]


def mismatch_apertures(fixed, moving, gridsize, maxshift, normalization="pixels", overlap=0):
    """Mismatch of each aperture of a grid: ``MismatchPlan(fixed, ...).compute(moving)``.

    Returns
    -------
    ndarray, shape ``(*gridsize, 2, *(2 * maxshift + 1))``

    See Also
    --------
    MismatchPlan : reuse the fixed image's spectra across frames.
    """
    _, fixed, moving = check_pair(fixed, moving)
    plan = MismatchPlan(fixed, gridsize, maxshift, normalization=normalization, overlap=overlap)
    return plan.compute(moving)


def mismatch_zeroshift(fixed, moving, normalization="intensity"):
    """Zero-shift ``(num, denom)`` by direct float64 sums over pairs where both values are present.

    Float64 accumulation avoids the overflow and round-off of narrow camera types. ``moving`` may be
    larger than ``fixed`` (the fixed image sits at its origin).

    Returns
    -------
    ndarray, shape ``(2,)``
        ``[num, denom]`` as float64.
    """
    xp, fixed, moving = check_pair(fixed, moving)
    check_normalization(normalization)
    common = tuple(slice(0, min(a, b)) for a, b in zip(fixed.shape, moving.shape))
    f = fixed[common].astype(np.float64)
    m = moving[common].astype(np.float64)
    both = ~(xp.isnan(f) | xp.isnan(m))
    f, m = xp.where(both, f, 0), xp.where(both, m, 0)
    num = ((f - m) ** 2).sum()
    denom = both.sum(dtype=np.float64) if normalization == "pixels" else (f * f + m * m).sum()
    return xp.stack([num, xp.asarray(denom, dtype=np.float64)])


def ratio(mm, thresh, fill=np.nan):
    """``num / denom`` where ``denom >= thresh``, ``fill`` elsewhere (``mm[0]`` num, ``mm[1]`` denom)."""
    xp = array_module(mm)
    mm = xp.asarray(mm)
    pair_axis(mm, axis=0)
    num, den = mm[0], mm[1]
    ok = den >= thresh
    return xp.where(ok, num / xp.where(ok, den, 1), fill)


def _first_min_column_major(values, xp):
    """Index (tuple) of the first minimum of ``values`` in column-major (Julia) order."""
    flat = xp.transpose(values).ravel()  # column-major order of `values`
    k = int(xp.argmin(flat))
    return np.unravel_index(k, values.shape, order="F")


def argmin_mismatch(mm, thresh=None):
    """Shift of the smallest ``num / denom`` among interior shifts with ``denom > thresh``.

    Parameters
    ----------
    mm : ndarray
        A mismatch array ``(2, *(2m + 1))``, or a ratio array ``(2m + 1, ...)`` (all sizes odd),
        for which ``thresh`` is not used.
    thresh : float
        Denominator threshold (required for a mismatch array).

    Returns
    -------
    tuple of int
        The shift; zero if no entry qualifies. Edge shifts (``|s_a| = m_a``) are never chosen,
        since a minimum there may lie beyond the searched range. Ties go to the first entry in
        column-major order, as in the original.
    """
    xp = array_module(mm)
    mm = xp.asarray(mm)
    if mm.shape and mm.shape[0] == 2:
        if thresh is None:
            raise ParameterError("thresh", "is required when mm is a (num, denom) mismatch array")
        r = xp.where(mm[1] > thresh, mm[0] / xp.where(mm[1] > thresh, mm[1], 1), xp.inf)
    else:
        if any(n % 2 == 0 for n in mm.shape):
            raise ParameterError("mm", f"must be (2, *(2m+1)) or a ratio array of odd sizes, got "
                                       f"{mm.shape}")
        r = mm.astype(float_dtype(mm.dtype))
    m = tuple((n - 1) // 2 for n in r.shape)
    interior = tuple(slice(1, n - 1) for n in r.shape)
    inner = xp.where(xp.isnan(r[interior]), xp.inf, r[interior])
    if inner.size == 0 or not bool(xp.isfinite(inner).any()):
        return (0,) * r.ndim
    idx = _first_min_column_major(inner, xp)
    return tuple(int(i) + 1 - s for i, s in zip(idx, m))


def register_translate(fixed, moving, maxshift, thresh=None):
    """Best integer translation ``s`` (``moving(x + s) ~ fixed(x)``) by whole-image mismatch.

    Parameters
    ----------
    thresh : float, optional
        Denominator threshold; default ``0.25 * max(denom)``.

    Returns
    -------
    tuple of int
    """
    mm = mismatch(fixed, moving, maxshift, normalization="intensity")
    if thresh is None:
        thresh = 0.25 * float(mm[1].max())
    return argmin_mismatch(mm, thresh)


def truncate_noise(mm, thresh, *, axis=None):
    """Copy of ``mm`` (or ``mms``) with num = denom = 0 wherever ``denom <= thresh``.

    ``axis`` is the num/denom axis; by default the last axis of length 2 (shift axes are odd).
    """
    xp = array_module(mm)
    mm = xp.asarray(mm)
    axis = pair_axis(mm, axis)
    den = xp.take(mm, [1], axis=axis)
    return xp.where(den <= thresh, 0, mm).astype(mm.dtype, copy=False)


def correct_bias(mms, *, axis=None):
    """Replace entries at zero shift along the first or second axis by their neighbours' average.

    A camera's fixed-pattern noise makes every image resemble every other at exactly zero shift,
    biasing the mismatch there. Each suspect entry (``s_0 == 0`` or ``s_1 == 0``) becomes the mean
    of the non-suspect entries within +-1 along the first two shift axes (same index along the
    others); num and denom are averaged separately. Entries without such neighbours get 0/0.
    Non-mutating.

    Parameters
    ----------
    mms : ndarray
        ``(2, *(2m + 1))`` or ``(*gridsize, 2, *(2m + 1))``.
    axis : int, optional
        The num/denom axis; by default the last axis of length 2 (shift axes are odd).

    References
    ----------
    .. [1] HolyLab, RegisterMismatchCommon.jl, ``correctbias!``.
    """
    xp = array_module(mms)
    mms = xp.asarray(mms)
    axis = pair_axis(mms, axis, name="mms")
    n = mms.ndim - axis - 1
    shift_shape = mms.shape[axis + 1:]
    weight = np.ones(shift_shape)
    for a in range(min(n, 2)):
        index = [slice(None)] * n
        index[a] = (shift_shape[a] - 1) // 2
        weight[tuple(index)] = 0
    weight = to_device(weight.astype(mms.dtype), xp)
    total = xp.zeros_like(mms)
    count = xp.zeros_like(weight)
    weighted = mms * weight
    lead = (slice(None),) * (axis + 1)
    offsets = [(-1, 0, 1) if a < min(n, 2) else (0,) for a in range(n)]
    for offset in np.ndindex(*[len(o) for o in offsets]):
        delta = [offsets[a][i] for a, i in enumerate(offset)]
        dst = tuple(slice(max(0, -d), s - max(0, d)) for d, s in zip(delta, shift_shape))
        src = tuple(slice(max(0, d), s - max(0, -d)) for d, s in zip(delta, shift_shape))
        total[lead + dst] += weighted[lead + src]
        count[dst] += weight[src]
    averaged = total / xp.where(count > 0, count, 1)
    return xp.where(weight > 0, mms, averaged)


def nanpad(fixed, moving):
    """Pad ``fixed`` and ``moving`` with NaN (at the high end) to their elementwise maximum shape."""
    xp, fixed, moving = check_pair(fixed, moving)
    shape = tuple(max(a, b) for a, b in zip(fixed.shape, moving.shape))
    out = []
    for img in (fixed, moving):
        padded = xp.full(shape, xp.nan, dtype=working_dtype(img.dtype))
        padded[tuple(slice(0, n) for n in img.shape)] = img
        out.append(padded)
    return tuple(out)
