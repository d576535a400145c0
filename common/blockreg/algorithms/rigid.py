"""Rigid (rotation + translation) registration of each frame: the original's ``Rigid`` worker.

Each frame is preprocessed and registered to the fixed image by :func:`blockreg.reg.rigid.optimize_rigid`
(bounded quasi-Newton on the normalised squared difference), started from the best integer
translation.  With ``levels > 1`` this runs coarse to fine on a pyramid of 2x block means: the
translation search and the first optimisation run on the coarsest level, where they are cheap and
a large shift is a small one, and each finer level starts from the coarser answer.

The result is a per-frame affine transform and, like every algorithm, node displacements ``u`` on
a grid, so downstream steps (warp jobs, QC, the dashboard) treat rigid jobs like the others.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._backend import array_module, to_host
from ..errors import ParameterError
from .base import Algorithm, ArrayDecl
from .checks import check_fixed, check_preprocess

__all__ = ["Rigid", "affine_field", "downsample2"]

#: Smallest axis (pixels) a pyramid level may have when ``levels`` is chosen automatically.
MIN_LEVEL_SIZE = 32
#: Most levels chosen automatically.
MAX_AUTO_LEVELS = 4
#: Default node grid of ``u`` per axis (capped by the axis length).  A quadratic B-spline grid
#: represents an affine map only approximately near the edges (flat boundary): for a 5 degree
#: rotation of a 128 px image the dense field is off by at most 0.46 px with 3 nodes per axis,
#: 0.11 px with 9 and 0.05 px with 17 (0.02 / 0.002 px away from the outer 16 px).
DEFAULT_NODES_PER_AXIS = 9


def downsample2(img):
    """2x block mean along every axis (a trailing odd row is dropped), NaN-aware.

    Pixel ``i`` of the result covers pixels ``2i, 2i + 1``, so coarse coordinate ``x`` is fine
    coordinate ``2x + 0.5``.  A block with no finite pixel is NaN.
    """
    xp = array_module(img)
    img = xp.asarray(img, dtype=np.float32 if img.dtype.kind != "f" else img.dtype)
    img = img[tuple(slice(0, n - n % 2) for n in img.shape)]
    shape = []
    for n in img.shape:
        shape += [n // 2, 2]
    finite = xp.isfinite(img)
    total = xp.where(finite, img, 0).reshape(shape).sum(axis=tuple(range(1, 2 * img.ndim, 2)))
    count = finite.reshape(shape).sum(axis=tuple(range(1, 2 * img.ndim, 2)))
    return xp.where(count > 0, total / xp.maximum(count, 1), xp.nan).astype(img.dtype)


def affine_field(A, b, shape, dtype=np.float32, xp=np):
    """The dense displacement ``u(x) = (A - I) x + b`` of an affine map, as N arrays of ``shape``.

    For :func:`blockreg.reg.warp.warp`'s ``field=``: it then samples at exactly ``A x + b``.
    """
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    N = len(shape)
    axes = [xp.arange(n, dtype=np.float64).reshape((n,) + (1,) * (N - 1 - a)) for a, n in enumerate(shape)]
    out = []
    for i in range(N):
        u = xp.full(tuple(shape), b[i], dtype=np.float64)
        for j in range(N):
            coeff = A[i, j] - (1.0 if i == j else 0.0)
            if coeff != 0:
                u = u + coeff * axes[j]
        out.append(u.astype(dtype))
    return tuple(out)


class Rigid(Algorithm):
    """Rigid registration of each frame to a fixed image.

    Parameters
    ----------
    fixed : ndarray, 2-D or 3-D
        The reference image, already preprocessed like ``preprocess`` treats each frame.
    maxshift : float or sequence of float
        Bound on the translation (pixels per axis, about the image centre), and the range of the
        initial integer-translation search.
    preprocess : callable, optional
        Applied to every raw frame.
    maxrot : float or sequence of float
        Bound on the rotation angle (2-D) or on each rotation-vector component (3-D), radians.
    nodes : tuple of N 1-D arrays, optional
        Grid on which ``u`` is reported; must span the image corners (as for
        :class:`blockreg.Apertures`).  Default: 9 nodes per axis (fewer on short axes).
    levels : int, optional
        Pyramid levels (1 = full resolution only).  Default: as many 2x reductions as keep every
        axis at least 32 px, at most 4 levels.
    thresh : float
        A transform whose overlap has ``sum(f^2 + m^2) <= thresh`` (full resolution) is rejected.
    atol : float
        Convergence tolerance of :func:`~blockreg.reg.rigid.optimize_rigid`.

    Notes
    -----
    Monitorable variables (:meth:`declare`):

    - ``tform`` ``(N + 1, N + 1)`` float64: the homogeneous matrix ``[[A, b], [0, 1]]`` of the map
      from fixed to moving pixel coordinates (0-based, axis order), ``moving(A x + b) ~ fixed(x)``;
      ``A`` is a rotation, ``b`` includes the rotation about the image centre.
    - ``mismatch``: ``sum (f - m)^2 / sum (f^2 + m^2)`` at the result (full resolution).
    - ``u`` ``(*gridsize, N)`` float64: ``(A - I) x_k + b`` at the nodes
      (:func:`~blockreg.reg.deformation.tform_to_deformation`); warping with it reproduces the
      affine map up to the grid's boundary effect (see :data:`DEFAULT_NODES_PER_AXIS`).
    - ``warped``, ``warped0`` float32: the preprocessed and the raw frame warped by the exact
      affine map (as the original's ``transform(moving, tform)``), not by the grid ``u``.

    References
    ----------
    .. [1] BlockRegistrationScheduler.jl, ``RegisterWorkerRigid`` (HolyLab).
    .. [2] RegisterOptimize.jl, ``optimize_rigid``.
    """

    def __init__(self, fixed, maxshift, preprocess=None, *, maxrot=math.pi, nodes=None, levels=None,
                 thresh=0.0, atol=1e-4):
        from ..reg._common import per_axis
        from ..reg.deformation import nodes_for_shape

        fixed = check_fixed(fixed, ndims=(2, 3))
        self.fixed = fixed
        shape, N = tuple(fixed.shape), fixed.ndim
        self.maxshift = per_axis(maxshift, N, "maxshift")
        self.maxrot = per_axis(maxrot, 1 if N == 2 else 3, "maxrot")
        self.preprocess = check_preprocess(preprocess)
        if nodes is None:
            gridsize = tuple(min(DEFAULT_NODES_PER_AXIS, n) for n in shape)
        else:
            try:
                gridsize = tuple(len(n) for n in nodes)
            except TypeError:
                raise ParameterError("nodes", "must be a tuple of 1-D arrays, one per axis") from None
            if len(gridsize) != N or any(not 1 <= g <= n for g, n in zip(gridsize, shape)):
                raise ParameterError("nodes", f"must be {N} arrays of 1 to n_a positions, got gridsize {gridsize}")
            for a, (got, want) in enumerate(zip(nodes, nodes_for_shape(shape, gridsize))):
                if not np.allclose(np.asarray(to_host(got), dtype=float), want, atol=1e-6 * shape[a]):
                    raise ParameterError("nodes", f"axis {a} must be linspace(0, {shape[a] - 1}, {gridsize[a]})")
        self.nodes = nodes_for_shape(shape, gridsize)
        self.gridsize = gridsize
        if levels is None:
            levels = 1
            while levels < MAX_AUTO_LEVELS and min(shape) // 2**levels >= MIN_LEVEL_SIZE:
                levels += 1
        if not isinstance(levels, numbers.Integral) or isinstance(levels, bool) or levels < 1:
            raise ParameterError("levels", f"must be a positive integer, got {levels!r}")
        if min(shape) // 2 ** (levels - 1) < 4:
            raise ParameterError("levels", f"{levels} levels shrink the image {shape} below 4 px")
        self.levels = int(levels)
        self.thresh = float(thresh)
        if not (math.isfinite(self.thresh) and self.thresh >= 0):
            raise ParameterError("thresh", f"must be finite and >= 0, got {thresh}")
        self.atol = float(atol)
        if not (math.isfinite(self.atol) and self.atol > 0):
            raise ParameterError("atol", f"must be finite and > 0, got {atol}")
        self._context = None

    def declare(self):
        """``tform``, ``mismatch``, ``u``, ``warped``, ``warped0`` (see the class Notes)."""
        N, image = self.fixed.ndim, tuple(self.fixed.shape)
        return {
            "tform": ArrayDecl((N + 1, N + 1), "float64"),
            "mismatch": ArrayDecl((), "float64"),
            "u": ArrayDecl(self.gridsize + (N,), "float64"),
            "warped": ArrayDecl(image, "float32"),
            "warped0": ArrayDecl(image, "float32"),
        }

    def describe(self):
        return {
            "algorithm": "Rigid",
            "shape": list(self.fixed.shape),
            "maxshift": list(self.maxshift),
            "maxrot": list(self.maxrot),
            "preprocess": self.describe_preprocess(),
            "gridsize": list(self.gridsize),
            "nodes": [n.tolist() for n in self.nodes],
            "levels": self.levels,
            "thresh": self.thresh,
            "atol": self.atol,
        }

    def prepare(self):
        if self._context is not None:
            return
        pyramid = [self.fixed]
        for _ in range(self.levels - 1):
            pyramid.append(downsample2(pyramid[-1]))
        self._context = {"fixed_pyramid": pyramid}

    def register(self, moving):
        """``(A, b, mismatch)`` of one preprocessed frame, coarse to fine."""
        from ..reg.rigid import optimize_rigid

        xp = array_module(self.fixed)
        moving_pyramid = [xp.asarray(moving)]
        for _ in range(self.levels - 1):
            moving_pyramid.append(downsample2(moving_pyramid[-1]))
        tform = None
        for level in range(self.levels - 1, -1, -1):
            scale = 2.0**level
            if tform is not None:
                # one level finer: x_fine = 2 x_coarse + 0.5, the same for y
                A, b = tform
                tform = (A, 2 * b + 0.5 - A @ np.full(len(b), 0.5))
            maxshift = np.asarray(self.maxshift) / scale
            A, b, mismatch = optimize_rigid(
                self._context["fixed_pyramid"][level], moving_pyramid[level], maxshift=maxshift,
                maxrot=np.asarray(self.maxrot), tform0=tform, thresh=self.thresh / scale**self.fixed.ndim,
                atol=self.atol)
            tform = (A, b)
        return tform[0], tform[1], mismatch

    def run_frame(self, frame, t, wanted):
        from ..reg.deformation import tform_to_deformation
        from ..reg.optimize import single_threaded_blas
        from ..reg.warp import warp, working_dtype

        xp = array_module(self.fixed)
        wanted, raw = self.start_frame(frame, t, wanted)
        moving = self.preprocessed(raw)
        with single_threaded_blas():
            A, b, mismatch = self.register(moving)
        N = self.fixed.ndim
        tform = np.eye(N + 1)
        tform[:N, :N], tform[:N, N] = A, b
        phi = tform_to_deformation(A, b, self.fixed.shape, self.gridsize)
        out = {"tform": tform, "mismatch": float(mismatch), "u": np.asarray(phi.u, dtype=np.float64)}
        for name, img in (("warped", moving), ("warped0", raw)):
            if name in wanted:
                field = affine_field(A, b, img.shape, dtype=working_dtype(img.dtype), xp=xp)
                out[name] = np.asarray(to_host(warp(img, phi, field=field)), dtype=np.float32)
        return {name: out[name] for name in wanted}
