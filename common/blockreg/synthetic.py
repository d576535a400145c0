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

from .errors import ParameterError
from .reg._common import per_axis
from .reg.bspline import evaluation_matrix


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
    """A smooth random vector field on the padded texture grid.

    Random quadratic B-spline coefficients on a coarse grid (spacing = ``smoothness``) are
    evaluated exactly at every pixel of the padded grid; between pixels the field is the linear
    interpolant of those values.  The map used to make a frame is this field, so the inverse
    computed from it is exact (and the linear part differs from the spline by well under 1e-3 px
    for spacings of 8 pixels or more).
    """

    def __init__(self, big_shape, spacing, amplitude, rng, inner):
        ndim = len(big_shape)
        coarse = [int(np.ceil(n / s)) + 2 for n, s in zip(big_shape, spacing)]
        coeffs = rng.uniform(-1.0, 1.0, (ndim,) + tuple(coarse))
        dense = coeffs
        for a, (n, s, g) in enumerate(zip(big_shape, spacing, coarse)):
            E = evaluation_matrix(g, np.arange(n) / s + 0.5, bc="flat")
            dense = np.moveaxis(np.tensordot(E, dense, axes=([1], [a + 1])), 0, a + 1)
        # the largest displacement inside the frame equals the requested amplitude
        peak = np.abs(dense[(slice(None),) + inner]).reshape(ndim, -1).max(axis=1)
        scale = np.where(peak > 0, np.asarray(amplitude) / np.where(peak > 0, peak, 1.0), 0.0)
        self.dense = dense * scale.reshape((ndim,) + (1,) * ndim)

    def __call__(self, points):
        """Field at ``points`` (N, ...) in padded-grid pixel coordinates; returns (N, ...)."""
        return np.stack([ndi.map_coordinates(c, points, order=1, mode="nearest") for c in self.dense])


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
        Default: a third of the frame's largest axis (at least 8 pixels), on every axis.
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
        raise ParameterError("shape", f"expected 2 or 3 axes of at least 4 pixels, got {shape}")
    nframes = int(nframes)
    if nframes < 1:
        raise ParameterError("nframes", f"must be at least 1, got {nframes}")
    max_translation = np.asarray(per_axis(max_translation, ndim, "max_translation"))
    max_local = np.asarray(per_axis(max_local, ndim, "max_local"))
    if smoothness is None:
        # isotropic, like tissue motion: a thin z-stack must not get a z-wobble on a z-sized scale
        smoothness = max(max(shape) / 3.0, 8.0)
    smoothness = np.asarray(per_axis(smoothness, ndim, "smoothness", positive=True))
    if not photons or photons <= 0:
        raise ParameterError("photons", f"must be positive, got {photons}")
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

    # coordinates of the frame's pixels in the padded grid, components first
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) + m for n, m in zip(shape, margin)],
                                indexing="ij"))
    movie_clean = np.empty((nframes,) + shape)
    u_true = np.empty((nframes,) + shape + (ndim,))
    for t in range(nframes):
        shift = (rng.uniform(-1.0, 1.0, ndim) * max_translation).reshape((ndim,) + (1,) * ndim)
        local = _SmoothField(big_shape, smoothness, max_local, rng, inner)
        w_on_grid = shift + local.dense[(slice(None),) + inner]
        movie_clean[t] = ndi.map_coordinates(coeffs, grid + w_on_grid, order=3, prefilter=False,
                                             mode="mirror")
        # moving(x + u) = T(x + u + w(x + u)) = T(x) = fixed(x)  <=>  u = -w(x + u)
        u = -w_on_grid
        for _ in range(100):
            u_next = -(shift + local(grid + u))
            change = np.abs(u_next - u).max()
            u = u_next
            if change < 1e-6:
                break
        u_true[t] = np.moveaxis(u, 0, -1)

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
        raise ParameterError("texture", f"needs shape at least {big_shape} (frame plus motion "
                                        f"margin), got {texture.shape}")
    start = [(a - b) // 2 for a, b in zip(texture.shape, big_shape)]
    crop = texture[tuple(slice(s, s + n) for s, n in zip(start, big_shape))]
    lo, hi = np.nanpercentile(crop, [0.5, 99.9])
    if not hi > lo:
        raise ParameterError("texture", "the image is constant")
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
        raise ParameterError("u_true", f"expected (*shape, {ndim}) or (T, *shape, {ndim}), got "
                                       f"{u_true.shape}")
    single = u_true.ndim == ndim + 1
    frames = u_true[None] if single else u_true
    points = np.meshgrid(*[np.asarray(n, dtype=np.float64) for n in nodes], indexing="ij")
    out = np.stack(
        [np.stack([ndi.map_coordinates(f[..., a], points, order=1, mode="nearest") for a in range(ndim)], -1)
         for f in frames]
    )
    return out[0] if single else out
