"""Per-frame deformable registration by aperture mismatch: the original's ``Apertures`` worker.

For each frame (reference §6.2, RegisterWorkerApertures): preprocess the moving frame, compute the
mismatch of every aperture against the (already preprocessed) fixed image, fit a quadratic to each,
interpolate the mismatch, and minimise data mismatch + affine-residual penalty over the node
displacements at a fixed lambda, or pick lambda from a sweep (auto-lambda).  Frames are independent:
nothing carries over from one frame to the next.
"""
from __future__ import annotations

import numpy as np

from .._backend import array_module, to_host
from ..errors import ParameterError
from ..reg._common import check_maxshift, check_normalization, lambda_count, per_axis
from .aperture_base import ApertureAlgorithm
from .base import ArrayDecl
# check_lambda and its bounds were defined here first; they stay importable from this module
from .checks import (LAMBDA_MAX, LAMBDA_RANGE_MIN, aperture_thresh, check_fixed, check_lambda,
                     check_nodes, check_preprocess)

__all__ = ["Apertures", "check_lambda", "LAMBDA_MAX", "LAMBDA_RANGE_MIN"]

def _axis_field(name, value, axis):
    """``name.axis`` where the caller gave one value per axis, else ``name``."""
    return f"{name}.{axis}" if np.ndim(value) else name


class Apertures(ApertureAlgorithm):
    """Aperture-based deformable registration of each frame to a fixed image.

    Parameters
    ----------
    fixed : ndarray
        The reference image, already preprocessed the same way ``preprocess`` will treat each
        moving frame (NumPy or CuPy; NaN = missing).
    nodes : tuple of N 1-D arrays
        Grid node positions.  They must be the corner-spanning grid of ``fixed``
        (``linspace(0, n_a - 1, g_a)``, or the centre for ``g_a == 1``): apertures are centred on
        the nodes, and the original silently recomputed aperture centres from the image size, so
        any other grid would register one set of positions and report another.
    maxshift : int or tuple of int
        Largest shift searched along each axis (pixels), ``1 <= maxshift_a < n_a``.
    lam : float or (float, float)
        Affine-residual penalty weight: a number (fixed lambda), or a ``(min, max)`` range for
        auto-lambda (sweep ``min * 2**k``, choose by a sigmoid fit).
    preprocess : callable, optional
        Applied to every raw moving frame (e.g. :class:`blockreg.PreprocessSNF`).
    overlap : float or tuple of float
        Extra pixels on each side of each aperture.
    normalization : {"pixels", "intensity"}
        Mismatch denominator (valid pixel pairs, or sum of squared intensities).
    thresh_fac : float, optional
        Default ``0.5**N``.  Sets the default ``thresh``.
    thresh : float or ndarray of shape ``gridsize``, optional
        Minimum mismatch denominator for a shift to count in the quadratic fit.  Default: per
        aperture, ``thresh_fac`` times that aperture's own zero-shift denominator of the fixed
        image (its valid pixel count for ``"pixels"``, ``2 * sum(fixed**2)`` over it for
        ``"intensity"``; :func:`blockreg.reg.apertures.aperture_content`).  The original uses one
        threshold for all apertures, ``thresh_fac / prod(gridsize)`` times the image's pixel count
        (or ``sum(fixed**2)``; reference §6.2, available as :meth:`default_thresh`).  That one is
        larger than what a corner aperture (a quarter aperture hanging over the image corner)
        can reach once the motion points out of the image: the fit then never sees the true
        minimum and reports a far-off shift (measured: 3 corner nodes 16-20 px off in 3 of 40
        synthetic 512x512 frames, displacement RMSE 0.20 px instead of 0.14 px).
    correct_bias : bool
        Replace zero-shift mismatch entries by their neighbours (camera fixed-pattern noise).
        Default False: the original defaults to true but every user doc turns it off, and it can
        make registration worse (reference §9).
    passes : {1, 2}
        2 (default) = the original's refinement recipe (docs/improving.md): warp the preprocessed
        frame with the first estimate, register it again and compose, ``u = compose(phi1, phi2)``.
        With auto-lambda, the second pass reuses the lambda chosen by the first.
    refine_maxshift : int or tuple of int or None
        With ``passes=2``: the shift searched by the second pass (default 2 px per axis, at most
        ``maxshift``).  The second pass only corrects a residual of a pixel or two, so it uses a
        mismatch plan of this small search range (built once in :meth:`prepare`), does not
        correct the bias (after the first warp, zero shift no longer aligns the camera's fixed
        pattern), and fills the pixels the first warp left empty with the fixed image's (no
        evidence there: they favour the first estimate, and the mismatch avoids its missing-pixel
        path).  ``None`` = the original recipe: the second pass searches ``maxshift`` and
        corrects the bias when ``correct_bias`` is set.

    Notes
    -----
    Monitorable variables (:meth:`declare`): ``u`` (``(*gridsize, N)`` node displacements, float64),
    ``mismatch`` (total penalty at the optimum), ``lambda`` (the weight used), ``warped``
    (preprocessed frame warped by ``u``, float32), ``warped0`` (raw frame warped, float32) and, with
    auto-lambda, ``lambdas``, ``datapenalty`` (data penalty per swept lambda) and
    ``sigmoid_quality``.  Warping is done only when asked for.

    With ``passes=2``, ``mismatch`` is the penalty of the *second* pass: the residual of the
    refinement ``phi2`` against the once-warped frame, not a penalty evaluated for the composed
    ``u`` (which has no mismatch data of its own).  ``lambdas``, ``datapenalty`` and
    ``sigmoid_quality`` describe the first pass's lambda search.

    References
    ----------
    .. [1] RegisterWorkerApertures.jl, ``Apertures`` and its ``worker`` (HolyLab).
    .. [2] BlockRegistration.jl docs, "Improving registration" (composing two passes).

    Raises
    ------
    ParameterError
        For any parameter out of range; its ``field`` is the argument's name, with the axis
        appended where the argument was given per axis (``"maxshift.1"``, ``"overlap.0"``), and
        ``"gridsize.<axis>"`` for more nodes than pixels along an axis.
    """

    def __init__(self, fixed, nodes, maxshift, lam, preprocess=None, *, overlap=0,
                 normalization="pixels", thresh_fac=None, thresh=None, correct_bias=False, passes=2,
                 refine_maxshift=2):
        fixed = check_fixed(fixed)
        self.fixed = fixed
        ndim = fixed.ndim
        self.nodes = check_nodes(nodes, fixed.shape)
        self.gridsize = tuple(len(n) for n in self.nodes)
        # at least 1: the quadratic fit needs the neighbours of zero shift
        self.maxshift = per_axis(maxshift, ndim, "maxshift", integer=True, positive=True)
        check_maxshift(self.maxshift, fixed.shape)
        self.lam, self.lam_range = check_lambda(lam)
        self.preprocess = check_preprocess(preprocess)
        from ..reg.apertures import default_aperture_width

        self.overlap = per_axis(overlap, ndim, "overlap")
        widths = default_aperture_width(fixed.shape, self.gridsize, self.overlap)
        for a, (width, n) in enumerate(zip(widths, fixed.shape)):
            # an aperture wider than the image only costs memory (its FFT grows with the width)
            if width > n:
                raise ParameterError(_axis_field("overlap", overlap, a),
                                     f"makes apertures {width:g} px wide along axis {a}, wider "
                                     f"than the image ({n})")
        self.normalization = check_normalization(normalization)
        self.thresh_fac, self.thresh = aperture_thresh(fixed, self.gridsize, self.overlap,
                                                       self.normalization, thresh_fac, thresh)
        self.correct_bias = bool(correct_bias)
        if passes not in (1, 2):
            raise ParameterError("passes", f"must be 1 or 2, got {passes!r}")
        self.passes = int(passes)
        if refine_maxshift is None:
            self.refine_maxshift = None
        else:
            refine = per_axis(refine_maxshift, ndim, "refine_maxshift", integer=True, positive=True)
            self.refine_maxshift = tuple(min(r, m) for r, m in zip(refine, self.maxshift))
        self._context = None

    # --- parameters ---------------------------------------------------------------------------

    @staticmethod
    def default_thresh(fixed, gridsize, normalization="pixels", thresh_fac=None):
        """The original's single denominator threshold (reference §6.2), for ``thresh=``.

        ``thresh_fac / prod(gridsize)`` times ``fixed.size`` (``"pixels"``) or ``Σ fixed²``
        (``"intensity"``, NaN ignored); ``thresh_fac`` defaults to ``0.5**ndim``.
        """
        xp = array_module(fixed)
        fixed = xp.asarray(fixed)
        if thresh_fac is None:
            thresh_fac = 0.5**fixed.ndim
        if check_normalization(normalization) == "pixels":
            total = float(fixed.size)
        else:
            total = float(xp.nansum(fixed.astype(np.float64) ** 2))
        return thresh_fac / float(np.prod(gridsize)) * total

    @property
    def nlambdas(self) -> int:
        if self.lam_range is None:
            return 1
        return lambda_count(*self.lam_range)

    def declare(self):
        """Per-frame variables: ``u``, ``mismatch`` (total penalty at the optimum; with
        ``passes=2`` the second pass's, i.e. the residual after refinement, not the composed
        ``u``'s), ``lambda``, ``warped``, ``warped0`` and, with auto-lambda, ``lambdas``,
        ``datapenalty`` and ``sigmoid_quality`` (see the class Notes)."""
        ndim = self.fixed.ndim
        image = tuple(self.fixed.shape)
        decls = {
            "u": ArrayDecl(self.gridsize + (ndim,), "float64"),
            "mismatch": ArrayDecl((), "float64"),
            "lambda": ArrayDecl((), "float64"),
            "warped": ArrayDecl(image, "float32"),
            "warped0": ArrayDecl(image, "float32"),
        }
        if self.lam_range is not None:
            decls["lambdas"] = ArrayDecl((self.nlambdas,), "float64")
            decls["datapenalty"] = ArrayDecl((self.nlambdas,), "float64")
            decls["sigmoid_quality"] = ArrayDecl((), "float64")
        return decls

    def describe(self):
        return self.describe_apertures(
            "Apertures", lam=self.lam if self.lam_range is None else list(self.lam_range),
            passes=self.passes,
            refine_maxshift=None if self.refine_maxshift is None else list(self.refine_maxshift))

    # --- context ------------------------------------------------------------------------------

    def prepare(self):
        if self._context is not None:
            return
        # Every module a frame uses is imported first, so that the BLAS limit of a frame (its
        # controller is built on first use) sees all the libraries they load.
        from ..reg import autolambda, deformation, fit, optimize, warp  # noqa: F401
        from ..reg.penalty import AffinePenalty

        plan = self.mismatch_plan(self.maxshift)
        lam0 = self.lam if self.lam_range is None else self.lam_range[0]
        self._context = {"plan": plan, "ap": AffinePenalty(self.nodes, lam0)}
        if self.passes == 2:
            # The second pass corrects a residual of a pixel or two: a plan searching only
            # refine_maxshift (its own fixed-image spectra, computed once here) costs a fraction
            # of the first pass's.
            refine = self.refine_maxshift
            if refine is not None and refine != self.maxshift:
                plan = self.mismatch_plan(refine)
            self._context["refine_plan"] = plan

    # --- one frame ----------------------------------------------------------------------------

    def run_frame(self, frame, t, wanted):
        from ..reg.optimize import single_threaded_blas

        wanted, raw = self.start_frame(frame, t, wanted)
        # The per-node solves and L-BFGS use tiny matrices: BLAS threads only add contention
        # (measured 20x slower with default threading on a loaded machine).  One limit for the
        # whole frame, preprocessing included; the solves' own limits inside it cost nothing.
        with single_threaded_blas():
            return self._run(raw, self.preprocessed(raw), wanted)

    def _run(self, raw, moving, wanted):
        from ..reg.deformation import compose
        from ..reg.warp import warp, working_dtype

        xp = array_module(self.fixed)
        phi, penalty, extra = self._register_once(moving, self.lam_range)
        if self.passes == 2:
            # register what is left after the first estimate, at the lambda the first pass used
            warped = warp(moving, phi)
            if self.refine_maxshift is not None:
                # Pixels the first warp took from outside the frame (or from missing ones) hold
                # no evidence: the fixed image there votes for the first estimate, and the
                # refinement stays on the mismatch's NaN-free path (one transform per window,
                # cached overlap terms): 3-D 1.2x faster at the same error.
                warped = xp.where(xp.isnan(warped), self.fixed, warped)
            phi2, penalty, _ = self._register_once(warped, None, lam=extra["lambda"],
                                                   plan=self._context["refine_plan"],
                                                   bias=self.refine_maxshift is None)
            phi = compose(phi, phi2)
        out = {"u": np.asarray(to_host(phi.u), dtype=np.float64), "mismatch": float(penalty)}
        out.update(extra)
        images = {"warped": moving, "warped0": raw}
        fields = {}
        for name in ("warped", "warped0"):
            if name in wanted:
                img = images[name]
                # one dense field per working type: warped and warped0 usually share it
                work = working_dtype(img.dtype)
                if work not in fields:
                    fields[work] = phi.field(img.shape, dtype=work, xp=xp)
                out[name] = np.asarray(to_host(warp(img, phi, field=fields[work])), dtype=np.float32)
        return {name: out[name] for name in wanted}

    def _register_once(self, moving, lam_range, lam=None, plan=None, bias=True):
        from ..reg.autolambda import auto_lambda
        from ..reg.fit import mms_to_fit
        from ..reg.mismatch import correct_bias
        from ..reg.optimize import fixed_lambda
        from ..reg.penalty import interpolate_mm

        ctx = self._context
        mms = (ctx["plan"] if plan is None else plan).compute(moving)
        if self.correct_bias and bias:
            mms = correct_bias(mms)
        _, cs, Qs = mms_to_fit(mms, self.thresh)
        ap = ctx["ap"]
        if lam_range is None:
            ap.lam = self.lam if lam is None else lam
            phi, penalty = fixed_lambda(cs, Qs, self.nodes, ap, interpolate_mm(mms))
            return phi, penalty, {"lambda": float(ap.lam)}
        mmis = interpolate_mm(mms)
        phi, penalty, lam, lams, datapenalty, quality = auto_lambda(cs, Qs, self.nodes, ap, mmis, lam_range)
        extra = {
            "lambda": float(lam),
            "lambdas": np.asarray(to_host(lams), dtype=np.float64),
            "datapenalty": np.asarray(to_host(datapenalty), dtype=np.float64),
            "sigmoid_quality": float(quality),
        }
        return phi, penalty, extra
