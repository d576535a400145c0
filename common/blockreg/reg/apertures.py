"""Aperture geometry (0-based): where the apertures of a grid sit and which pixels each one covers.

Apertures are centred on the grid nodes, which span the image corners, so a corner aperture has
about ``(1/2)**N`` of its area inside the image (the rest is NaN). With zero overlap the apertures
tile the image exactly.

References
----------
.. [1] HolyLab, RegisterMismatchCommon.jl, ``aperture_grid``, ``default_aperture_width``,
   ``aperture_range`` (https://github.com/HolyLab/RegisterMismatchCommon.jl).
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import array_module
from ..errors import ParameterError
from ._common import check_normalization, per_axis
from .deformation import node_grid, nodes_for_shape


def _check_gridsize(shape, gridsize):
    shape = tuple(int(n) for n in shape)
    try:
        gridsize = tuple(int(g) for g in gridsize)
    except TypeError:
        raise ParameterError("gridsize", f"must be a sequence of ints, got {gridsize!r}") from None
    if len(gridsize) != len(shape):
        raise ParameterError("gridsize", f"has {len(gridsize)} entries but the image has "
                                         f"{len(shape)} axes")
    for a, (n, g) in enumerate(zip(shape, gridsize)):
        if g < 1:
            raise ParameterError("gridsize", f"must be >= 1 on every axis, got {gridsize}")
        if g > n:
            raise ParameterError("gridsize", f"{gridsize} exceeds the image size {shape} along "
                                             f"axis {a}")
    return shape, gridsize


def aperture_grid(shape, gridsize):
    """Aperture centres of a ``gridsize`` grid over an image of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        Image shape (spatial axes).
    gridsize : tuple of int
        Number of apertures along each axis.

    Returns
    -------
    ndarray, shape ``(*gridsize, N)``
        Centre of each aperture in 0-based pixel coordinates: the deformation's nodes
        (:func:`~blockreg.reg.deformation.nodes_for_shape`), so apertures sit on the nodes.
    """
    shape, gridsize = _check_gridsize(shape, gridsize)
    return node_grid(nodes_for_shape(shape, gridsize))


def default_aperture_width(shape, gridsize, overlap=0):
    """Aperture width per axis: the node spacing plus ``2 * overlap`` (the full size where g == 1).

    Parameters
    ----------
    shape, gridsize : tuple of int
        Image shape and grid size.
    overlap : float or sequence of float, optional
        Extra pixels on each side of an aperture (ignored along axes with one aperture).

    Returns
    -------
    tuple of float
        Width along each axis (may be non-integer).
    """
    shape, gridsize = _check_gridsize(shape, gridsize)
    ov = per_axis(overlap, len(shape), "overlap")
    return tuple(float((n - 1) / (g - 1) + 2 * o) if g > 1 else float(n)
                 for n, g, o in zip(shape, gridsize, ov))


def aperture_range(center, width):
    """Pixel slices covered by an aperture of ``width`` centred at ``center``.

    Along each axis the range is ``ceil(c - w/2) <= x < ceil(c + w/2)``; it may extend outside the
    image (a negative start is a real coordinate here, not Python's from-the-end indexing).

    Examples
    --------
    >>> aperture_range((14,), (7,))
    (slice(11, 18, None),)
    """
    center = np.atleast_1d(np.asarray(center, dtype=float))
    width = per_axis(width, center.size, "width", positive=True)
    return tuple(slice(math.ceil(c - w / 2), math.ceil(c + w / 2)) for c, w in zip(center, width))


def aperture_content(fixed, gridsize, overlap=0, normalization="pixels"):
    """Each aperture's own zero-shift mismatch denominator of ``fixed`` against itself.

    The number of valid (non-NaN) pixels of the aperture inside the image (``"pixels"``), or
    ``2 * sum(fixed**2)`` over them (``"intensity"``): the largest denominator the aperture can
    reach.  Edge and corner apertures hang over the image border, so theirs are about 1/2 and
    1/2**N of an interior aperture's.

    Parameters
    ----------
    fixed : ndarray
        The fixed image (NumPy or CuPy), NaN = missing.
    gridsize : tuple of int
    overlap : float or tuple of float
    normalization : {"pixels", "intensity"}

    Returns
    -------
    ndarray of float64, shape ``gridsize`` (on the device of ``fixed``)
    """
    xp = array_module(fixed)
    fixed = xp.asarray(fixed)
    check_normalization(normalization)
    valid = ~xp.isnan(fixed)
    weight = valid if normalization == "pixels" else 2 * xp.where(valid, fixed, 0).astype(np.float64) ** 2
    centers = aperture_grid(fixed.shape, gridsize)
    width = default_aperture_width(fixed.shape, gridsize, overlap)
    out = np.empty(tuple(gridsize))
    # A loop over apertures is fine here: it runs once per fixed image, not per frame.
    for idx in np.ndindex(*gridsize):
        region = tuple(slice(max(r.start, 0), min(r.stop, n))
                       for r, n in zip(aperture_range(centers[idx], width), fixed.shape))
        out[idx] = float(weight[region].sum())
    return xp.asarray(out)
