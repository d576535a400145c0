"""Preprocessing: ports of RegisterCore's and RegisterMismatch's highpass/PreprocessSNF tests, plus
checks of the FFT Gaussian against scipy.ndimage's direct (spatial) filter."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from blockreg.reg.preprocess import (PreprocessSNF, clip_bright, highpass, lowpass,
                                     temporal_median)


def normalized_gaussian_reference(data, sigma):
    """Independent NaN-aware Gaussian: spatial-domain scipy filter on data and on the valid mask."""
    valid = ~np.isnan(data)
    num = ndi.gaussian_filter(np.where(valid, data, 0.0), sigma, mode="constant")
    den = ndi.gaussian_filter(valid.astype(float), sigma, mode="constant")
    return num / den


# --- RegisterCore ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_highpass_of_constant_is_zero(dtype, tol):
    out = highpass(np.ones(4, dtype=dtype), (2,))
    assert out.dtype == dtype
    assert np.abs(out).max() < tol


def test_preprocess_sqrt_and_bias_without_filtering():
    pp = PreprocessSNF(100, [0, 0], [np.inf, np.inf])
    out = pp(np.array([[200, 100], [10, 1000]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[10, 0], [0, 30]], rtol=1e-6)


def test_preprocess_blob_on_flat_background_clamped():
    # The original clamps: the flat background and the blob's dark pixel end at exactly 0.
    b = np.full((21, 17), 1000.0)
    b[9:11, 7:9] += [[200, 100], [10, 1000]]
    out = PreprocessSNF(100, [0, 0], [3, 3], clamp=True)(b)
    assert (np.abs(out) < 1e-8).sum() == out.size - 3
    assert (out[9:11, 7:9] > 1).sum() == 3


def test_preprocess_lowpass_of_checkerboard():
    i, j = np.meshgrid(np.arange(1, 21), np.arange(1, 21), indexing="ij")
    board = 1000.0 * ((i % 2) ^ (j % 2))
    out = PreprocessSNF(100, [2, 2], [np.inf, np.inf])(board)
    assert ((out > 14) & (out < 16)).all()


# --- RegisterMismatch highpass ----------------------------------------------------------------

def test_highpass_float32_constant_2d():
    out = highpass(np.full((8, 4), 7, dtype=np.float32), (1, 1))
    assert np.abs(out).max() < 100 * np.finfo(np.float32).eps


def test_highpass_inf_on_any_axis_disables_filter():
    a = np.random.default_rng(0).random((10, 8))
    np.testing.assert_array_equal(highpass(a, (1.2, np.inf)), a)


def test_highpass_nan_stays_the_only_nonfinite():
    a = np.ones((10, 8))
    a[0, 0] = np.nan
    out = highpass(a, (1, 1))
    assert np.isnan(out[0, 0])
    assert np.isfinite(out).sum() == out.size - 1
    assert np.nanmax(np.abs(out)) < 3e-6


# --- our FFT Gaussian against an independent spatial filter -------------------------------------

@pytest.mark.parametrize("sigma", [(3.0, 5.0), (0.0, 2.5), 40.0])
def test_highpass_matches_spatial_gaussian_with_nans(sigma):
    rng = np.random.default_rng(1)
    a = rng.random((50, 60))
    a[rng.random(a.shape) < 0.05] = np.nan
    out = highpass(a, sigma)
    expected = a - normalized_gaussian_reference(a, sigma)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(a))
    np.testing.assert_allclose(out, expected, atol=1e-10, equal_nan=True)


def test_highpass_3d_float32_and_clamp():
    a = np.random.default_rng(2).random((6, 20, 24)).astype(np.float32)
    expected = a - normalized_gaussian_reference(a.astype(float), (1, 4, 4))
    out = highpass(a, (1, 4, 4))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)
    clamped = highpass(a, (1, 4, 4), clamp=True)
    np.testing.assert_allclose(clamped, np.maximum(expected, 0), atol=1e-5)


def test_lowpass_fills_nan_from_neighbours():
    a = np.random.default_rng(3).random((30, 31))
    a[10, 12] = np.nan
    out = lowpass(a, (2, 3))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, normalized_gaussian_reference(a, (2, 3)), atol=1e-10)
    np.testing.assert_array_equal(lowpass(a, 0), a)


def test_uint16_input_gives_float32():
    a = np.random.default_rng(4).integers(0, 4000, (16, 16)).astype(np.uint16)
    assert highpass(a, 2).dtype == np.float32
    assert PreprocessSNF(100, 0, 3)(a).dtype == np.float32


def test_bad_sigma_raises():
    with pytest.raises(ValueError, match="sigma"):
        highpass(np.ones((4, 4)), (1, 2, 3))
    with pytest.raises(ValueError, match="sigma_hp"):
        PreprocessSNF(0, 0, -1)
    with pytest.raises(ValueError, match="sigma_lp"):
        PreprocessSNF(0, np.inf, 1)
    with pytest.raises(ValueError, match="sigma_hp"):
        PreprocessSNF(0, 0, [1, 2, 3])(np.ones((4, 4)))


def test_preprocess_dict_round_trip_and_repr():
    pp = PreprocessSNF(100, [0, 1.5], [10, 10], clamp=True)
    d = pp.to_dict()
    assert d == {"bias": 100.0, "sigma_lp": [0.0, 1.5], "sigma_hp": [10.0, 10.0], "clamp": True}
    assert PreprocessSNF.from_dict(d) == pp
    assert "sigma_hp=[10.0, 10.0]" in repr(pp)
    with pytest.raises(ValueError, match="unknown"):
        PreprocessSNF.from_dict({**d, "sigma": 1})


def test_preprocess_keeps_nan_with_highpass_only():
    a = np.full((12, 12), 400.0)
    a[3, 4] = np.nan
    out = PreprocessSNF(100, 0, 2)(a)
    assert np.isnan(out[3, 4]) and np.isfinite(out).sum() == a.size - 1


def test_clip_bright():
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = clip_bright(a, 3)
    np.testing.assert_array_equal(np.isnan(out), a > 3)
    np.testing.assert_array_equal(out[a <= 3], a[a <= 3])
    assert a.dtype == np.uint8  # input untouched


class CountingMovie:
    def __init__(self, frames):
        self.frames, self.read = frames, []

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        self.read.append(i)
        return self.frames[i]


def test_temporal_median_reads_only_window_and_ignores_nan():
    rng = np.random.default_rng(5)
    frames = rng.random((9, 4, 5))
    frames[3, 0, 0] = np.nan
    movie = CountingMovie(frames)
    out = temporal_median(movie, 4, 3)
    assert sorted(movie.read) == [3, 4, 5]
    np.testing.assert_allclose(out, np.nanmedian(frames[3:6], axis=0))
    edge = temporal_median(CountingMovie(frames), 0, 5)
    np.testing.assert_allclose(edge, np.median(frames[0:3], axis=0))
    with pytest.raises(ValueError, match="window"):
        temporal_median(movie, 0, 0)


def test_wide_gaussian_on_short_axis_matches_spatial_filter():
    # sigma far beyond the axis length: padding is capped at the axis length, results unchanged.
    rng = np.random.default_rng(6)
    a = rng.random((5, 40))
    a[2, 7] = np.nan
    out = highpass(a, (25, 3))
    np.testing.assert_allclose(out, a - normalized_gaussian_reference(a, (25, 3)), atol=1e-10)


@pytest.mark.parametrize("direct_max", [0, 8, 10_000])
def test_matrix_and_fft_paths_agree_with_spatial_filter(monkeypatch, direct_max):
    # direct_max picks which axes are filtered by matrix products (none, the short one, all);
    # every split must give the spatial filter's result, with and without NaN.
    from blockreg.reg import filters

    monkeypatch.setattr(filters, "_DIRECT_MAX", direct_max)
    rng = np.random.default_rng(7)
    a = rng.random((6, 30, 20))
    np.testing.assert_allclose(highpass(a, (25, 4, 0)),
                               a - normalized_gaussian_reference(a, (25, 4, 0)), atol=1e-10)
    a[3, 11, 5] = np.nan
    np.testing.assert_allclose(highpass(a, (2, 4, 3)),
                               a - normalized_gaussian_reference(a, (2, 4, 3)), atol=1e-10,
                               equal_nan=True)


def test_cached_denominator_is_reused_and_read_only():
    # NaN-free frames of one shape share the blurred all-ones image; it must equal the blur of
    # ones computed afresh, and nobody may write into the shared copy.
    from blockreg.reg import filters

    first = filters._separable_ones((9, 13), (3.0, 25.0), np.float64, np)
    again = filters._separable_ones((9, 13), (3.0, 25.0), np.float64, np)
    assert again is first
    assert not first.flags.writeable
    np.testing.assert_allclose(first, ndi.gaussian_filter(np.ones((9, 13)), (3, 25), mode="constant"),
                               atol=1e-12)
    frame = np.random.default_rng(8).random((9, 13))
    np.testing.assert_allclose(highpass(frame, (3, 25)),
                               frame - normalized_gaussian_reference(frame, (3, 25)), atol=1e-10)
