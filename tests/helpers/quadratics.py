"""Synthetic aperture mismatches with known quadratic shape, for the penalty/optimiser tests."""
import numpy as np


def quadratic_mms(cs, Qs, maxshift, denom=None):
    """Mismatches ``num_k(s) = (s - c_k)^T Q_k (s - c_k)`` and ``denom_k = 1`` (or ``denom[k]``).

    Returns the ``(*gridsize, 2, *(2m + 1))`` layout of :func:`blockreg.mismatch_apertures`.
    """
    cs = np.asarray(cs, float)
    gridsize = cs.shape[:-1]
    shifts = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in maxshift], indexing="ij"), -1)
    out = np.empty(gridsize + (2,) + shifts.shape[:-1])
    for k in np.ndindex(gridsize):
        d = shifts - cs[k]
        out[k][0] = np.einsum("...i,ij,...j->...", d, Qs[k], d)
        out[k][1] = 1.0 if denom is None else denom[k]
    return out


def nodes_over(shape, gridsize):
    """The corner-spanning node grid of DESIGN.md §4."""
    return tuple(np.linspace(0, n - 1, g) for n, g in zip(shape, gridsize))
