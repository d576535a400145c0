"""Batched FFT mismatch of many blocks (apertures) of a fixed image against one moving frame.

For a block of the fixed image ``f`` and the moving frame ``m``, the mismatch at shift ``s``
compares ``f(x)`` with ``m(x + s)`` over pairs where both are present (not NaN):

- ``num(s)   = sum w (f(x) - m(x+s))**2``
- ``denom(s) = sum w (f(x)**2 + m(x+s)**2)`` ("intensity") or ``sum w`` ("pixels")

with ``w = theta_f(x) * theta_m(x+s)`` (theta = 1 where the value is present). Expanding the square
turns every term into a cross-correlation ``corr(a, b)(s) = sum_x a(x) b(x+s)`` of one of
``theta, f, f**2`` with one of ``theta, m, m**2``; a correlation is a product of spectra, so a frame
costs at most three forward FFTs of the moving windows plus two inverse FFTs (num and denom), for
all apertures at once. The fixed image's spectra are computed once per plan. In the common case of
NaN-free images it costs one forward and one inverse FFT: ``theta_m`` then depends only on the
frame's shape (its terms are cached) and ``corr(theta_f, m**2)`` is a box sum over each aperture.

References
----------
.. [1] HolyLab, RegisterMismatch.jl and RegisterMismatchCuda.jl (``CMStorage``, ``mismatch!``,
   ``mismatch_apertures``), https://github.com/HolyLab/RegisterMismatch.jl.
.. [2] D. Padfield, "Masked object registration in the Fourier domain", IEEE Trans. Image Process.
   21(5), 2706-2718 (2012).
"""
from __future__ import annotations

import numpy as np

from .._backend import array_module, device_constant, fft_module, to_device
from ..errors import ParameterError
from ._common import check_maxshift, check_normalization, fft_kwargs, working_dtype
from ._lags import box_sums, inverse_at_lags, lag_matrices
from .apertures import aperture_grid, aperture_range, default_aperture_width

_DEFAULT_BATCH_BYTES = 64 << 20


class MismatchPlan:
    """Apertured mismatch of a fixed image against any number of moving frames.

    Building the plan computes, once, the spectra of every aperture of the fixed image (its
    presence mask, values and squared values); :meth:`compute` then costs one batched forward and
    one batched inverse real FFT per NaN-free moving frame (at most three and two when there are
    NaNs), with all apertures in one FFT call (or a few chunks when ``max_batch_bytes`` says so).

    Examples
    --------
    >>> plan = MismatchPlan(fixed, gridsize=(8, 8), maxshift=(15, 15))   # doctest: +SKIP
    >>> for t, frame in enumerate(movie):                                 # doctest: +SKIP
    ...     mms = plan.compute(pp(frame))                                 # (8, 8, 2, 31, 31)

    Parameters
    ----------
    fixed : array_like
        Reference image (NumPy or CuPy), NaN = missing.
    gridsize : tuple of int
        Number of apertures per axis; apertures are centred on the grid nodes (image corners
        included) and their fixed block is exactly :func:`aperture_range` (NaN outside the image).
    maxshift : tuple of int
        Largest shift per axis; the mismatch covers every integer ``|s_a| <= maxshift_a``.
    normalization : {"pixels", "intensity"}, optional
        Denominator: number of valid overlapping pixel pairs, or sum of squared intensities.
    overlap : float or tuple of float, optional
        Extra pixels on each side of each aperture.
    dtype : dtype, optional
        Working float type (default: ``float_dtype(fixed.dtype)``, float32 for integer data).
    max_batch_bytes : int, optional
        Upper bound on the temporary memory of one batch; apertures are processed in chunks that
        fit. Default: the larger of 64 MiB and 8 frames (in the working dtype), which keeps 2-D
        frames in one batch and bounds 3-D volumes' peak (24x256x256, grid (4, 8, 8): 24x -> 15x
        the volume's size, at the same speed).

    Attributes
    ----------
    gridsize, maxshift, normalization, dtype, centers (``(*gridsize, N)``), width (tuple of float),
    padded_shape (FFT size of one aperture).

    Notes
    -----
    Moving frames may differ in shape from ``fixed`` (same number of axes): coordinates are shared,
    the fixed image sitting at the origin of the moving one; whatever lies outside the moving frame
    is missing.
    """

    def __init__(self, fixed, gridsize, maxshift, *, normalization="pixels", overlap=0,
                 dtype=None, max_batch_bytes=None):
        xp = array_module(fixed)
        fixed = xp.asarray(fixed)
        centers = aperture_grid(fixed.shape, gridsize)
        width = default_aperture_width(fixed.shape, gridsize, overlap)
        gridsize = centers.shape[:-1]
        ranges = []
        for a, g in enumerate(gridsize):
            line = centers[(0,) * a + (slice(None),) + (0,) * (len(gridsize) - a - 1) + (a,)]
            ranges.append([aperture_range((c,), (width[a],))[0] for c in line])
        self._setup(fixed, ranges, maxshift, normalization, dtype, max_batch_bytes)
        self.centers, self.width = centers, width

    @classmethod
    def _whole_image(cls, fixed, maxshift, normalization, dtype):
        """A plan with a single block: the whole fixed image (used by :func:`mismatch`)."""
        plan = cls.__new__(cls)
        plan._setup(fixed, [[slice(0, n)] for n in fixed.shape], maxshift, normalization, dtype,
                    None)
        plan.centers = np.array([(n - 1) / 2 for n in fixed.shape]).reshape((1,) * fixed.ndim + (-1,))
        plan.width = tuple(float(n) for n in fixed.shape)
        return plan

    def _setup(self, fixed, ranges, maxshift, normalization, dtype, max_batch_bytes):
        xp = array_module(fixed)
        self._xp = xp
        self.normalization = check_normalization(normalization)
        self.maxshift = check_maxshift(maxshift, fixed.shape)
        self.dtype = working_dtype(fixed.dtype if dtype is None else dtype)
        if max_batch_bytes is None:
            frame_bytes = int(np.prod(fixed.shape)) * self.dtype.itemsize
            max_batch_bytes = max(_DEFAULT_BATCH_BYTES, 8 * frame_bytes)
        if int(max_batch_bytes) <= 0:
            raise ParameterError("max_batch_bytes", f"must be positive, got {max_batch_bytes!r}")
        self.max_batch_bytes = int(max_batch_bytes)
        self.gridsize = tuple(len(r) for r in ranges)
        self.fixed_shape = tuple(fixed.shape)
        fft = fft_module(xp)
        m = self.maxshift
        block = [max(r.stop - r.start for r in rs) for rs in ranges]
        # Any padded size >= block + 2m avoids wrap-around for |s| <= m; pick fast FFT sizes.
        self.padded_shape = tuple(fft.next_fast_len(b + 2 * s, real=True) for b, s in zip(block, m))
        self._starts = [np.array([r.start for r in rs]) for rs in ranges]
        self._lengths = [np.array([r.stop - r.start for r in rs]) for rs in ranges]
        # Flat aperture k <-> grid index, C order (the order of the output's leading axes).
        self._grid_index = np.unravel_index(np.arange(int(np.prod(self.gridsize))), self.gridsize)
        self._pads = {}
        self._presence = {}
        # With no NaN in the fixed image, every aperture's fixed presence mask is a box (its range
        # clipped to the image), so corr(theta_f, m**2) is a box sum: no FFT needed for it.
        self._fixed_is_box = not bool(xp.isnan(fixed).any())
        # The fixed image's spectra per chunk, by component. Only f's is needed for every frame;
        # theta_f's and f**2's are computed when a frame first needs them (frames with NaN, or a
        # fixed image with NaN), which keeps a plan for NaN-free data 3x smaller.
        self._fixed = xp.array(fixed, dtype=self.dtype)
        self._fixed_spectra = [{} for _ in self._chunks()]
        self._fixed_spectrum(0, ("f",), keep=True)

    # --- gathering aperture windows ---------------------------------------------------------

    def _padding(self, shape):
        """Padding (low, high) per axis so every aperture window lies inside the padded image.

        Padded samples are missing (presence 0, value 0), like NaN pixels.
        """
        if shape not in self._pads:
            lo, hi = [], []
            for starts, s, p, n in zip(self._starts, self.maxshift, self.padded_shape, shape):
                first = int(starts.min()) - s          # lowest coordinate any window reads
                last = int(starts.max()) - s + p       # one past the highest
                lo.append(max(0, -first))
                hi.append(max(0, last - n))
            self._pads[shape] = (tuple(lo), tuple(hi))
        return self._pads[shape]

    def _windows(self, comps, shape, chunk):
        """Gather the windows of apertures ``chunk`` from the padded component stack ``comps``.

        Window ``k`` covers coordinates ``start_k - m + p`` for ``0 <= p < P`` along each axis. A
        sliding-window view indexed by the windows' corners makes this one strided copy (block
        rows are contiguous), with no Python loop over apertures.
        """
        xp = self._xp
        lo, _ = self._padding(shape)
        corners = tuple(
            device_constant(self._starts[a][self._grid_index[a][chunk]] - self.maxshift[a] + lo[a],
                            xp)
            for a in range(len(self.padded_shape)))
        axes = tuple(range(1, comps.ndim))
        view = xp.lib.stride_tricks.sliding_window_view(comps, self.padded_shape, axis=axes)
        return view[(slice(None),) + corners]

    def _components(self, img, names=("theta", "m", "m2"), nan_free=False):
        """Padded stack of the components ``names`` (in the order theta, value, value**2) of ``img``.

        NaN -> 0 and padding -> 0; ``nan_free`` skips the NaN handling.
        """
        xp = self._xp
        order = [n for n in ("theta", "m", "m2") if n in names]
        lo, hi = self._padding(tuple(img.shape))
        padded_shape = tuple(n + a + b for n, a, b in zip(img.shape, lo, hi))
        comps = xp.zeros((len(order),) + padded_shape, dtype=self.dtype)
        inner = tuple(slice(a, a + n) for a, n in zip(lo, img.shape))
        valid = None if nan_free else ~xp.isnan(img)
        value = img if nan_free else xp.where(valid, img, 0)
        for i, name in enumerate(order):
            if name == "theta":
                comps[(i,) + inner] = 1 if nan_free else valid
            elif name == "m":
                comps[(i,) + inner] = value
            else:
                xp.multiply(value, value, out=comps[(i,) + inner])
        return comps

    def _chunks(self):
        k = int(np.prod(self.gridsize))
        p = int(np.prod(self.padded_shape))
        pr = p // self.padded_shape[-1] * (self.padded_shape[-1] // 2 + 1)
        # gathered windows (3 real) + their spectra (3 complex) + num/denom spectra (2 complex)
        # + the inverse transforms (2 real)
        per_aperture = self.dtype.itemsize * (5 * p + 2 * 5 * pr)
        size = max(1, int(self.max_batch_bytes) // per_aperture)
        return [np.arange(i, min(i + size, k)) for i in range(0, k, size)]

    def _rfft(self, windows):
        xp = self._xp
        axes = tuple(range(-len(self.padded_shape), 0))
        return fft_module(xp).rfftn(windows, axes=axes, **fft_kwargs(xp))

    def _lag_matrices(self):
        if getattr(self, "_lag_mats", None) is None:
            self._lag_mats = lag_matrices(self.padded_shape, self.maxshift, self.dtype, self._xp)
        return self._lag_mats

    def _inverse_at_lags(self, spec):
        return inverse_at_lags(spec, self._lag_matrices(), len(self.padded_shape), self.dtype)

    def _fixed_spectrum(self, c, names, keep):
        """Conjugated spectra of the fixed blocks of chunk ``c`` for components ``names``.

        ``names`` among ``"theta"``, ``"f"`` (carrying the factor -2 of the cross term) and
        ``"f2"``; those not stored yet are computed and, with ``keep``, stored.
        """
        xp = self._xp
        stored = self._fixed_spectra[c]
        missing = [n for n in ("theta", "f", "f2") if n in names and n not in stored]
        if missing:
            chunk = self._chunks()[c]
            fixed = self._fixed
            comps = self._components(fixed, ["m" if n == "f" else "m2" if n == "f2" else n
                                             for n in missing])
            windows = self._windows(comps, tuple(fixed.shape), chunk).copy()
            n = len(self.padded_shape)
            # The fixed block is exactly the aperture's range: positions m .. m + L_k - 1.
            for a in range(n):
                lengths = self._lengths[a][self._grid_index[a][chunk]]
                p = np.arange(self.padded_shape[a])
                s = self.maxshift[a]
                inside = (p >= s) & (p < s + lengths[:, None])
                bshape = [len(chunk)] + [1] * n
                bshape[1 + a] = self.padded_shape[a]
                windows *= to_device(inside.reshape(bshape).astype(self.dtype), xp)
            spec = self._rfft(windows)
            spec = xp.conj(spec, out=spec)
            fresh = dict(zip(missing, spec))
            if "f" in fresh:
                fresh["f"] *= -2  # the cross term enters num as -2 corr(f, m)
            if keep:
                stored.update(fresh)
        else:
            fresh = {}
        return tuple(stored[n] if n in stored else fresh[n] for n in names)

    def _presence_terms(self, shape):
        """Frame-independent terms for NaN-free moving frames of ``shape``, per chunk.

        When the moving frame has no NaN its presence mask depends only on its shape, so
        ``corr(f**2, theta_m)`` and ``corr(theta_f, theta_m)`` are computed once and reused.
        """
        if shape not in self._presence:
            xp = self._xp
            lo, hi = self._padding(shape)
            theta = xp.zeros((1,) + tuple(n + a + b for n, a, b in zip(shape, lo, hi)),
                             dtype=self.dtype)
            theta[(0,) + tuple(slice(a, a + n) for a, n in zip(lo, shape))] = 1
            terms = []
            for c, chunk in enumerate(self._chunks()):
                ftheta, f2 = self._fixed_spectrum(c, ("theta", "f2"), keep=False)
                mtheta = self._rfft(self._windows(theta, shape, chunk))[0]
                pair = xp.stack([f2 * mtheta, ftheta * mtheta], axis=1)
                terms.append(self._inverse_at_lags(pair))
            self._presence[shape] = terms
        return self._presence[shape]

    def _box_sums(self, values, shape):
        """``sum of values(x + s)`` over each aperture's in-image range, for every shift ``s``.

        ``values`` is a padded component image (as from :meth:`_components`); returns
        ``(K, *(2m + 1))`` in the working dtype.
        """
        lo, _ = self._padding(shape)
        # Only coordinates -m .. n_fixed + m - 1 can be read; crop to them before summing.
        origin = [p - m for p, m in zip(lo, self.maxshift)]
        x = values[tuple(slice(o, o + f + 2 * m)
                         for o, f, m in zip(origin, self.fixed_shape, self.maxshift))]
        first = [np.maximum(st, 0) for st in self._starts]
        last = [np.minimum(st + ln, n) for st, ln, n in zip(self._starts, self._lengths,
                                                             self.fixed_shape)]
        return box_sums(x, first, last, self.maxshift, self.gridsize).astype(self.dtype)

    # --- per frame --------------------------------------------------------------------------

    def _evaluate(self, terms):
        """Sum of correlation terms given as (spectrum or None, lag-domain array or None) pairs.

        Spectral parts are added before a single inverse FFT.
        """
        spectral = [t[0] for t in terms if t[0] is not None]
        lagged = [t[1] for t in terms if t[1] is not None]
        total = None
        if spectral:
            # A new array for the sum: the same spectrum may appear in num's and denom's terms.
            acc = spectral[0] if len(spectral) == 1 else spectral[0] + spectral[1]
            for x in spectral[2:]:
                acc += x
            total = self._inverse_at_lags(acc)
        for x in lagged:
            total = x if total is None else total + x
        return total

    def _combine(self, c, spectra, presence, box_sq, box_theta):
        """num and denom ``(Kc, 2, *(2m + 1))`` of chunk ``c`` of apertures.

        Each correlation comes from the cheapest source available: ``presence`` (cached terms of a
        NaN-free frame), box sums (NaN-free fixed image), or else the spectra (``spectra`` maps
        ``"theta"``, ``"m"``, ``"m2"`` to the moving windows' spectra, where needed). The moving
        spectra are consumed: a spectrum used by one product only holds that product afterwards.
        """
        xp = self._xp
        (f1,) = self._fixed_spectrum(c, ("f",), keep=True)  # conjugated, times -2
        cross = (xp.multiply(spectra["m"], f1, out=spectra["m"]), None)   # -2 corr(f, m)
        if box_sq is not None:
            moving_sq = (None, box_sq)                                 # corr(theta_f, m**2)
        else:
            (ftheta,) = self._fixed_spectrum(c, ("theta",), keep=True)
            moving_sq = (xp.multiply(spectra["m2"], ftheta, out=spectra["m2"]), None)
        if presence is not None:
            fixed_sq, overlap = (None, presence[:, 0]), (None, presence[:, 1])
        else:
            (f2,) = self._fixed_spectrum(c, ("f2",), keep=True)
            if box_theta is not None:                                  # corr(theta_f, theta_m)
                overlap = (None, box_theta)
                fixed_sq = (xp.multiply(spectra["theta"], f2, out=spectra["theta"]), None)
            else:
                (ftheta,) = self._fixed_spectrum(c, ("theta",), keep=True)
                fixed_sq = (f2 * spectra["theta"], None)               # corr(f**2, theta_m)
                overlap = (xp.multiply(spectra["theta"], ftheta, out=spectra["theta"]), None)
        if self.normalization == "pixels":
            num, den = [fixed_sq, moving_sq, cross], [overlap]
        else:
            den = [fixed_sq, moving_sq]
            num = den + [cross]
        return xp.stack([self._evaluate(num), self._evaluate(den)], axis=1)

    def compute(self, moving):
        """Mismatch of every aperture against ``moving``.

        Parameters
        ----------
        moving : array_like
            Moving frame, same number of axes as the fixed image; NaN = missing.

        Returns
        -------
        ndarray, shape ``(*gridsize, 2, *(2 * maxshift + 1))``
            ``[..., 0, :]`` = num and ``[..., 1, :]`` = denom per aperture; index ``maxshift`` of
            the shift axes is zero shift.
        """
        xp = self._xp
        moving = to_device(moving, xp)
        if moving.ndim != len(self.fixed_shape):
            raise ParameterError("moving", f"must have {len(self.fixed_shape)} axes like fixed, "
                                           f"got shape {tuple(moving.shape)}")
        shape = tuple(moving.shape)
        moving = moving.astype(self.dtype, copy=False)
        nan_free = not bool(xp.isnan(moving).any())
        # Components to transform (a leading run of the stack), then those only box-summed.
        names = ([] if nan_free else ["theta"]) + ["m"] + ([] if self._fixed_is_box else ["m2"])
        built = ["theta", "m", "m2"] if not nan_free else ["m", "m2"]
        comps = self._components(moving, built, nan_free=nan_free)
        presence = self._presence_terms(shape) if nan_free else None
        box_sq = box_theta = None
        if self._fixed_is_box:
            box_sq = self._box_sums(comps[built.index("m2")], shape)
            if not nan_free:
                box_theta = self._box_sums(comps[0], shape)
        comps = comps[:len(names)]
        out = xp.empty((int(np.prod(self.gridsize)), 2) + tuple(2 * s + 1 for s in self.maxshift),
                       dtype=self.dtype)
        for c, chunk in enumerate(self._chunks()):
            rows = slice(chunk[0], chunk[-1] + 1)
            spectra = dict(zip(names, self._rfft(self._windows(comps, shape, chunk))))
            out[rows] = self._combine(c, spectra, None if presence is None else presence[c],
                                      None if box_sq is None else box_sq[rows],
                                      None if box_theta is None else box_theta[rows])
            del spectra
        if self.normalization == "pixels":
            # Pixel counts are integers; rounding removes FFT round-off (and tiny negatives).
            out[:, 1] = xp.rint(out[:, 1])
        return out.reshape(self.gridsize + out.shape[1:])

    def __repr__(self):
        return (f"MismatchPlan(gridsize={self.gridsize}, maxshift={self.maxshift}, "
                f"normalization={self.normalization!r}, dtype={self.dtype.name}, "
                f"padded_shape={self.padded_shape})")
