"""Warping images by grid deformations: ``W(x) = img(x + u(x))``, linear interpolation, NaN outside.

The dense displacement comes from :meth:`GridDeformation.field` (separable quadratic B-spline);
the image is sampled with N-linear interpolation written directly in the array module, so the
same code runs on NumPy and CuPy and the edge rule is exact: a sample farther than float32
rounding beyond the image is NaN, one within it is clamped onto the edge.

References
----------
.. [1] HolyLab, RegisterDeformation.jl, ``src/warp.jl`` (``warp``, ``warp!`` to a stream).
"""
from __future__ import annotations

import os

import numpy as np

from .._backend import array_module, float_dtype, to_host
from ..errors import ParameterError
from ._common import working_dtype
from .deformation import GridDeformation

__all__ = ["warp", "warp_to_file", "edge_tolerance", "working_dtype"]


def edge_tolerance(n: int) -> float:
    """How far (pixels) beyond the edge of an axis of length ``n`` a sample still counts as inside.

    Coordinates computed in float32 carry a rounding error of a few ulps of ``n``; an absolute
    floor keeps exact-looking edge samples (e.g. ``n - 1 + 1e-4``) inside on small images.
    """
    return 1e-3 + 8.0 * float(np.finfo(np.float32).eps) * n


def _as_deformation(phi_or_u, nodes):
    if isinstance(phi_or_u, GridDeformation):
        if nodes is not None:
            raise ParameterError("nodes", "must not be given together with a GridDeformation")
        return phi_or_u
    if nodes is None:
        raise ParameterError("phi", "must be a GridDeformation, or give u together with nodes")
    return GridDeformation(phi_or_u, nodes)


def warp(img, phi, nodes=None, *, field=None):
    """Sample ``img`` at ``x + u(x)`` for every pixel ``x``.

    Parameters
    ----------
    img : ndarray, N-D
        Image (NumPy or CuPy); NaN pixels are missing data.
    phi : GridDeformation or ndarray
        The deformation, or its node displacements ``u`` (shape ``(*gridsize, N)``) when
        ``nodes`` is given.
    nodes : tuple, optional
        Node positions (or the image shape) for a bare ``u``.
    field : tuple of N ndarrays, optional
        ``phi.field(img.shape, dtype=working_dtype(img.dtype), xp=...)`` computed beforehand,
        so that several images warped by the same deformation share one dense field.

    Returns
    -------
    ndarray, ``img.shape``
        float32 for non-float input, else ``img``'s float type.  NaN where the sample falls
        outside the image or any interpolation neighbour with non-zero weight is NaN.

    Examples
    --------
    A constant displacement of +3 along the last axis moves the content 3 pixels to the left:

    >>> import numpy as np
    >>> img = np.arange(20.0).reshape(4, 5)
    >>> w = warp(img, np.zeros((2, 2, 2)) + [0, 3], img.shape)
    >>> w[0]
    array([ 3.,  4., nan, nan, nan])
    """
    phi = _as_deformation(phi, nodes)
    # The image decides where the work happens: a deformation fitted on the host (host u) warps a
    # device frame on the device, with only the grid coefficients moved.
    xp = array_module(img)
    img = xp.asarray(img)
    if img.ndim != phi.ndim:
        raise ParameterError("img", f"has {img.ndim} dimensions but phi has {phi.ndim}")
    out_dtype = float_dtype(img.dtype)
    work = working_dtype(img.dtype)
    if field is None:
        u = phi.field(img.shape, dtype=work, xp=xp)
    else:
        if len(field) != img.ndim or any(tuple(c.shape) != img.shape for c in field):
            raise ParameterError("field", f"must be {img.ndim} arrays of the image's shape {img.shape}")
        u = tuple(xp.asarray(c).astype(work, copy=False) for c in field)
    src = img.astype(work, copy=False)
    has_nan = bool(xp.isnan(src).any())
    out = xp.empty(img.shape, dtype=out_dtype)
    # Slabs along axis 0 bound the interpolation's temporaries (gather indices, weights: ~40 bytes
    # a voxel) independently of the volume's size; the output and the field are the only
    # frame-sized arrays.
    rows = max(1, _SLAB_VOXELS // max(1, int(np.prod(img.shape[1:]))))
    for start in range(0, img.shape[0], rows):
        slab = slice(start, start + rows)
        out[slab] = interpolate_linear(src, tuple(c[slab] for c in u), start=start, has_nan=has_nan)
    return out


_SLAB_VOXELS = 1 << 16


def interpolate_linear(img, displacement, *, start=0, has_nan=None):
    """N-linear interpolation of ``img`` at ``x + displacement(x)`` for every pixel ``x``.

    Parameters
    ----------
    img : ndarray, N-D, floating
    displacement : tuple of N ndarrays
        Per-axis displacement in pixels, of ``img.shape`` or of a slab of it along axis 0
        (rows ``start`` to ``start + displacement[0].shape[0]``).
    start : int
        First row (along axis 0) of the pixels ``displacement`` belongs to.
    has_nan : bool, optional
        Whether ``img`` has NaN (computed when not given).

    Returns
    -------
    ndarray, shape of ``displacement[0]``
        NaN outside the image (beyond :func:`edge_tolerance`) and where a neighbour with
        non-zero weight is NaN.
    """
    xp = array_module(img)
    shape = img.shape
    N = img.ndim
    flat = img.reshape(-1)
    strides = [int(np.prod(shape[a + 1:])) for a in range(N)]
    # NumPy's take converts any other index type to intp first; CuPy gathers int32 natively.
    index_dtype = np.intp if xp is np or img.size >= 2**31 else np.int32
    if has_nan is None:
        has_nan = bool(xp.isnan(flat).any())
    out_shape = tuple(displacement[0].shape)
    if out_shape[1:] != shape[1:] or not 0 <= start <= shape[0] - out_shape[0]:
        raise ParameterError("displacement", f"of shape {out_shape} at row {start} does not fit an "
                                             f"image of shape {shape}")

    valid = None
    base = None
    fractions = []
    for a, n in enumerate(shape):
        m = out_shape[a]
        first = start if a == 0 else 0
        pixel = xp.arange(first, first + m, dtype=img.dtype).reshape((m,) + (1,) * (N - 1 - a))
        x = displacement[a] + pixel
        tol = edge_tolerance(n)
        inside = x >= -tol
        inside &= x <= n - 1 + tol
        valid = inside if valid is None else xp.logical_and(valid, inside, out=valid)
        # fmax/fmin (unlike clip) turn NaN into a bound, keeping every gather index in range;
        # those samples are invalid and overwritten with NaN below.
        xp.fmax(x, 0, out=x)
        xp.fmin(x, n - 1, out=x)
        # The lower corner stops at n - 2 so the upper one exists; the last pixel gets f = 1.
        i = xp.minimum(xp.floor(x), max(n - 2, 0))
        x -= i
        fractions.append(x)
        i = i.astype(index_dtype)
        if strides[a] != 1:
            i *= strides[a]
        base = i if base is None else xp.add(base, i, out=base)

    def corner_sum(index, axis):
        if axis == N:
            return xp.take(flat, index)
        lo = corner_sum(index, axis + 1)
        if shape[axis] == 1:
            return lo
        hi = corner_sum(index + strides[axis], axis + 1)
        f = fractions[axis]
        if has_nan:
            # A NaN neighbour at zero weight must not poison a sample that sits on a pixel.
            value = lo + f * (hi - lo)
            return xp.where(f == 0, lo, xp.where(f == 1, hi, value))
        hi -= lo
        hi *= f
        hi += lo
        return hi

    out = corner_sum(base, 0)
    return xp.where(valid, out, out.dtype.type(np.nan))


def warp_to_file(path_or_file, frames, phis, dtype=np.float32, nodes=None):
    """Warp each frame and append its raw bytes to a file, one frame at a time.

    Parameters
    ----------
    path_or_file : str, os.PathLike or binary file object
        A path is created (truncated); a file object is written from its current position.
    frames : ndarray ``(T, *spatial)`` or sequence of T images
    phis : sequence of T GridDeformation, or ndarray ``(T, *gridsize, N)`` with ``nodes``
    dtype : dtype
        Element type written.
    nodes : tuple, optional
        Node positions (or the image shape) when ``phis`` is an array of displacements.

    Notes
    -----
    Frames are written in C order; with time as the first axis the file has the byte layout of
    the original's column-major ``(x, y, [z,] t)`` stream, so files are interchangeable.
    """
    if nodes is not None:
        phis = [GridDeformation(phis[t], nodes) for t in range(len(phis))]
    if len(frames) != len(phis):
        raise ParameterError("phis", f"has {len(phis)} deformations for {len(frames)} frames")
    dtype = np.dtype(dtype)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "wb") as fh:
            _write_frames(fh, frames, phis, dtype)
    else:
        _write_frames(path_or_file, frames, phis, dtype)


def _write_frames(fh, frames, phis, dtype):
    for frame, phi in zip(frames, phis):
        warped = to_host(warp(frame, phi))
        fh.write(np.ascontiguousarray(warped, dtype=dtype).tobytes())
