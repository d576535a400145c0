"""Parameter checks shared by the algorithms: one owner per rule.

The fixed image, the preprocess callable, the node grid, the aperture threshold and the range of
the affine-penalty weight lambda.  Each check raises :class:`blockreg.errors.ParameterError`
naming the argument; the job spec, the CLI and the API report what these raise.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._backend import array_module, to_host
from ..errors import ParameterError
from ..reg._common import lambda_count

__all__ = ["check_fixed", "check_preprocess", "check_nodes", "aperture_thresh", "check_lambda",
           "LAMBDA_MAX", "LAMBDA_RANGE_MIN"]


def check_fixed(fixed, ndims=None):
    """The fixed image as a floating-point array of its own array module (NumPy or CuPy).

    ``ndims``: the numbers of dimensions the algorithm handles (default: any).  Integer images
    become float32.

    Raises
    ------
    ParameterError
        Field ``fixed``: a scalar, another number of dimensions, a non-real dtype, or no finite
        pixel.
    """
    xp = array_module(fixed)
    fixed = xp.asarray(fixed)
    if fixed.ndim < 1:
        raise ParameterError("fixed", "must be an image, got a scalar")
    if ndims is not None and fixed.ndim not in ndims:
        wanted = " or ".join(f"{n}-D" for n in ndims)
        raise ParameterError("fixed", f"must be a {wanted} image, got {fixed.ndim}-D")
    if fixed.dtype.kind not in "fiu":
        raise ParameterError("fixed", f"must be a real-valued image, got dtype {fixed.dtype}")
    if fixed.dtype.kind != "f":
        fixed = fixed.astype(np.float32)
    if not bool(xp.isfinite(fixed).any()):
        raise ParameterError("fixed", "the image has no finite pixels")
    return fixed


def check_preprocess(preprocess):
    """``preprocess`` if it is callable or None, else a ParameterError naming it."""
    if preprocess is not None and not callable(preprocess):
        raise ParameterError("preprocess",
                             f"must be callable or None, got {type(preprocess).__name__}")
    return preprocess


def check_nodes(nodes, shape):
    """Validate a node grid against an image ``shape``: it must be the corner-spanning grid
    (``linspace(0, n_a - 1, g_a)``, the centre for ``g_a == 1``), since apertures are centred on
    the nodes.  Returns the grid as computed from the shape (float64 arrays).

    Raises
    ------
    ParameterError
        Field ``nodes`` for a wrong grid, ``gridsize.<axis>`` for more nodes than pixels.
    """
    from ..reg.deformation import nodes_for_shape

    try:
        nodes = tuple(np.asarray(to_host(n), dtype=np.float64) for n in nodes)
    except (TypeError, ValueError):
        raise ParameterError("nodes", "must be a tuple of 1-D arrays, one per image axis") from None
    if len(nodes) != len(shape) or any(n.ndim != 1 or n.size < 1 for n in nodes):
        raise ParameterError("nodes", f"must be {len(shape)} non-empty 1-D arrays (one per "
                                      "image axis)")
    gridsize = tuple(n.size for n in nodes)
    for a, (g, n) in enumerate(zip(gridsize, shape)):
        if g > n:  # an aperture narrower than a pixel
            raise ParameterError(f"gridsize.{a}",
                                 f"{g} apertures exceed the image size {n} along axis {a}")
    expected = nodes_for_shape(shape, gridsize)
    for a, (got, want) in enumerate(zip(nodes, expected)):
        if not np.allclose(got, want, rtol=0, atol=1e-6 * max(shape[a], 1)):
            raise ParameterError(
                "nodes", f"axis {a} must be the corner-spanning grid linspace(0, "
                         f"{shape[a] - 1}, {gridsize[a]}) (apertures are centred on the nodes), "
                         f"got {got.tolist()}")
    return tuple(want for want in expected)


def aperture_thresh(fixed, gridsize, overlap, normalization, thresh_fac=None, thresh=None):
    """The mismatch denominator threshold of each aperture, and the factor it derives from.

    Default ``thresh``: per aperture, ``thresh_fac`` (default ``0.5**N``) times that aperture's
    own zero-shift denominator of the fixed image
    (:func:`blockreg.reg.apertures.aperture_content`).

    Returns
    -------
    (float, ndarray of shape ``gridsize``)
        ``thresh_fac`` and ``thresh`` (float64).

    Raises
    ------
    ParameterError
        Field ``thresh_fac`` or ``thresh``: negative, not finite, or of another shape.
    """
    factor = 0.5**fixed.ndim if thresh_fac is None else float(thresh_fac)
    if not (math.isfinite(factor) and factor >= 0):
        raise ParameterError("thresh_fac", f"must be finite and >= 0, got {thresh_fac}")
    if thresh is None:
        from ..reg.apertures import aperture_content

        content = aperture_content(fixed, gridsize, overlap, normalization)
        thresh = factor * np.asarray(to_host(content))
    thresh = np.broadcast_to(np.asarray(thresh, dtype=np.float64), gridsize) \
        if np.ndim(thresh) == 0 else np.asarray(thresh, dtype=np.float64)
    if thresh.shape != gridsize:
        raise ParameterError("thresh", f"must be a number or an array of shape {gridsize}, "
                                       f"got shape {thresh.shape}")
    if not (np.isfinite(thresh).all() and (thresh >= 0).all()):
        raise ParameterError("thresh", "must be finite and >= 0")
    return factor, thresh


# The range of lambda: beyond 1e6 the penalty leaves nothing but the affine part, and a sweep
# from 1e-9 to 1e6 already takes 50 steps of 2x (each a full optimisation of every frame).
LAMBDA_MAX = 1e6
LAMBDA_RANGE_MIN = 1e-9


def check_lambda(lam):
    """Validate an affine-penalty weight (the ``lam`` argument of :class:`Apertures`).

    The one owner of the rule: the job spec and ``blockreg register --lambda`` report what this
    raises.

    Returns
    -------
    (float or None, (float, float) or None)
        ``(lam, None)`` for a fixed lambda, ``(None, (min, max))`` for an auto-lambda range.

    Raises
    ------
    ParameterError
        Field ``lam``: not a number in ``[0, LAMBDA_MAX]``, nor a ``(min, max)`` pair with
        ``LAMBDA_RANGE_MIN <= min < max <= LAMBDA_MAX`` spanning at least 4 steps of the ladder
        ``min * 2**k``.
    """
    if isinstance(lam, numbers.Real) and not isinstance(lam, bool):
        lam = float(lam)
        if not (math.isfinite(lam) and lam >= 0):
            raise ParameterError("lam", f"must be a finite number >= 0 or a (min, max) pair, got {lam}")
        if lam > LAMBDA_MAX:
            raise ParameterError("lam", f"must be at most {LAMBDA_MAX:g}, got {lam:g}")
        return lam, None
    try:
        lo, hi = (float(v) for v in lam)
    except (TypeError, ValueError):
        raise ParameterError("lam", f"must be a number or a (min, max) pair, got {lam!r}") from None
    if lo < 0 or hi < 0:
        raise ParameterError("lam", f"lambda must not be negative, got {(lo, hi)}")
    if not (0 < lo < hi < math.inf):
        raise ParameterError("lam", f"auto-lambda range needs 0 < min < max < inf, got {(lo, hi)}")
    if lo < LAMBDA_RANGE_MIN or hi > LAMBDA_MAX:
        raise ParameterError("lam", f"auto-lambda range must lie within [{LAMBDA_RANGE_MIN:g}, "
                                    f"{LAMBDA_MAX:g}], got ({lo:g}, {hi:g})")
    if lambda_count(lo, hi) < 4:
        raise ParameterError(
            "lam", f"the range {(lo, hi)} gives fewer than 4 lambdas (min * 2**k); widen it to at "
                   "least 16x")
    return None, (lo, hi)
