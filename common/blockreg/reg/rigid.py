"""Rigid (rotation + translation) registration of whole images.

The transform maps *fixed* coordinates to *moving* coordinates, ``y = A x + b``, with the same
meaning as a deformation (``warp`` semantics): ``moving(A x + b) ~ fixed(x)``.  So
``tform_to_deformation(A, b, shape, gridsize)`` of the result registers moving to fixed.

References
----------
.. [1] T. E. Holy et al., RegisterOptimize.jl (HolyLab), ``optimize_rigid``.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.optimize
from scipy.spatial.transform import Rotation

from .._backend import array_module, ndimage_module, to_host
from ..errors import ParameterError
from ._common import per_axis

#: Spline order used to sample the moving image (the original samples with quadratic B-splines).
SPLINE_ORDER = 2
#: Edge padding (pixels) of the moving image before its spline prefilter.
_PAD = 3


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix from an angle (2-D) or a rotation vector (3-D), in axis order."""
    if angles.size == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    return Rotation.from_rotvec(angles).as_matrix()


def _angles(A: np.ndarray) -> np.ndarray:
    if A.shape == (2, 2):
        return np.array([math.atan2(A[1, 0], A[0, 0])])
    return Rotation.from_matrix(A).as_rotvec()


def _rotation_derivatives(angles: np.ndarray, h: float = 1e-6) -> list[np.ndarray]:
    """``d R / d angle_i`` for each angle parameter, by central differences of a tiny matrix."""
    out = []
    for i in range(angles.size):
        e = np.zeros_like(angles)
        e[i] = h
        out.append((_rotation(angles + e) - _rotation(angles - e)) / (2 * h))
    return out


class _RigidMismatch:
    """``sum (f - m o T)^2 / sum (f^2 + (m o T)^2)`` over pixels valid in both images.

    ``m`` is sampled from its quadratic B-spline; the gradient is analytic in the transform
    parameters, with the spline's spatial derivative taken by a tiny central difference.
    """

    def __init__(self, fixed, moving, thresh):
        xp = array_module(fixed, moving)
        self.xp, self.ndi = xp, ndimage_module(xp)
        fixed = xp.asarray(fixed, dtype=np.float64)
        moving = xp.asarray(moving, dtype=np.float64)
        self.fixed_valid = xp.isfinite(fixed)
        self.fixed = xp.where(self.fixed_valid, fixed, 0.0)
        moving_valid = xp.isfinite(moving)
        if not bool(xp.all(moving_valid)):
            # NaN would spread through the whole (recursive) prefilter: fill each hole with its
            # nearest valid value, and stay a few pixels away from holes, where the fill still
            # leaks into the coefficients (by a factor ~0.17 per pixel for quadratic splines).
            _, nearest = self.ndi.distance_transform_edt(~moving_valid, return_indices=True)
            moving = moving[tuple(nearest)]
            moving_valid = self.ndi.binary_erosion(moving_valid, iterations=3, border_value=1)
        # Pad by edge values so every valid sample's spline stencil is interior and the
        # coefficient extension beyond the array never matters.
        moving = xp.pad(moving, _PAD, mode="edge")
        moving_valid = xp.pad(moving_valid, _PAD, mode="constant", constant_values=False)
        coef = self.ndi.spline_filter(moving, order=SPLINE_ORDER, mode="nearest")
        self.moving_coef = coef
        self.moving_valid = moving_valid.astype(np.float64)
        grids = xp.meshgrid(*[xp.arange(n, dtype=np.float64) for n in fixed.shape], indexing="ij")
        self.points = xp.stack([g.ravel() for g in grids])  # (N, npix)
        self.thresh = thresh

    def _sample(self, y):
        return self.ndi.map_coordinates(
            self.moving_coef, y, order=SPLINE_ORDER, mode="nearest", prefilter=False
        )

    def __call__(self, A, b, dA=None):
        """Mismatch at ``y = A x + b``; with ``dA`` (list of dA/dp_i) also the gradient.

        The gradient lists d/dp_i for the ``dA`` parameters, then d/db.
        """
        xp, ndi = self.xp, self.ndi
        y = xp.asarray(A) @ self.points + xp.asarray(b + _PAD)[:, None]
        m = self._sample(y)
        # All linear-interpolation neighbours must be inside and valid for a sample to count.
        inside = ndi.map_coordinates(self.moving_valid, y, order=1, cval=0.0)
        valid = self.fixed_valid.ravel() & (inside >= 1 - 1e-6)
        f = xp.where(valid, self.fixed.ravel(), 0.0)
        m = xp.where(valid, m, 0.0)
        num = float(xp.sum((f - m) ** 2))
        den = float(xp.sum(f * f + m * m))
        if den <= self.thresh or den == 0:
            return (math.inf, None) if dA is not None else math.inf
        value = num / den
        if dA is None:
            return value
        # d value / d m at each valid sample
        w = (-2 * (f - m) * den - 2 * m * num) / den**2
        # The spline is piecewise quadratic and C1, so a central difference of its samples is
        # its derivative up to O(h) only where the step straddles a knot.
        h = 1e-4
        grad_m = xp.stack([
            (self._sample(y + h * e[:, None]) - self._sample(y - h * e[:, None])) / (2 * h)
            for e in xp.asarray(np.eye(y.shape[0]))
        ])  # (N, npix): d m / d y_a
        wg = grad_m * w  # (N, npix)
        G = to_host(wg @ self.points.T)  # sum_x w_x grad m(y_x) x^T, (N, N)
        grad_b = to_host(xp.sum(wg, axis=1))
        grad_A = [float(np.sum(d * G)) for d in dA]
        return value, np.concatenate([grad_A, grad_b])


def optimize_rigid(fixed, moving, *, maxshift, maxrot=np.pi, tform0=None, thresh=0, atol=1e-4):
    """Rotation + translation that best maps ``fixed`` coordinates onto ``moving``.

    Parameters
    ----------
    fixed, moving : ndarray, 2-D or 3-D
        Images (NumPy or CuPy); NaN = missing.
    maxshift : int or sequence of int
        Bound on the translation (pixels per axis) and the range of the initial grid search.
    maxrot : float or sequence of float
        Bound on the rotation angle (2-D) or each rotation-vector component (3-D), radians.
    tform0 : (A, b), optional
        Start; default: no rotation and the best integer translation (``register_translate``).
    thresh : float
        A transform whose overlap has ``sum(f^2 + m^2) <= thresh`` is rejected (infinite
        mismatch).
    atol : float
        Convergence tolerance: the optimiser stops when every component of the projected
        gradient (per pixel of motion) is below ``atol`` times the starting mismatch.

    Returns
    -------
    A : ndarray, shape ``(N, N)``
        Rotation matrix.
    b : ndarray, shape ``(N,)``
        Translation; ``moving(A x + b) ~ fixed(x)``, rotation about the image centre folded in.
    mismatch : float
        ``sum (f - m)^2 / sum (f^2 + m^2)`` at the result.

    Notes
    -----
    The optimiser (L-BFGS-B with central-difference gradients) can end worse than its start; the
    start is then returned, the workaround the original's users applied.
    """
    xp = array_module(fixed, moving)
    fixed = xp.asarray(fixed)
    moving = xp.asarray(moving)
    N = fixed.ndim
    if N not in (2, 3):
        raise ParameterError("fixed", f"must be 2-D or 3-D, got {N}-D")
    if moving.ndim != N:
        raise ParameterError("moving", f"must be {N}-D like fixed, got {moving.ndim}-D")
    maxshift = np.asarray(per_axis(maxshift, N, "maxshift", finite=False))
    nrot = 1 if N == 2 else 3
    maxrot = np.asarray(per_axis(maxrot, nrot, "maxrot", finite=False))

    center = (np.asarray(fixed.shape, dtype=np.float64) - 1) / 2
    # Angles are optimised as arc lengths at the image's half-diagonal, so that a unit step in
    # any parameter moves pixels by about a pixel (a well-conditioned problem for L-BFGS).
    radius = max(float(np.linalg.norm(center)), 1.0)

    if tform0 is None:
        from .mismatch import register_translate

        shift = np.asarray(register_translate(fixed, moving, tuple(int(m) for m in maxshift)), float)
        params0 = np.concatenate([np.zeros(nrot), shift])
    else:
        A0, b0 = (np.asarray(v, dtype=np.float64) for v in tform0)
        if A0.shape != (N, N) or b0.shape != (N,):
            raise ParameterError("tform0", f"must be (A (N, N), b (N,)) with N = {N}")
        # b = c + t - A c  <=>  t = b - c + A c
        params0 = np.concatenate([_angles(A0) * radius, b0 - center + A0 @ center])

    def transform(p):
        A = _rotation(p[:nrot] / radius)
        return A, center + p[nrot:] - A @ center

    mismatch = _RigidMismatch(fixed, moving, thresh)

    def value_and_grad(p):
        angles = p[:nrot] / radius
        A = _rotation(angles)
        b = center + p[nrot:] - A @ center
        dA = _rotation_derivatives(angles)
        # b depends on the angles too: d b / d angle_i = -dA_i c
        value, grad = mismatch(A, b, [d / radius for d in dA])
        if grad is None:
            return value, np.zeros_like(p)
        grad_b = grad[nrot:]
        grad_angles = grad[:nrot] - np.array([grad_b @ (d @ center) for d in dA]) / radius
        return value, np.concatenate([grad_angles, grad_b])

    f0 = mismatch(*transform(params0))
    if not math.isfinite(f0):
        raise ValueError("the mismatch at the starting transform is not finite (no overlap?)")

    lower = np.concatenate([-maxrot * radius, -maxshift])
    upper = np.concatenate([maxrot * radius, maxshift])
    result = scipy.optimize.minimize(
        value_and_grad,
        np.clip(params0, lower, upper),
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(lower, upper),
        # The mismatch is a ratio whose scale depends on the images, so the gradient tolerance is
        # taken relative to the starting mismatch.
        options={"gtol": atol * f0, "ftol": 1e-15, "maxiter": 1000},
    )
    best, fbest = params0, f0
    if math.isfinite(result.fun) and result.fun < f0:
        best, fbest = result.x, float(result.fun)
    A, b = transform(best)
    return A, b, fbest
