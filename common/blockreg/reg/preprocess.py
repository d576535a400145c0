"""Frame preprocessing: shot-noise transform and filtering (PreprocessSNF), bright clipping,
temporal median.

The fixed image and every moving frame must go through the same :class:`PreprocessSNF` so that
their mismatch compares like with like. The Gaussian filters themselves are in :mod:`.filters`
(``highpass`` and ``lowpass`` are importable from here too).

References
----------
.. [1] HolyLab, RegisterCore.jl, ``PreprocessSNF`` and ``highpass``
   (https://github.com/HolyLab/RegisterCore.jl).
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import array_module
from ..errors import ParameterError
from ._common import per_axis, working_dtype
from .filters import highpass, lowpass

__all__ = ["PreprocessSNF", "MAX_SIGMA_PER_SIZE", "highpass", "lowpass", "clip_bright",
           "temporal_median"]

# A finite filter width may be at most this many times the image's size along its axis
# (PreprocessSNF.check_shape): wider, the Gaussian is flat across the image.
MAX_SIGMA_PER_SIZE = 10


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
