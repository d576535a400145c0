"""Frame preprocessing: shot-noise transform, NaN-aware Gaussian high/low-pass, bright clipping.

The fixed image and every moving frame must go through the same :class:`PreprocessSNF` so that
their mismatch compares like with like.

References
----------
.. [1] HolyLab, RegisterCore.jl, ``PreprocessSNF`` and ``highpass``
   (https://github.com/HolyLab/RegisterCore.jl).
.. [2] H. Knutsson and C.-F. Westin, "Normalized and differential convolution", CVPR 1993.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .._backend import array_module, device_constant, fft_module
from ..errors import ParameterError
from ._common import fft_kwargs, per_axis, working_dtype

# Kernel radius in standard deviations; the same default as scipy.ndimage.gaussian_filter, so the
# filtered values agree with it and the truncated tail (mass 6e-5) is below what matters here.
_TRUNCATE = 4.0

# A finite filter width may be at most this many times the image's size along its axis
# (PreprocessSNF.check_shape): wider, the Gaussian is flat across the image.
MAX_SIGMA_PER_SIZE = 10

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


class PreprocessSNF:
    """Shot-noise-flattening preprocessing: ``lowpass(highpass(sqrt(max(0, A - bias))))``.

    The square root turns Poisson (shot) noise into noise of roughly constant variance, so bright
    and dim regions weigh alike in the mismatch; the high-pass removes slow intensity changes
    (bleaching, neuropil) that would otherwise dominate it.

    Parameters
    ----------
    bias : float
        Camera offset in image units (e.g. 100 for a pco.edge), subtracted before the square root.
    sigma_lp : float or sequence of float
        Low-pass standard deviation in pixels (0 = none; the original's advice is 0).
    sigma_hp : float or sequence of float
        High-pass standard deviation in pixels, typically 20-25 µm divided by the pixel size; any
        ``inf`` disables the high-pass.
    clamp : bool, optional
        Set negative high-passed values to 0 as the original does. Default False: clamping wipes
        out dark apertures (we measured it to hurt registration there).

    Examples
    --------
    >>> pp = PreprocessSNF(bias=100, sigma_lp=0, sigma_hp=(10, 10))
    >>> out = pp(frame)                       # doctest: +SKIP

    References
    ----------
    .. [1] HolyLab, RegisterCore.jl, ``PreprocessSNF``.
    """

    def __init__(self, bias, sigma_lp, sigma_hp, clamp=False):
        bias = float(bias)
        if not math.isfinite(bias):
            raise ParameterError("bias", f"must be finite, got {bias}")
        self.bias = bias
        self.sigma_lp = self._check_sigma(sigma_lp, "sigma_lp")
        self.sigma_hp = self._check_sigma(sigma_hp, "sigma_hp")
        if any(math.isinf(s) for s in np.atleast_1d(self.sigma_lp)):
            raise ParameterError("sigma_lp", f"must be finite, got {self.sigma_lp}")
        self.clamp = bool(clamp)

    @staticmethod
    def _check_sigma(sigma, name):
        s = np.asarray(sigma, dtype=float)
        if s.ndim > 1:
            raise ParameterError(name, f"must be a number or a 1-D sequence, got shape {s.shape}")
        if np.isnan(s).any() or (s < 0).any():
            raise ParameterError(name, f"must be non-negative, got {s.tolist()}")
        return float(s) if s.ndim == 0 else [float(v) for v in s]

    def check_shape(self, shape):
        """Check the filter widths against a frame of ``shape`` (spatial axes).

        Raises
        ------
        ParameterError
            Field ``sigma_lp`` or ``sigma_hp``: one value per axis is needed, and a finite sigma
            may be at most ``MAX_SIGMA_PER_SIZE`` times the frame's size along its axis.  Wider,
            the Gaussian is flat across the image (within 0.5 %), and its kernel, sampled out to
            4 sigma, would only cost memory in proportion to sigma (1e9 asked for 60 GiB).
        """
        shape = tuple(int(n) for n in shape)
        for name in ("sigma_lp", "sigma_hp"):
            sigmas = per_axis(getattr(self, name), len(shape), name, finite=False)
            for axis, (sigma, n) in enumerate(zip(sigmas, shape)):
                limit = MAX_SIGMA_PER_SIZE * n
                if math.isfinite(sigma) and sigma > limit:
                    hint = ("inf (or leaving it out) means no high-pass" if name == "sigma_hp"
                            else "0 means no low-pass")
                    raise ParameterError(name, f"{sigma:g} is more than {MAX_SIGMA_PER_SIZE} "
                                               f"times the image's size {n} along axis {axis}; "
                                               f"at most {limit} ({hint})")

    def __call__(self, img):
        """Preprocess one frame (NumPy or CuPy); returns float32, NaN where the input was NaN."""
        xp = array_module(img)
        # before allocating: a sigma of 1e9 is refused, not tried (the shape attribute: np.shape
        # of a CuPy array would be a NumPy function on device data)
        self.check_shape(img.shape if hasattr(img, "shape") else np.shape(img))
        a = xp.asarray(img).astype(np.float32, copy=True)
        a -= np.float32(self.bias)
        # maximum (not fmax) keeps NaN as NaN: a missing pixel stays missing.
        a = xp.sqrt(xp.maximum(a, np.float32(0)))
        a = highpass(a, self.sigma_hp, clamp=self.clamp)
        return lowpass(a, self.sigma_lp).astype(np.float32, copy=False)

    def to_dict(self):
        """Plain-JSON description (floats and lists), the inverse of :meth:`from_dict`."""
        return {"bias": self.bias, "sigma_lp": self.sigma_lp, "sigma_hp": self.sigma_hp,
                "clamp": self.clamp}

    @classmethod
    def from_dict(cls, d):
        """Rebuild from :meth:`to_dict` output."""
        unknown = set(d) - {"bias", "sigma_lp", "sigma_hp", "clamp"}
        if unknown:
            raise ParameterError("d", f"has unknown keys {sorted(unknown)}")
        return cls(d["bias"], d["sigma_lp"], d["sigma_hp"], clamp=d.get("clamp", False))

    def __eq__(self, other):
        return isinstance(other, PreprocessSNF) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return (f"PreprocessSNF(bias={self.bias!r}, sigma_lp={self.sigma_lp!r}, "
                f"sigma_hp={self.sigma_hp!r}, clamp={self.clamp!r})")


def clip_bright(img, threshold):
    """Return a float copy of ``img`` with pixels above ``threshold`` set to NaN (missing).

    Saturated or artefact pixels would otherwise dominate the mismatch; NaN excludes them.
    """
    xp = array_module(img)
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ParameterError("threshold", "must not be NaN")
    img = xp.asarray(img)
    out = img.astype(working_dtype(img.dtype), copy=True)
    out[out > threshold] = xp.nan
    return out


def temporal_median(movie, t, window):
    """NaN-ignoring median of frames ``t - window//2 .. t + window//2`` (clipped to the movie).

    Parameters
    ----------
    movie : sequence of arrays
        Anything with ``len`` and ``movie[i]`` returning one frame; only the frames in the window
        are read, so a lazily loaded series is fine.
    t : int
        Index of the centre frame.
    window : int
        Number of frames (an even window behaves like the next odd one).

    Returns
    -------
    ndarray
        The per-pixel median in the working float type; NaN where every frame is NaN.
    """
    n = len(movie)
    t, window = int(t), int(window)
    if window < 1:
        raise ParameterError("window", f"must be >= 1, got {window}")
    if not 0 <= t < n:
        raise ParameterError("t", f"must be in [0, {n}), got {t}")
    lo, hi = max(0, t - window // 2), min(n - 1, t + window // 2)
    frames = [movie[i] for i in range(lo, hi + 1)]
    xp = array_module(*frames)
    stack = xp.stack([xp.asarray(f) for f in frames])
    stack = stack.astype(working_dtype(stack.dtype), copy=False)
    if len(frames) == 1:
        return stack[0].copy()
    return xp.nanmedian(stack, axis=0)
