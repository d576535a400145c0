"""A synthetic movie whose motion is smooth in time, with its exact displacements.

:func:`blockreg.synthetic.make_movie` draws an independent deformation for every frame; two-stage
registration and the subset workflow need motion that varies slowly from frame to frame.  Same
construction and conventions as ``make_movie`` (a texture larger than the field of view sampled
at ``y + w_t(y)``; ``warp(movie[t], u_true[t]) ~ fixed``), with ``w_t`` a translation plus two
fixed smooth fields whose amplitudes follow slow sinusoids.
"""
import numpy as np
from scipy import ndimage as ndi

from blockreg.synthetic import make_texture


def _smooth_field(big_shape, sigma, rng, inner):
    ndim = len(big_shape)
    field = np.stack([ndi.gaussian_filter(rng.standard_normal(big_shape), sigma, mode="wrap")
                      for _ in range(ndim)])
    peak = np.abs(field[(slice(None),) + inner]).max()
    return field / peak


def make_smooth_movie(shape, nframes, *, period=40.0, max_translation=3.0, max_local=1.5,
                      photons=200, bias=100, seed=0, noise=True, smoothness=None):
    """Movie ``(nframes, *shape)``, clean fixed image and ``u_true`` ``(nframes, *shape, N)``.

    The translation along each axis is ``max_translation * sin(2 pi t / period + phase)``; two
    smooth fields  are added with amplitudes
    ``max_local * sin(2 pi t / (period * f) + phase)``, ``f`` = 1.3 and 0.8.  ``smoothness`` is
    the fields' Gaussian correlation length in pixels (default a sixth of the largest axis).  ``noise=False``
    returns the expected counts (float32) instead of Poisson counts (uint16).
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    rng = np.random.default_rng(seed)
    margin = int(np.ceil(max_translation + 2 * max_local)) + 3
    big_shape = tuple(n + 2 * margin for n in shape)
    texture = make_texture(big_shape, rng)
    coeffs = ndi.spline_filter(texture, order=3, mode="mirror")
    inner = tuple(slice(margin, margin + n) for n in shape)
    sigma = max(shape) / 6.0 if smoothness is None else float(smoothness)
    fields = [_smooth_field(big_shape, sigma, rng, inner) for _ in range(2)]
    phase_d = rng.uniform(0, 2 * np.pi, ndim)
    phase_l = rng.uniform(0, 2 * np.pi, 2)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) + margin for n in shape], indexing="ij"))
    movie = np.empty((nframes,) + shape)
    u_true = np.empty((nframes,) + shape + (ndim,))
    for t in range(nframes):
        d = max_translation * np.sin(2 * np.pi * t / period + phase_d)
        a = [max_local * np.sin(2 * np.pi * t / (period * f) + p) for f, p in zip((1.3, 0.8), phase_l)]
        dense = d.reshape((ndim,) + (1,) * ndim) + a[0] * fields[0] + a[1] * fields[1]

        def w(points):
            return d.reshape((ndim,) + (1,) * ndim) + np.stack(
                [ndi.map_coordinates(c, points, order=1, mode="nearest") for c in dense - d.reshape(
                    (ndim,) + (1,) * ndim)])

        w_grid = dense[(slice(None),) + inner]
        movie[t] = ndi.map_coordinates(coeffs, grid + w_grid, order=3, prefilter=False, mode="mirror")
        u = -w_grid
        for _ in range(100):  # u = -w(x + u), a contraction for these small gradients
            u_next = -w(grid + u)
            change = np.abs(u_next - u).max()
            u = u_next
            if change < 1e-7:
                break
        u_true[t] = np.moveaxis(u, 0, -1)
    fixed_clean = texture[inner] * photons + bias
    if noise:
        counts = rng.poisson(np.clip(movie, 0, None) * photons) + round(bias)
        return np.clip(counts, 0, 65535).astype(np.uint16), fixed_clean, u_true
    return (movie * photons + bias).astype(np.float32), fixed_clean, u_true
