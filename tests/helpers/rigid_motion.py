"""A known rigid motion of an image, for the tests of rigid registration."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def rigidly_moved(fixed, A, b):
    """``moving`` with ``moving(A x + b) = fixed(x)``, i.e. ``moving(y) = fixed(A^-1 (y - b))``
    (cubic interpolation, NaN outside ``fixed``)."""
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in fixed.shape], indexing="ij")
    y = np.stack([g.ravel() for g in grids])
    x = np.linalg.solve(A, y - b[:, None])
    return ndimage.map_coordinates(fixed, x, order=3, mode="constant",
                                   cval=np.nan).reshape(fixed.shape)


def rotation_2d(theta):
    """The 2-D rotation matrix by ``theta`` radians."""
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
