"""First stage of two-stage registration: per-frame aperture mismatch, reduced for a series solve.

The original's ``AperturesMismatch`` worker (reference §6.3, RegisterWorkerAperturesMismatch):
for each frame, preprocess, compute the mismatch of every aperture against the (already
preprocessed) fixed image, and keep what a whole-series optimisation needs instead of optimising
the frame alone: the quadratic fit of every aperture (``Es``, ``cs``, ``Qs``) and, when asked for,
the interpolated mismatch ``mmis``.  :mod:`blockreg.reg.series` then finds all deformations at
once with a temporal smoothness penalty.
"""
from __future__ import annotations

import numpy as np

from .._backend import to_host
from ..reg._common import check_maxshift, check_normalization, per_axis
from .aperture_base import ApertureAlgorithm
from .base import ArrayDecl
from .checks import aperture_thresh, check_fixed, check_nodes, check_preprocess

__all__ = ["AperturesMismatch"]

#: dtype of the stored ``mmis``: the original stores Float32 (reference §6.3), and it halves the
#: largest array of a two-stage job; every consumer computes in float64 after reading it.
MMIS_DTYPE = "float32"


class AperturesMismatch(ApertureAlgorithm):
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
        fixed = check_fixed(fixed)
        self.fixed = fixed
        ndim = fixed.ndim
        self.nodes = check_nodes(nodes, fixed.shape)
        self.gridsize = tuple(n.size for n in self.nodes)
        self.maxshift = per_axis(maxshift, ndim, "maxshift", integer=True, positive=True)
        check_maxshift(self.maxshift, fixed.shape)
        self.preprocess = check_preprocess(preprocess)
        self.overlap = per_axis(overlap, ndim, "overlap")
        self.normalization = check_normalization(normalization)
        self.thresh_fac, self.thresh = aperture_thresh(fixed, self.gridsize, self.overlap,
                                                       self.normalization, thresh_fac, thresh)
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
        return self.describe_apertures("AperturesMismatch", mmis_bc="flat")

    def prepare(self):
        if self._context is not None:
            return
        from ..reg import fit, penalty  # noqa: F401  (loaded before the BLAS limit, as Apertures does)
        self._context = {"plan": self.mismatch_plan(self.maxshift)}

    def run_frame(self, frame, t, wanted):
        from ..reg.fit import mms_to_fit
        from ..reg.mismatch import correct_bias
        from ..reg.optimize import single_threaded_blas
        from ..reg.penalty import interpolate_mm

        wanted, raw = self.start_frame(frame, t, wanted)
        moving = self.preprocessed(raw)
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
