"""What the aperture algorithms (:class:`~blockreg.Apertures`, :class:`~blockreg.AperturesMismatch`)
share: a fixed image cut into apertures centred on a node grid, searched up to ``maxshift``.

Both keep the same parameter attributes (``fixed``, ``nodes``, ``gridsize``, ``maxshift``,
``preprocess``, ``overlap``, ``normalization``, ``thresh_fac``, ``thresh``, ``correct_bias``),
checked by :mod:`blockreg.algorithms.checks`.
"""
from __future__ import annotations

from .base import Algorithm

__all__ = ["ApertureAlgorithm"]


class ApertureAlgorithm(Algorithm):
    """Base of the algorithms that compute the mismatch of every aperture against ``fixed``."""

    def mismatch_plan(self, maxshift):
        """The mismatch plan of the apertures for a search up to ``maxshift`` (the fixed image's
        spectra, computed once per prepared process)."""
        from ..reg.mismatch import MismatchPlan

        return MismatchPlan(self.fixed, self.gridsize, maxshift,
                            normalization=self.normalization, overlap=self.overlap)

    def describe_apertures(self, name: str, *, lam=None, **more) -> dict:
        """The shared parameters as JSON, for :meth:`describe`: ``lam`` (when the algorithm has
        one) follows ``maxshift`` and ``more`` comes last, the order the stores have always had."""
        desc = {
            "algorithm": name,
            "shape": list(self.fixed.shape),
            "gridsize": list(self.gridsize),
            "nodes": [n.tolist() for n in self.nodes],
            "maxshift": list(self.maxshift),
        }
        if lam is not None:
            desc["lam"] = lam
        desc.update(preprocess=self.describe_preprocess(), overlap=list(self.overlap),
                    normalization=self.normalization, thresh_fac=self.thresh_fac,
                    thresh=self.thresh.tolist(), correct_bias=self.correct_bias)
        desc.update(more)
        return desc
