"""NaN-aware Gaussian filters: high-pass and low-pass by normalized convolution.

The Gaussian is the sampled, truncated (4 sigma), unit-sum kernel of ``scipy.ndimage``, applied with
zero borders: by dense matrix products along short axes and by one zero-padded FFT along the
others, so its cost does not grow with sigma. Missing (NaN) pixels are handled by normalized
convolution [1]_.

References
----------
.. [1] H. Knutsson and C.-F. Westin, "Normalized and differential convolution", CVPR 1993.
.. [2] HolyLab, RegisterCore.jl, ``highpass`` (https://github.com/HolyLab/RegisterCore.jl).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .._backend import array_module, device_constant, fft_module
from ..errors import ParameterError
from ._common import fft_kwargs, per_axis, working_dtype

__all__ = ["highpass", "lowpass"]

# Kernel radius in standard deviations; the same default as scipy.ndimage.gaussian_filter, so the
# filtered values agree with it and the truncated tail (mass 6e-5) is below what matters here.
_TRUNCATE = 4.0

# Axes up to this length are filtered by a dense matrix product instead of an FFT. A matrix product
# costs n multiply-adds per sample but needs no zero padding (which an FFT over the other axes pays
# for as well); measured with 1 thread, sigma 25: a 24x256x256 volume 16 ms by matrices vs 99 ms by
# a padded FFT, while a 512x512 image is faster by FFT (4.2 vs 7.1 ms).
_DIRECT_MAX = 256


def _reach(n, sigma):
    """Kernel radius that matters on an axis of ``n`` samples.

    Offsets beyond ``n - 1`` never pair two samples of the image, so a wide Gaussian on a short
    axis (e.g. a few z-planes) needs no more padding than the axis itself.
    """
    return min(int(_TRUNCATE * sigma + 0.5), n - 1)


def _gaussian_kernel(sigma):
    """Offsets ``-r .. r`` (``r = round(4 sigma)``) and the sampled, unit-sum Gaussian taps there."""
    radius = int(_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    return offsets, kernel


def _gaussian_transfer(n, sigma, padded, real):
    """DFT of a sampled, truncated, unit-sum Gaussian placed circularly on ``padded`` samples."""
    offsets, kernel = _gaussian_kernel(sigma)
    reach = _reach(n, sigma)
    inside = np.abs(offsets) <= reach
    circular = np.zeros(padded)
    circular[offsets[inside] % padded] = kernel[inside]
    # The kernel is symmetric, so its transform is real.
    return (np.fft.rfft(circular) if real else np.fft.fft(circular)).real


def _gaussian_fft(stack, sigma, xp):
    """Gaussian-filter each image of ``stack`` (shape ``(k, *image)``) with zero ("constant") borders.

    The convolution is done by FFT on a zero-padded domain at least ``n + radius`` long per axis,
    so nothing wraps around and the cost does not grow with ``sigma``. Axes with sigma 0 are left
    untouched.
    """
    fft = fft_module(xp)
    shape = stack.shape[1:]
    axes = [a for a, s in enumerate(sigma) if s > 0]
    if not axes:
        return stack
    padded = [fft.next_fast_len(shape[a] + _reach(shape[a], sigma[a]) + 1, real=True)
              for a in axes]
    fft_axes = tuple(a + 1 for a in axes)
    spectrum = fft.rfftn(stack, s=padded, axes=fft_axes, **fft_kwargs(xp))
    for i, (a, p) in enumerate(zip(axes, padded)):
        transfer = _gaussian_transfer(shape[a], sigma[a], p, real=(i == len(axes) - 1))
        bshape = [1] * spectrum.ndim
        bshape[a + 1] = transfer.size
        spectrum *= device_constant(transfer.astype(stack.dtype).reshape(bshape), xp)
    out = fft.irfftn(spectrum, s=padded, axes=fft_axes, **fft_kwargs(xp))
    return out[(slice(None),) + tuple(slice(0, n) for n in shape)]


@functools.lru_cache(maxsize=32)
def _gaussian_matrix(n, sigma):
    """The zero-border Gaussian filter of an ``n``-sample axis as an ``(n, n)`` float64 matrix.

    Row ``i`` holds the truncated, unit-sum kernel centred on ``i`` (the same taps as
    :func:`_gaussian_transfer`); taps outside the axis are the zero border. Read-only (cached).
    """
    offsets, kernel = _gaussian_kernel(sigma)
    radius = int(offsets[-1])
    lag = np.subtract.outer(np.arange(n), np.arange(n))
    matrix = np.where(np.abs(lag) <= radius, kernel[np.clip(lag + radius, 0, 2 * radius)], 0.0)
    matrix.flags.writeable = False
    return matrix


def _gaussian_filter(stack, sigma, xp):
    """:func:`_gaussian_fft`'s result, with short axes filtered by matrix products (same operator).

    Axes of at most ``_DIRECT_MAX`` samples are multiplied by :func:`_gaussian_matrix`; the others
    go through one zero-padded FFT.
    """
    shape = stack.shape[1:]
    direct = [a for a, s in enumerate(sigma) if s > 0 and shape[a] <= _DIRECT_MAX]
    for a in direct:
        matrix = device_constant(_gaussian_matrix(shape[a], sigma[a]).astype(stack.dtype), xp)
        if a == len(shape) - 1:
            # The matrix is symmetric; multiplying from the right keeps the result contiguous.
            stack = xp.matmul(stack, matrix)
        else:
            # matmul contracts the second-to-last axis of its right operand
            stack = xp.moveaxis(xp.matmul(matrix, xp.moveaxis(stack, a + 1, -2)), -2, a + 1)
    rest = tuple(0.0 if a in direct else s for a, s in enumerate(sigma))
    return _gaussian_fft(stack, rest, xp)


@functools.lru_cache(maxsize=4)
def _separable_ones_host(shape, sigma, dtype):
    """Host ``G_sigma`` of an all-ones image of ``shape``, read-only.

    It depends only on the shape, so NaN-free frames share it; a few entries cover the fixed image
    and the movie's frames without holding many frame-sized arrays.
    """
    out = None
    for a, (n, s) in enumerate(zip(shape, sigma)):
        line = np.ones((1, n))
        if s > 0:
            line = _gaussian_filter(line, (s,), np)
        line = line.reshape([n if b == a else 1 for b in range(len(shape))])
        out = line if out is None else out * line
    out = np.ascontiguousarray(np.broadcast_to(out, shape), dtype=dtype)
    out.flags.writeable = False
    return out


def _separable_ones(shape, sigma, dtype, xp):
    """``G_sigma`` applied to an all-ones image: the outer product of the 1-D filtered ones."""
    return device_constant(_separable_ones_host(tuple(shape), tuple(sigma), np.dtype(dtype).str),
                           xp)


def _normalized_gaussian(data, sigma, xp):
    """NaN-ignoring Gaussian filter: ``G(data with NaN -> 0) / G(valid mask)`` (normalized convolution).

    Returns the filtered values; where no valid pixel lies within the kernel the result is NaN.
    """
    if not bool(xp.isnan(data).any()):
        # No NaN: the mask is all ones and its blur (cached per shape) is separable, so a single
        # filtering pass suffices; in-place steps spare frame-sized temporaries.
        offset = data.dtype.type(float(data.mean(dtype=np.float64)))
        num = _gaussian_filter((data - offset)[None], sigma, xp)[0]
        num /= _separable_ones(data.shape, sigma, data.dtype, xp)
        num += offset
        return num
    valid = ~xp.isnan(data)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return xp.full_like(data, xp.nan)
    # Filtering data - mean keeps the FFT round-off relative to the fluctuations, not the offset:
    # a flat region then comes out flat to ~1e-7 of its contrast instead of ~1e-7 of its level.
    offset = data.dtype.type(float(data[valid].mean(dtype=np.float64)))
    centered = xp.where(valid, data - offset, 0)
    stack = xp.stack([centered, valid.astype(data.dtype)])
    num, den = _gaussian_filter(stack, sigma, xp)
    # den is a weight in [0, 1]; below a few ulps it is FFT round-off, not support.
    tiny = 100 * np.finfo(data.dtype).eps
    out = xp.where(den > tiny, num / xp.where(den > tiny, den, 1) + offset, xp.nan)
    return out.astype(data.dtype, copy=False)


def highpass(data, sigma, clamp=False):
    """NaN-aware Gaussian high-pass filter: ``data - G_sigma(data)``.

    Parameters
    ----------
    data : array_like
        Image (NumPy or CuPy), any number of axes. NaN pixels are missing: they are excluded from
        the Gaussian average of their neighbours and stay NaN in the output.
    sigma : float or sequence of float
        Gaussian standard deviation in pixels, one value per axis or one for all. A value of 0
        leaves that axis unfiltered. If any entry is ``inf`` the high-pass is disabled altogether
        (the data are returned converted to the working float type), as in the original.
    clamp : bool, optional
        Set negative results to 0, as the original does. Off by default: clamping throws away the
        signal of dark apertures (everything below the local mean becomes 0), which we measured to
        hurt registration of dim regions.

    Returns
    -------
    ndarray
        Float array of the input's working type (float inputs keep theirs, others get float32).

    Notes
    -----
    The Gaussian is applied by FFT on a zero-padded domain (border "constant 0"), normalized by
    the filtered validity mask [2]_, so its cost does not grow with sigma (sigma_hp of 20-100 px is
    common).

    References
    ----------
    .. [1] HolyLab, RegisterCore.jl, ``highpass``.
    .. [2] H. Knutsson and C.-F. Westin, "Normalized and differential convolution", CVPR 1993.
    """
    xp = array_module(data)
    data = xp.asarray(data)
    sigma = per_axis(sigma, data.ndim, "sigma", finite=False)
    out = data.astype(working_dtype(data.dtype), copy=True)
    if any(math.isinf(s) for s in sigma):
        return out
    out -= _normalized_gaussian(out, sigma, xp)
    if clamp:
        out[out < 0] = 0
    return out


def lowpass(data, sigma):
    """NaN-aware Gaussian low-pass filter (normalized convolution).

    Parameters
    ----------
    data : array_like
        Image (NumPy or CuPy). NaN pixels are missing.
    sigma : float or sequence of float
        Standard deviation in pixels per axis (0 = no smoothing along that axis; all 0 = identity).

    Returns
    -------
    ndarray
        Smoothed image of the working float type. As in the original (current ImageFiltering), NaN
        pixels are filled from their valid neighbours; a pixel with no valid pixel within the kernel
        stays NaN.
    """
    xp = array_module(data)
    data = xp.asarray(data)
    sigma = per_axis(sigma, data.ndim, "sigma", finite=False)
    if any(math.isinf(s) for s in sigma):
        raise ParameterError("sigma", f"must be finite for a low-pass, got {sigma}")
    out = data.astype(working_dtype(data.dtype), copy=True)
    if not any(sigma):
        return out
    return _normalized_gaussian(out, sigma, xp)
