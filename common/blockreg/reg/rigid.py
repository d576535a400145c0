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

from .._backend import array_module, ndimage_module

#: Spline order used to sample the moving image (the original samples with quadratic B-splines).
SPLINE_ORDER = 2


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


class _RigidMismatch:
    """``sum (f - m o T)^2 / sum (f^2 + (m o T)^2)`` over pixels valid in both images."""

    def __init__(self, fixed, moving, thresh):
        xp = array_module(fixed, moving)
        self.xp, self.ndi = xp, ndimage_module(xp)
        fixed = xp.asarray(fixed, dtype=np.float64)
        moving = xp.asarray(moving, dtype=np.float64)
        self.fixed_valid = xp.isfinite(fixed)
        self.fixed = xp.where(self.fixed_valid, fixed, 0.0)
        moving_valid = xp.isfinite(moving)
        # NaN would spread through the whole spline prefilter; fill it, and track validity apart.
        self.moving_coef = self.ndi.spline_filter(
            xp.where(moving_valid, moving, 0.0), order=SPLINE_ORDER, mode="nearest"
        )
        self.moving_valid = moving_valid.astype(np.float64)
        grids = xp.meshgrid(*[xp.arange(n, dtype=np.float64) for n in fixed.shape], indexing="ij")
        self.points = xp.stack([g.ravel() for g in grids])  # (N, npix)
        self.thresh = thresh

    def __call__(self, A, b):
        xp = self.xp
        y = xp.asarray(A) @ self.points + xp.asarray(b)[:, None]
        shape = self.fixed.shape
        m = self.ndi.map_coordinates(
            self.moving_coef, y, order=SPLINE_ORDER, mode="nearest", prefilter=False
        ).reshape(shape)
        # All linear-interpolation neighbours must be inside and finite for a sample to count.
        inside = self.ndi.map_coordinates(self.moving_valid, y, order=1, cval=0.0).reshape(shape)
        valid = self.fixed_valid & (inside >= 1 - 1e-6)
        f = xp.where(valid, self.fixed, 0.0)
        m = xp.where(valid, m, 0.0)
        den = float(xp.sum(f * f + m * m))
        if den <= self.thresh or den == 0:
            return math.inf
        return float(xp.sum((f - m) ** 2)) / den


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
        Convergence tolerance of the optimiser (projected gradient).

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
        raise ValueError(f"fixed must be 2-D or 3-D, got {N}-D")
    if moving.ndim != N:
        raise ValueError(f"moving must be {N}-D like fixed, got {moving.ndim}-D")
    maxshift = np.broadcast_to(np.asarray(maxshift, dtype=np.float64), (N,))
    if np.any(maxshift < 0):
        raise ValueError(f"maxshift must be >= 0, got {maxshift}")
    nrot = 1 if N == 2 else 3
    maxrot = np.broadcast_to(np.asarray(maxrot, dtype=np.float64), (nrot,))

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
            raise ValueError(f"tform0 must be (A (N, N), b (N,)) with N = {N}")
        # b = c + t - A c  <=>  t = b - c + A c
        params0 = np.concatenate([_angles(A0) * radius, b0 - center + A0 @ center])

    def transform(p):
        A = _rotation(p[:nrot] / radius)
        return A, center + p[nrot:] - A @ center

    mismatch = _RigidMismatch(fixed, moving, thresh)

    def objective(p):
        return mismatch(*transform(p))

    f0 = objective(params0)
    if not math.isfinite(f0):
        raise ValueError("the mismatch at the starting transform is not finite (no overlap?)")

    step = 1e-3

    def value_and_grad(p):
        grad = np.empty_like(p)
        for i in range(p.size):
            e = np.zeros_like(p)
            e[i] = step
            grad[i] = (objective(p + e) - objective(p - e)) / (2 * step)
        return objective(p), grad

    lower = np.concatenate([-maxrot * radius, -maxshift])
    upper = np.concatenate([maxrot * radius, maxshift])
    result = scipy.optimize.minimize(
        value_and_grad,
        np.clip(params0, lower, upper),
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(lower, upper),
        options={"gtol": atol, "ftol": 1e-12},
    )
    best, fbest = params0, f0
    if math.isfinite(result.fun) and result.fun < f0:
        best, fbest = result.x, float(result.fun)
    A, b = transform(best)
    return A, b, fbest
