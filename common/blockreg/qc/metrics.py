"""Quality metrics of a registration: small pure functions on NumPy arrays.

Every function here takes arrays and returns arrays or numbers; reading stores, sampling frames and
drawing are elsewhere (:mod:`blockreg.qc.report`, :mod:`blockreg.qc.figures`).  NaN is "missing",
as everywhere in blockreg: a warped frame is NaN where it sampled outside the image, a failed frame
has NaN ``u``.

References
----------
.. [1] Pnevmatikakis, E. A. & Giovannucci, A. (2017). NoRMCorre: An online algorithm for piecewise
       rigid motion correction of calcium imaging data. J. Neurosci. Methods 291, 83-94.
       (correlation with a template and crispness of the mean image as registration metrics)
.. [2] Pachitariu, M. et al. (2017). Suite2p: beyond 10,000 neurons with standard two-photon
       microscopy. bioRxiv 061507. (the same metrics in suite2p's registration report)
.. [3] Christensen, G. E., Rabbitt, R. D. & Miller, M. I. (1996). Deformable templates using large
       deformation kinematics. IEEE Trans. Image Process. 5(10), 1435-1447. (a transformation
       folds where the Jacobian determinant of x -> x + u(x) is not positive)
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "pearson",
    "crispness",
    "common_mask",
    "fold_fractions",
    "jacobian_operators",
    "at_bound",
    "displacement_norms",
    "largest_displacements",
    "summarize_pairs",
]


def pearson(a, b, mask=None) -> float:
    """Pearson correlation of two images over the pixels where both are finite.

    Parameters
    ----------
    a, b : array_like, same shape
        Images; NaN/Inf pixels are left out.
    mask : array_like of bool, optional
        Use only these pixels (and of them only the finite ones), e.g. to compare "before" and
        "after" on the same pixels.

    Returns
    -------
    float
        ``sum(da * db) / sqrt(sum(da**2) * sum(db**2))`` with ``da = a - mean(a)`` over the used
        pixels; NaN when fewer than two pixels are usable or either image is constant there.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(12.0).reshape(3, 4)
    >>> round(pearson(img, 2 * img + 1), 12), round(pearson(img, -img), 12)
    (1.0, -1.0)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    valid = np.isfinite(a) & np.isfinite(b)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if valid.sum() < 2:
        return float("nan")
    da = a[valid]
    db = b[valid]
    da = da - da.mean()
    db = db - db.mean()
    # elementwise sums, not np.dot: BLAS threads gain nothing on one image and stall on a busy host
    denom = np.sqrt(np.sum(da * da) * np.sum(db * db))
    if not denom > 0:
        return float("nan")
    # rounding can push a perfect correlation a few ulps past 1
    return float(np.clip(np.sum(da * db) / denom, -1.0, 1.0))


def common_mask(*images):
    """Pixels finite in every one of ``images`` (same shape): the fair set for before/after."""
    mask = np.ones(np.shape(images[0]), dtype=bool)
    for img in images:
        mask &= np.isfinite(np.asarray(img))
    return mask


def crispness(image, mask=None) -> float:
    """Crispness of a (mean) image: the Frobenius norm of its gradient magnitude.

    A blurred mean image (frames that do not line up) has weaker edges, so registration should
    raise the crispness of the mean image; this is the measure of NoRMCorre [1]_ and suite2p [2]_.

    Parameters
    ----------
    image : array_like, N-D
        Usually the mean of the frames before or after registration.  NaN pixels are missing.
    mask : array_like of bool, optional
        Sum only over these pixels.  Compare two images on the same mask (e.g.
        :func:`common_mask` of both), since the norm grows with the number of pixels.

    Returns
    -------
    float
        ``sqrt(sum_x |grad image(x)|**2)`` over the pixels whose gradient is finite (central
        differences inside, one-sided at the edges, unit pixel spacing).  Scales with the
        image's intensity, so only images of the same units compare.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 0 or min(image.shape) < 2:
        raise ValueError(f"image must have at least 2 pixels along every axis, got {image.shape}")
    grads = np.gradient(image)
    grads = [grads] if image.ndim == 1 else grads
    squared = sum(g * g for g in grads)
    valid = np.isfinite(squared)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    return float(np.sqrt(squared[valid].sum()))


def _lattice(nodes, samples_per_cell):
    """Per axis: points from the first to the last node, ``samples_per_cell`` intervals per cell."""
    axes = []
    for n in nodes:
        n = np.asarray(n, dtype=np.float64)
        count = (len(n) - 1) * int(samples_per_cell) + 1
        axes.append(np.linspace(n[0], n[-1], count))
    return axes


def jacobian_operators(nodes, points_per_axis):
    """1-D B-spline value and slope matrices that make the Jacobian of many frames a tensor product.

    The displacement of a :class:`~blockreg.GridDeformation` is a tensor product of 1-D quadratic
    B-splines, so ``du_i/dx_j`` at a lattice of points is ``u_i`` contracted with the slope matrix
    on axis ``j`` and the value matrices on the other axes.  The matrices are taken from
    :meth:`GridDeformation.jacobian_at` and :meth:`GridDeformation.displacement_at` of 1-D unit
    deformations, so they follow its boundary rule exactly.

    Parameters
    ----------
    nodes : tuple of N 1-D arrays
    points_per_axis : sequence of N 1-D arrays
        Sample coordinates along each axis.

    Returns
    -------
    values, slopes : list of N ndarrays, each ``(len(points_a), g_a)``
    """
    from ..reg.deformation import GridDeformation

    values, slopes = [], []
    for n, pts in zip(nodes, points_per_axis):
        n = np.asarray(n, dtype=np.float64)
        pts = np.asarray(pts, dtype=np.float64)[:, None]
        g = len(n)
        V = np.empty((len(pts), g))
        D = np.empty((len(pts), g))
        for k in range(g):
            phi = GridDeformation(np.eye(g)[k][:, None], (n,))
            V[:, k] = phi.displacement_at(pts)[:, 0]
            D[:, k] = phi.jacobian_at(pts)[:, 0, 0]
        values.append(V)
        slopes.append(D)
    return values, slopes


def _det(J):
    """Determinant over the leading two axes of ``J`` (``(B, N, N, ...)`` -> ``(B, ...)``).

    Written out for N <= 3: several times faster than :func:`numpy.linalg.det` on millions of
    tiny matrices, and without its copy into matrix-last layout.
    """
    N = J.shape[1]
    if N == 1:
        return J[:, 0, 0]
    if N == 2:
        return J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]
    if N == 3:
        return (J[:, 0, 0] * (J[:, 1, 1] * J[:, 2, 2] - J[:, 1, 2] * J[:, 2, 1])
                - J[:, 0, 1] * (J[:, 1, 0] * J[:, 2, 2] - J[:, 1, 2] * J[:, 2, 0])
                + J[:, 0, 2] * (J[:, 1, 0] * J[:, 2, 1] - J[:, 1, 1] * J[:, 2, 0]))
    return np.linalg.det(np.moveaxis(J, (1, 2), (-2, -1)))


def fold_fractions(us, nodes, samples_per_cell=4, max_batch_bytes=64 * 2**20):
    """Fraction of each deformation where it folds: ``det(I + grad u) <= 0``.

    Where the Jacobian determinant of ``x -> x + u(x)`` is not positive the deformation is not
    invertible there: neighbouring pixels cross over (a fold) [3]_.  A good registration has none.

    Parameters
    ----------
    us : array_like, ``(T, *gridsize, N)``
        Node displacements of T frames (pixels).
    nodes : tuple of N 1-D arrays
        Node positions (pixels).
    samples_per_cell : int
        Evaluation points per node spacing along each axis, on the lattice spanning the first to
        the last node (4 resolves the quadratic B-spline's slope, which is piecewise linear).
    max_batch_bytes : int
        Frames are evaluated in batches whose Jacobians stay within this memory.

    Returns
    -------
    fractions : ndarray, ``(T,)``
        Fraction of the lattice points with ``det <= 0``; NaN for a frame with non-finite ``u``.
    min_det : ndarray, ``(T,)``
        Smallest determinant per frame (1 for no deformation); NaN likewise.
    """
    us = np.asarray(us, dtype=np.float64)
    N = len(nodes)
    if us.ndim != N + 2 or us.shape[-1] != N:
        raise ValueError(f"us must have shape (T, *gridsize, {N}), got {us.shape}")
    if int(samples_per_cell) < 1:
        raise ValueError(f"samples_per_cell must be at least 1, got {samples_per_cell}")
    T = us.shape[0]
    lattice = _lattice(nodes, samples_per_cell)
    values, slopes = jacobian_operators(nodes, lattice)
    n_points = int(np.prod([len(p) for p in lattice]))
    batch = max(1, int(max_batch_bytes) // (8 * n_points * N * N * 2))
    fractions = np.full(T, np.nan)
    min_det = np.full(T, np.nan)
    finite = np.isfinite(us.reshape(T, -1)).all(axis=1)
    for start in range(0, T, batch):
        idx = np.flatnonzero(finite[start:start + batch]) + start
        if idx.size == 0:
            continue
        u = us[idx]
        # J[b, i, j, *points] = d u_i / d x_j: per axis contract the grid with values or slopes
        J = np.empty((len(idx), N, N) + tuple(len(p) for p in lattice))
        for j in range(N):
            t = np.moveaxis(u, -1, 1)  # (B, N, *g)
            for a in range(N):
                M = slopes[a] if a == j else values[a]
                # contract the grid axis now at position 2; the point axis is appended last
                t = np.tensordot(t, M, axes=([2], [1]))
            J[:, :, j] = t
        J += np.eye(N).reshape((1, N, N) + (1,) * N)
        det = _det(J)
        flat = det.reshape(len(idx), -1)
        fractions[idx] = (flat <= 0).mean(axis=1)
        min_det[idx] = flat.min(axis=1)
    return fractions, min_det


def at_bound(us, maxshift, tolerance=0.6):
    """Which node displacements sit at the search limit.

    The optimiser keeps ``|u_a| <= maxshift_a - 0.5`` (the mismatch interpolant's box), so a
    component within ``tolerance`` of ``maxshift_a`` has hit the limit: the true motion may be
    larger than what was searched (raise ``maxshift``) or the frame was not registered well.

    Parameters
    ----------
    us : array_like, ``(T, *gridsize, N)``
    maxshift : sequence of N numbers
        The job's largest searched shift per axis (pixels).
    tolerance : float
        ``|u_a| >= maxshift_a - tolerance`` counts as at the bound (default 0.6: within 0.1 px of
        the largest value the optimiser allows).

    Returns
    -------
    ndarray of bool, ``(T, *gridsize)``
        True where any component is at its bound (False for non-finite ``u``).
    """
    us = np.asarray(us, dtype=np.float64)
    maxshift = np.asarray(maxshift, dtype=np.float64)
    if us.shape[-1] != maxshift.size:
        raise ValueError(f"maxshift has {maxshift.size} entries but u has {us.shape[-1]} components")
    with np.errstate(invalid="ignore"):
        hit = np.abs(us) >= maxshift - float(tolerance)
    return hit.any(axis=-1)


def displacement_norms(us):
    """Length of every node displacement, ``(T, *gridsize)``: ``sqrt(sum_a u_a**2)``."""
    us = np.asarray(us, dtype=np.float64)
    return np.sqrt(np.sum(us * us, axis=-1))


def largest_displacements(us, k=5):
    """The ``k`` frames with the largest node displacement.

    Parameters
    ----------
    us : array_like, ``(T, *gridsize, N)``
    k : int

    Returns
    -------
    list of dict
        Largest first: ``position`` (frame index along axis 0), ``max_abs_u`` (pixels, vector
        length), ``node`` (grid index of that node) and ``u`` (its displacement vector).
        Frames with non-finite ``u`` are skipped.
    """
    us = np.asarray(us, dtype=np.float64)
    T = us.shape[0]
    norms = displacement_norms(us).reshape(T, -1)
    finite = np.isfinite(norms).all(axis=1)
    per_frame = np.where(finite, np.where(finite[:, None], norms, 0).max(axis=1, initial=0), -np.inf)
    order = [int(t) for t in np.argsort(-per_frame, kind="stable") if finite[t]][:int(k)]
    out = []
    for t in order:
        node = np.unravel_index(int(np.argmax(norms[t])), us.shape[1:-1])
        out.append({"position": t, "max_abs_u": float(per_frame[t]),
                    "node": [int(i) for i in node], "u": us[(t,) + node].tolist()})
    return out


def summarize_pairs(before, after):
    """Summary numbers of a per-frame metric before and after registration.

    Parameters
    ----------
    before, after : array_like, ``(T,)``
        E.g. the correlation of each frame with the fixed image; NaN entries are left out
        (pairwise for the change).

    Returns
    -------
    dict
        ``median_before``, ``median_after``, ``median_change`` (median over frames of
        ``after - before``), ``improved_fraction`` (of frames where ``after > before``) and
        ``count`` (frames with both values); NaN (or 0 for ``count``) when nothing is usable.
    """
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    both = np.isfinite(before) & np.isfinite(after)

    def median(x):
        x = x[np.isfinite(x)]
        return float(np.median(x)) if x.size else float("nan")

    change = after[both] - before[both]
    return {
        "median_before": median(before),
        "median_after": median(after),
        "median_change": float(np.median(change)) if change.size else float("nan"),
        "improved_fraction": float(np.mean(change > 0)) if change.size else float("nan"),
        "count": int(both.sum()),
    }
