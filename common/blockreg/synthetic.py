"""Synthetic two-photon-like movies with a known displacement field (ground truth for accuracy tests).

A fixed texture is observed through a different smooth deformation in every frame, then scaled to
photon counts, shot noise is drawn and a camera offset added.  Conventions are the package's
(DESIGN.md §4): the returned ``u_true[t]`` is the displacement for which
``warp(movie[t], u_true[t]) ≈ fixed_clean``, i.e. ``movie[t](x + u_true[t](x)) = fixed(x)``.

How a frame is made.  Let ``T`` be a texture larger than the field of view (by ``margin`` pixels on
every side), ``fixed(x) = T(x)``.  Draw a map ``w_t(y) = d_t + l_t(y)`` (a global translation plus a
smooth local field) and sample ``moving_t(y) = T(y + w_t(y))`` — the moving frame shows real data
beyond the fixed field of view, as in a real recording.  Then ``moving_t(x + u) = fixed(x)`` requires
``u = -w_t(x + u)``, solved by fixed-point iteration (a contraction, since ``|∇l_t| << 1``).
"""
from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage as ndi


def _per_axis(value, ndim, name):
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (ndim,)).copy() if np.ndim(value) <= 1 else None
    if arr is None or (np.ndim(value) == 1 and len(value) != ndim):
        raise ValueError(f"{name}: expected a number or {ndim} numbers, got {value!r}")
    if (arr < 0).any() or not np.isfinite(arr).all():
        raise ValueError(f"{name}: must be finite and non-negative, got {value!r}")
    return arr


def _fftconvolve_same(image, kernel):
    """Linear convolution of ``image`` with a small centred ``kernel``, cropped to ``image``'s shape."""
    shape = [scipy.fft.next_fast_len(a + b - 1, real=True) for a, b in zip(image.shape, kernel.shape)]
    full = scipy.fft.irfftn(scipy.fft.rfftn(image, shape) * scipy.fft.rfftn(kernel, shape), shape)
    start = [k // 2 for k in kernel.shape]
    return full[tuple(slice(s, s + n) for s, n in zip(start, image.shape))]


def _radius_grid(radius, ndim):
    half = int(np.ceil(radius * 1.6)) + 2
    axes = np.meshgrid(*[np.arange(-half, half + 1)] * ndim, indexing="ij")
    return np.sqrt(sum(a.astype(np.float64) ** 2 for a in axes))


def _soma_kernel(radius, ndim):
    """A cell body: soft-edged bright disk/ball with a dark nucleus (the usual GCaMP look)."""
    r = _radius_grid(radius, ndim)
    body = 1.0 / (1.0 + np.exp((r - radius) / 0.7))
    nucleus = 0.75 * np.exp(-0.5 * (r / (0.45 * radius)) ** 2)
    return np.clip(body - nucleus, 0.0, None)


def make_texture(shape, rng, cell_radius=5.0, density=0.6):
    """A two-photon-like image: cells (rings with dark nuclei), neuropil, dark vessel shadows.

    Parameters
    ----------
    shape : tuple of int
        Image shape (2-D or 3-D).
    rng : numpy.random.Generator
    cell_radius : float
        Typical soma radius in pixels.
    density : float
        Expected fraction of the image covered by cell bodies (before overlaps).

    Returns
    -------
    ndarray of float64, values in [0, 1].
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    size = float(np.prod(shape))
    neuropil = ndi.gaussian_filter(rng.standard_normal(shape), 2.0)
    neuropil = 0.12 + 0.06 * neuropil / (neuropil.std() + 1e-12)
    cells = np.zeros(shape)
    # two size classes so the texture is not a single spatial frequency
    for radius in (cell_radius, 0.7 * cell_radius):
        kernel = _soma_kernel(radius, ndim)
        ncells = int(density * size / (2 * kernel.sum()))
        impulses = np.zeros(shape)
        positions = tuple(rng.integers(0, n, ncells) for n in shape)
        np.add.at(impulses, positions, rng.uniform(0.25, 1.0, ncells))
        cells += _fftconvolve_same(impulses, kernel)
    image = neuropil + cells
    # vessels: dark straight tubes crossing the field, a few cell diameters wide at most
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    for _ in range(3):
        point = np.array([rng.uniform(0, n) for n in shape])
        direction = rng.standard_normal(ndim)
        direction /= np.linalg.norm(direction)
        rel = [g - p for g, p in zip(grid, point)]
        along = sum(r * d for r, d in zip(rel, direction))
        dist2 = sum((r - along * d) ** 2 for r, d in zip(rel, direction))
        width = rng.uniform(1.0, 2.0) * cell_radius
        image *= 1.0 - 0.85 * np.exp(-0.5 * dist2 / width**2)
    image = ndi.gaussian_filter(image, 0.7)  # the optical point-spread function
    image -= image.min()
    return image / image.max()


class _SmoothField:
    """A smooth random vector field: quadratic B-spline coefficients on a coarse grid."""

    def __init__(self, shape, spacing, amplitude, rng, origin):
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.origin = np.asarray(origin, dtype=np.float64)
        ndim = len(shape)
        coarse = tuple(int(np.ceil((n + 2 * o) / s)) + 3 for n, o, s in zip(shape, -self.origin, self.spacing))
        self.coeffs = rng.uniform(-1.0, 1.0, (ndim,) + coarse)
        self.scale = np.ones(ndim)
        # normalise so that the largest displacement inside the frame equals the amplitude
        grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
        values = self(np.stack(grid, axis=-1))
        peak = np.abs(values.reshape(-1, ndim)).max(axis=0)
        self.scale = np.where(peak > 0, np.asarray(amplitude) / np.where(peak > 0, peak, 1), 0.0)

    def __call__(self, points):
        """Field at ``points`` (..., N) in pixel coordinates; returns (..., N)."""
        ndim = points.shape[-1]
        idx = [(points[..., a] - self.origin[a]) / self.spacing[a] + 1.0 for a in range(ndim)]
        # order-2 evaluation without prefiltering: the coefficients ARE the spline's coefficients
        out = np.stack(
            [ndi.map_coordinates(self.coeffs[a], idx, order=2, prefilter=False, mode="nearest")
             for a in range(ndim)],
            axis=-1,
        )
        return out * self.scale


def make_movie(shape, nframes, *, max_translation=10, max_local=3, smoothness=None, photons=200,
               bias=100, seed=0, texture=None, noise=True, cell_radius=5.0):
    """A movie of a deforming two-photon-like sample with the exact displacement per pixel.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of a frame (2-D or 3-D).
    nframes : int
        Number of frames.
    max_translation : float or sequence of float
        Largest global translation per axis (uniform in ``[-m, m]`` per frame).
    max_local : float or sequence of float
        Largest local (non-rigid) displacement per axis.
    smoothness : float or sequence of float, optional
        Spacing of the coarse random grid of the local field, in pixels (its correlation length).
        Default: a third of the frame along each axis, at least 8 pixels.
    photons : float
        Expected photon count at the brightest point of the texture.
    bias : float
        Camera offset added after the shot noise (in counts).
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same movie.
    texture : ndarray, optional
        A real image to use instead of the synthetic texture; its central part must be at least
        ``shape + 2 * margin`` with ``margin = ceil(max_translation + max_local) + 2``.
    noise : bool
        Draw Poisson shot noise (uint16 output).  ``False`` returns the expected counts as float32.
    cell_radius : float
        Soma radius of the synthetic texture, in pixels.

    Returns
    -------
    movie : ndarray, (nframes, *shape), uint16 (float32 without noise)
    fixed_clean : ndarray of float64, shape
        The undeformed, noiseless image in the movie's units (expected counts plus ``bias``).
    u_true : ndarray of float64, (nframes, *shape, N)
        ``warp(movie[t], u_true[t]) ≈ fixed_clean`` (up to noise), components in axis order.
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    if ndim not in (2, 3) or min(shape) < 4:
        raise ValueError(f"shape: expected 2 or 3 axes of at least 4 pixels, got {shape}")
    nframes = int(nframes)
    if nframes < 1:
        raise ValueError(f"nframes: must be at least 1, got {nframes}")
    max_translation = _per_axis(max_translation, ndim, "max_translation")
    max_local = _per_axis(max_local, ndim, "max_local")
    if smoothness is None:
        smoothness = [max(n / 3.0, 8.0) for n in shape]
    smoothness = _per_axis(smoothness, ndim, "smoothness")
    if (smoothness <= 0).any():
        raise ValueError(f"smoothness: must be positive, got {smoothness}")
    if not photons or photons <= 0:
        raise ValueError(f"photons: must be positive, got {photons}")
    rng = np.random.default_rng(seed)

    margin = np.ceil(max_translation + max_local).astype(int) + 2
    big_shape = tuple(n + 2 * m for n, m in zip(shape, margin))
    if texture is None:
        big = make_texture(big_shape, rng, cell_radius=cell_radius)
    else:
        big = _crop_texture(np.asarray(texture, dtype=np.float64), big_shape)
    coeffs = ndi.spline_filter(big, order=3, mode="mirror")
    inner = tuple(slice(m, m + n) for m, n in zip(margin, shape))
    fixed = big[inner]

    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), axis=-1)
    movie_clean = np.empty((nframes,) + shape)
    u_true = np.empty((nframes,) + shape + (ndim,))
    for t in range(nframes):
        shift = rng.uniform(-1.0, 1.0, ndim) * max_translation
        local = _SmoothField(shape, smoothness, max_local, rng, origin=-margin)

        def w(points):
            return shift + local(points)

        sample_at = grid + w(grid) + margin
        movie_clean[t] = ndi.map_coordinates(coeffs, np.moveaxis(sample_at, -1, 0), order=3,
                                             prefilter=False, mode="mirror")
        u = -w(grid)
        for _ in range(50):
            u_next = -w(grid + u)
            change = np.abs(u_next - u).max()
            u = u_next
            if change < 1e-5:  # px; far below any accuracy target, saves iterations in 3-D
                break
        u_true[t] = u

    scale = float(photons)
    fixed_clean = fixed * scale + bias
    if noise:
        counts = rng.poisson(np.clip(movie_clean, 0, None) * scale)
        movie = np.clip(counts + np.round(bias), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    else:
        movie = (movie_clean * scale + bias).astype(np.float32)
    return movie, fixed_clean, u_true


def _crop_texture(texture, big_shape):
    if texture.ndim != len(big_shape) or any(a < b for a, b in zip(texture.shape, big_shape)):
        raise ValueError(
            f"texture: needs shape at least {big_shape} (frame plus motion margin), got {texture.shape}"
        )
    start = [(a - b) // 2 for a, b in zip(texture.shape, big_shape)]
    crop = texture[tuple(slice(s, s + n) for s, n in zip(start, big_shape))]
    lo, hi = np.nanpercentile(crop, [0.5, 99.9])
    if not hi > lo:
        raise ValueError("texture: the image is constant")
    return np.clip((crop - lo) / (hi - lo), 0.0, 1.0)


def grid_truth(u_true, nodes):
    """The true displacement at the grid nodes (linear interpolation of the dense field).

    Parameters
    ----------
    u_true : ndarray, (*shape, N) or (T, *shape, N)
        Dense displacement from :func:`make_movie`.
    nodes : tuple of N 1-D arrays
        Node positions (0-based pixel coordinates) along each axis.

    Returns
    -------
    ndarray, (*gridsize, N) or (T, *gridsize, N)
    """
    u_true = np.asarray(u_true, dtype=np.float64)
    ndim = len(nodes)
    if u_true.ndim not in (ndim + 1, ndim + 2) or u_true.shape[-1] != ndim:
        raise ValueError(f"u_true: expected (*shape, {ndim}) or (T, *shape, {ndim}), got {u_true.shape}")
    single = u_true.ndim == ndim + 1
    frames = u_true[None] if single else u_true
    points = np.meshgrid(*[np.asarray(n, dtype=np.float64) for n in nodes], indexing="ij")
    out = np.stack(
        [np.stack([ndi.map_coordinates(f[..., a], points, order=1, mode="nearest") for a in range(ndim)], -1)
         for f in frames]
    )
    return out[0] if single else out
