"""First stage of two-stage registration: per-frame aperture mismatch, reduced for a series solve.

The original's ``AperturesMismatch`` worker (reference §6.3, RegisterWorkerAperturesMismatch):
for each frame, preprocess, compute the mismatch of every aperture against the (already
preprocessed) fixed image, and keep what a whole-series optimisation needs instead of optimising
the frame alone: the quadratic fit of every aperture (``Es``, ``cs``, ``Qs``) and, when asked for,
the interpolated mismatch ``mmis``.  :mod:`blockreg.reg.series` then finds all deformations at
once with a temporal smoothness penalty.
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import array_module, to_host
from ..errors import ParameterError
from ..reg._common import check_normalization
from .base import Algorithm, ArrayDecl

__all__ = ["AperturesMismatch"]

#: dtype of the stored ``mmis``: the original stores Float32 (reference §6.3), and it halves the
#: largest array of a two-stage job; every consumer computes in float64 after reading it.
MMIS_DTYPE = "float32"


def _per_axis(value, ndim, name, kind=float):
    values = np.broadcast_to(np.asarray(value), (ndim,)) if np.ndim(value) == 0 else np.asarray(value)
    if values.shape != (ndim,):
        raise ParameterError(name, f"expected a number or {ndim} numbers, got {value!r}")
    if kind is int and not np.all(np.equal(np.mod(values, 1), 0)):
        raise ParameterError(name, f"must be integers, got {value!r}")
    return tuple(kind(v) for v in values)


class AperturesMismatch(Algorithm):
    """Per-frame aperture mismatch and its quadratic fits, for whole-series registration.

    Parameters
    ----------
    fixed : ndarray
        The reference image, already preprocessed the way ``preprocess`` treats each moving frame
        (NumPy or CuPy; NaN = missing).
    nodes : tuple of N 1-D arrays
        Grid node positions; must be the corner-spanning grid of ``fixed`` (apertures are centred
        on the nodes), as for :class:`blockreg.Apertures`.
    maxshift : int or tuple of int
        Largest shift searched along each axis, ``1 <= maxshift_a < n_a``.
    preprocess : callable, optional
        Applied to every raw moving frame.
    overlap : float or tuple of float
        Extra pixels on each side of each aperture.
    normalization : {"pixels", "intensity"}
    thresh_fac : float, optional
        Default ``0.5**N``; sets the default ``thresh``.
    thresh : float or ndarray of shape ``gridsize``, optional
        Minimum mismatch denominator for a shift to count in the quadratic fit.  Default: per
        aperture, ``thresh_fac`` times its own zero-shift denominator of the fixed image (the
        rule of :class:`blockreg.Apertures`).
    correct_bias : bool
        Replace zero-shift entries by their neighbours before fitting (default False, as every
        user doc of the original sets it).

    Notes
    -----
    Monitorable variables (:meth:`declare`), per frame:

    - ``Es`` ``(*gridsize,)`` float64: minimum mismatch ratio of each aperture;
    - ``cs`` ``(*gridsize, N)`` float64: the integer shift at that minimum (components in axis
      order), 0 where no shift passes ``thresh``;
    - ``Qs`` ``(*gridsize, N, N)`` float64: curvature of the quadratic fit (0 for no signal);
    - ``mmis`` ``(*gridsize, 2, *(2 * maxshift + 1))`` float32: quadratic B-spline coefficients
      (``"flat"`` boundary, :func:`blockreg.reg.penalty.interpolate_mm`) of each aperture's
      numerator and denominator over shifts; computed only when asked for.

    References
    ----------
    .. [1] RegisterWorkerAperturesMismatch.jl, ``AperturesMismatch`` and its ``worker`` (HolyLab).
    """

    def __init__(self, fixed, nodes, maxshift, preprocess=None, *, overlap=0, normalization="pixels",
                 thresh_fac=None, thresh=None, correct_bias=False):
        from ..reg.apertures import aperture_content
        from ..reg.deformation import nodes_for_shape

        xp = array_module(fixed)
        fixed = xp.asarray(fixed)
        if fixed.ndim < 1 or fixed.dtype.kind not in "fiu":
            raise ParameterError("fixed", f"must be a real-valued image, got dtype {fixed.dtype}, "
                             f"{fixed.ndim} dimensions")
        if fixed.dtype.kind != "f":
            fixed = fixed.astype(np.float32)
        if not bool(xp.isfinite(fixed).any()):
            raise ParameterError("fixed", "the image has no finite pixels")
        self.fixed = fixed
        ndim, shape = fixed.ndim, tuple(fixed.shape)
        try:
            nodes = tuple(np.asarray(to_host(n), dtype=np.float64) for n in nodes)
        except (TypeError, ValueError):
            raise ParameterError("nodes", "must be a tuple of 1-D arrays, one per image axis") from None
        if len(nodes) != ndim or any(n.ndim != 1 or not 1 <= n.size <= s for n, s in zip(nodes, shape)):
            raise ParameterError("nodes", f"must be {ndim} 1-D arrays of 1 to n_a positions (one per axis)")
        self.gridsize = tuple(n.size for n in nodes)
        expected = nodes_for_shape(shape, self.gridsize)
        for a, (got, want) in enumerate(zip(nodes, expected)):
            if not np.allclose(got, want, rtol=0, atol=1e-6 * max(shape[a], 1)):
                raise ParameterError("nodes", f"axis {a} must be the corner-spanning grid "
                                 f"linspace(0, {shape[a] - 1}, {self.gridsize[a]}), got {got.tolist()}")
        self.nodes = expected
        self.maxshift = _per_axis(maxshift, ndim, "maxshift", int)
        if any(not 1 <= m < n for m, n in zip(self.maxshift, shape)):
            raise ParameterError("maxshift", f"must be at least 1 and smaller than the image {shape} "
                             f"along every axis, got {self.maxshift}")
        if preprocess is not None and not callable(preprocess):
            raise ParameterError("preprocess", f"must be callable or None, got {type(preprocess).__name__}")
        self.preprocess = preprocess
        self.overlap = _per_axis(overlap, ndim, "overlap")
        if any(not (math.isfinite(o) and o >= 0) for o in self.overlap):
            raise ParameterError("overlap", f"must be finite and >= 0, got {overlap!r}")
        self.normalization = check_normalization(normalization)
        self.thresh_fac = 0.5**ndim if thresh_fac is None else float(thresh_fac)
        if not (math.isfinite(self.thresh_fac) and self.thresh_fac >= 0):
            raise ParameterError("thresh_fac", f"must be finite and >= 0, got {thresh_fac}")
        if thresh is None:
            content = aperture_content(fixed, self.gridsize, self.overlap, self.normalization)
            thresh = self.thresh_fac * np.asarray(to_host(content))
        thresh = np.asarray(thresh, dtype=np.float64)
        if thresh.ndim == 0:
            thresh = np.broadcast_to(thresh, self.gridsize)
        if thresh.shape != self.gridsize or not (np.isfinite(thresh).all() and (thresh >= 0).all()):
            raise ParameterError("thresh", f"must be a finite number >= 0 or such an array of shape "
                             f"{self.gridsize}")
        self.thresh = thresh
        self.correct_bias = bool(correct_bias)
        self._context = None

    def declare(self):
        """Per-frame ``Es``, ``cs``, ``Qs`` and ``mmis`` (see the class Notes)."""
        g, N = self.gridsize, self.fixed.ndim
        return {
            "Es": ArrayDecl(g, "float64"),
            "cs": ArrayDecl(g + (N,), "float64"),
            "Qs": ArrayDecl(g + (N, N), "float64"),
            "mmis": ArrayDecl(g + (2,) + tuple(2 * m + 1 for m in self.maxshift), MMIS_DTYPE),
        }

    def describe(self):
        pp = self.preprocess
        pp_desc = None if pp is None else (pp.to_dict() if hasattr(pp, "to_dict") else {"callable": repr(pp)})
        return {
            "algorithm": "AperturesMismatch",
            "shape": list(self.fixed.shape),
            "gridsize": list(self.gridsize),
            "nodes": [n.tolist() for n in self.nodes],
            "maxshift": list(self.maxshift),
            "preprocess": pp_desc,
            "overlap": list(self.overlap),
            "normalization": self.normalization,
            "thresh_fac": self.thresh_fac,
            "thresh": self.thresh.tolist(),
            "correct_bias": self.correct_bias,
            "mmis_bc": "flat",
        }

    def prepare(self):
        if self._context is not None:
            return
        from ..reg import fit, penalty  # noqa: F401  (loaded before the BLAS limit, as Apertures does)
        from ..reg.mismatch import MismatchPlan

        self._context = {"plan": MismatchPlan(self.fixed, self.gridsize, self.maxshift,
                                              normalization=self.normalization, overlap=self.overlap)}

    def close(self):
        self._context = None

    def run_frame(self, frame, t, wanted):
        from ..reg.fit import mms_to_fit
        from ..reg.mismatch import correct_bias
        from ..reg.optimize import single_threaded_blas
        from ..reg.penalty import interpolate_mm

        wanted = self.check_wanted(wanted)
        self.prepare()
        xp = array_module(self.fixed)
        raw = xp.asarray(frame)
        if tuple(raw.shape) != tuple(self.fixed.shape):
            raise ValueError(f"frame: shape {tuple(raw.shape)} differs from the fixed image's "
                             f"{tuple(self.fixed.shape)}")
        if raw.dtype.kind == "f" and not bool(xp.isfinite(raw).any()):
            raise ValueError(f"frame: frame {t} has no finite pixels (all NaN)")
        moving = xp.asarray(self.preprocess(raw) if self.preprocess is not None else raw)
        if tuple(moving.shape) != tuple(self.fixed.shape):
            raise ValueError(f"preprocess: returned shape {tuple(moving.shape)}, expected "
                             f"{tuple(self.fixed.shape)}")
        with single_threaded_blas():
            mms = self._context["plan"].compute(moving)
            if self.correct_bias:
                mms = correct_bias(mms)
            out = {}
            if {"Es", "cs", "Qs"} & set(wanted):
                Es, cs, Qs = mms_to_fit(mms, self.thresh)
                out.update(Es=Es, cs=cs, Qs=Qs)
            if "mmis" in wanted:
                out["mmis"] = interpolate_mm(mms)
        decls = self.declare()
        return {name: np.asarray(to_host(out[name]), dtype=decls[name].dtype) for name in wanted}
