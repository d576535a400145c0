"""Apertured mismatch: geometry ports, the original's block identities (apertures with zero overlap
tile the image, so their num and denom sum to the whole image's), and MismatchPlan against an
independent brute-force loop over apertures and shifts."""
import math

import numpy as np
import pytest

from blockreg.reg.apertures import aperture_grid, aperture_range, default_aperture_width
from blockreg.reg.mismatch import MismatchPlan, mismatch, mismatch_apertures, mismatch_zeroshift


def julia_reshape(n, *shape):
    return np.arange(1, n + 1, dtype=float).reshape(shape, order="F")


def brute_force_apertures(fixed, moving, gridsize, maxshift, normalization, overlap=0):
    """Reference: loop over apertures and shifts; each aperture's block from the geometry formulas."""
    ndim = fixed.ndim
    lines, widths = [], []
    overlap = np.broadcast_to(overlap, (ndim,))
    for n, g, o in zip(fixed.shape, gridsize, overlap):
        lines.append(np.linspace(0, n - 1, g) if g > 1 else np.array([(n - 1) / 2]))
        widths.append((n - 1) / (g - 1) + 2 * o if g > 1 else n)
    big = [int(n + 2 * (w + m) + 4) for n, w, m in zip(moving.shape, widths, maxshift)]
    pad = [int(w + m) + 2 for w, m in zip(widths, maxshift)]
    moving_padded = np.full(big, np.nan)
    moving_padded[tuple(slice(p, p + n) for p, n in zip(pad, moving.shape))] = moving
    out = np.zeros(tuple(gridsize) + (2,) + tuple(2 * m + 1 for m in maxshift))
    for g in np.ndindex(*gridsize):
        lo = [math.ceil(lines[a][g[a]] - widths[a] / 2) for a in range(ndim)]
        hi = [math.ceil(lines[a][g[a]] + widths[a] / 2) for a in range(ndim)]
        lo_in = [max(0, v) for v in lo]
        hi_in = [min(n, v) for n, v in zip(fixed.shape, hi)]
        f = fixed[tuple(slice(a, b) for a, b in zip(lo_in, hi_in))]
        for s in np.ndindex(*out.shape[ndim + 1:]):
            shift = [i - m for i, m in zip(s, maxshift)]
            mv = moving_padded[tuple(slice(a + d + p, b + d + p)
                                     for a, b, d, p in zip(lo_in, hi_in, shift, pad))]
            both = ~(np.isnan(f) | np.isnan(mv))
            fv, mvv = f[both], mv[both]
            out[g + (0,) + s] = ((fv - mvv) ** 2).sum()
            out[g + (1,) + s] = both.sum() if normalization == "pixels" else (fv ** 2 + mvv ** 2).sum()
    return out


# --- geometry (RegisterMismatch's tests, 0-based) ---------------------------------------------

def test_aperture_grid():
    centers = aperture_grid((10, 7), (4, 4))
    assert centers.shape == (4, 4, 2)
    np.testing.assert_array_equal(centers[:, 0, 0], [0, 3, 6, 9])
    np.testing.assert_array_equal(centers[0, :, 1], [0, 2, 4, 6])
    np.testing.assert_array_equal(aperture_grid((10, 7), (1, 2))[0, :, 0], [4.5, 4.5])


def test_aperture_range():
    assert aperture_range((14,), (7,)) == (slice(11, 18),)   # Julia: (15,), (7,) -> 12:18
    assert aperture_range((0, 4.5), (3.5, 10)) == (slice(-1, 2), slice(0, 10))


def test_default_aperture_width():
    assert default_aperture_width((10, 7), (4, 1)) == (3.0, 7.0)
    assert default_aperture_width((10, 7), (4, 1), overlap=(1, 5)) == (5.0, 7.0)


def test_gridsize_larger_than_image_raises():
    with pytest.raises(ValueError, match="gridsize"):
        aperture_grid((5, 4), (2, 5))
    with pytest.raises(ValueError, match="gridsize"):
        default_aperture_width((5, 4), (6, 1))
    with pytest.raises(ValueError, match="gridsize"):
        mismatch_apertures(np.ones((5, 4)), np.ones((5, 4)), (2, 5), (1, 1))


# --- block identities (RegisterMismatch) ----------------------------------------------------

@pytest.mark.parametrize("normalization", ["intensity", "pixels"])
def test_zero_shift_sum_over_apertures(normalization):
    rng = np.random.default_rng(0)
    fixed, moving = rng.random((7, 9)), rng.random((7, 9))
    mms = mismatch_apertures(fixed, moving, (2, 2), (3, 2), normalization)
    np.testing.assert_allclose(mms[:, :, :, 3, 2].sum(axis=(0, 1)),
                               mismatch_zeroshift(fixed, moving, normalization), rtol=1e-12)


@pytest.mark.parametrize("imsz", [(15, 16), (14, 17)])
@pytest.mark.parametrize("gridsize", [(2, 1), (2, 3), (2, 2), (1, 3)])
def test_apertures_sum_to_whole_image(imsz, gridsize):
    maxshift = (4, 3)
    rng = np.random.default_rng(1)
    A = np.pad(julia_reshape(int(np.prod(imsz)), *imsz), [(m, m) for m in maxshift])
    B = np.pad(rng.integers(1, 21, imsz).astype(float), [(m, m) for m in maxshift])
    nrm = (A ** 2).sum() + (B ** 2).sum()
    whole = mismatch(A, B, maxshift)
    shifts = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in maxshift], indexing="ij"))
    pixel_denom = np.prod(np.array(A.shape)[:, None, None] - np.abs(shifts), axis=0)
    for normalization in ("intensity", "pixels"):
        mms = mismatch_apertures(A, B, gridsize, maxshift, normalization)
        assert mms.shape == gridsize + (2, 9, 7)
        total = mms.sum(axis=(0, 1))
        np.testing.assert_allclose(total[0], whole[0], atol=1e-5 * nrm)
        expected_denom = nrm if normalization == "intensity" else pixel_denom
        np.testing.assert_allclose(total[1], expected_denom, atol=1e-5 * nrm)


def test_apertures_sum_to_whole_image_3d():
    maxshift = (4, 3, 2)
    A = np.pad(julia_reshape(480, 10, 8, 6), [(m, m) for m in maxshift])
    B = np.pad(np.random.default_rng(2).integers(1, 21, (10, 8, 6)).astype(float),
               [(m, m) for m in maxshift])
    nrm = (A ** 2).sum() + (B ** 2).sum()
    whole = mismatch(A, B, maxshift)
    for normalization in ("intensity", "pixels"):
        total = mismatch_apertures(A, B, (2, 3, 2), maxshift, normalization).sum(axis=(0, 1, 2))
        np.testing.assert_allclose(total[0], whole[0], atol=1e-5 * nrm)
        if normalization == "intensity":
            np.testing.assert_allclose(total[1], nrm, atol=1e-5 * nrm)
        else:
            np.testing.assert_allclose(total[1], mismatch(A, B, maxshift, "pixels")[1])


# --- MismatchPlan against brute force -----------------------------------------------------------

def textured(rng, shape, nan_fraction):
    a = rng.random(shape)
    a[rng.random(shape) < nan_fraction] = np.nan
    return a


@pytest.mark.parametrize("normalization", ["pixels", "intensity"])
@pytest.mark.parametrize("fixed_nans, moving_nans", [(0.0, 0.0), (0.05, 0.05), (0.05, 0.0),
                                                     (0.0, 0.05)])
def test_plan_equals_brute_force_2d(normalization, fixed_nans, moving_nans):
    # NaN patterns that take each of the plan's code paths: box sums (no NaN), cached presence
    # terms (NaN in fixed only) and the general one (NaN in moving).
    rng = np.random.default_rng(3)
    fixed = textured(rng, (17, 14), fixed_nans)
    moving = textured(rng, (17, 14), moving_nans)
    mms = MismatchPlan(fixed, (3, 2), (3, 2), normalization=normalization).compute(moving)
    expected = brute_force_apertures(fixed, moving, (3, 2), (3, 2), normalization)
    np.testing.assert_allclose(mms, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("normalization", ["pixels", "intensity"])
def test_plan_equals_brute_force_3d_with_nans(normalization):
    rng = np.random.default_rng(4)
    fixed = textured(rng, (7, 9, 8), 0.05)
    moving = textured(rng, (7, 9, 8), 0.05)
    mms = MismatchPlan(fixed, (2, 3, 2), (1, 2, 2), normalization=normalization).compute(moving)
    expected = brute_force_apertures(fixed, moving, (2, 3, 2), (1, 2, 2), normalization)
    np.testing.assert_allclose(mms, expected, rtol=1e-10, atol=1e-10)


def test_plan_with_overlap_and_larger_moving():
    rng = np.random.default_rng(5)
    fixed = textured(rng, (16, 13), 0.02)
    moving = textured(rng, (19, 15), 0.0)
    plan = MismatchPlan(fixed, (3, 3), (2, 3), overlap=(1.5, 2))
    expected = brute_force_apertures(fixed, moving, (3, 3), (2, 3), "pixels", overlap=(1.5, 2))
    np.testing.assert_allclose(plan.compute(moving), expected, rtol=1e-10, atol=1e-10)


def test_plan_reused_for_several_frames_equals_fresh_plans():
    rng = np.random.default_rng(6)
    fixed = textured(rng, (20, 18), 0.0)
    frames = [textured(rng, (20, 18), 0.0), textured(rng, (20, 18), 0.03),
              textured(rng, (20, 18), 0.0)]
    for normalization in ("pixels", "intensity"):
        plan = MismatchPlan(fixed, (3, 3), (3, 3), normalization=normalization)
        for frame in frames:
            fresh = MismatchPlan(fixed, (3, 3), (3, 3), normalization=normalization)
            np.testing.assert_allclose(plan.compute(frame), fresh.compute(frame), rtol=1e-12,
                                       atol=1e-12)


def test_plan_chunks_equal_one_batch():
    rng = np.random.default_rng(7)
    fixed, moving = textured(rng, (21, 19), 0.02), textured(rng, (21, 19), 0.0)
    whole = MismatchPlan(fixed, (4, 3), (3, 2)).compute(moving)
    chunked_plan = MismatchPlan(fixed, (4, 3), (3, 2), max_batch_bytes=1)
    assert len(chunked_plan._chunks()) == 12
    np.testing.assert_allclose(chunked_plan.compute(moving), whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        MismatchPlan(fixed, (4, 3), (3, 2), max_batch_bytes=200_000).compute(moving), whole,
        rtol=1e-12, atol=1e-12)


def test_plan_float32():
    rng = np.random.default_rng(8)
    fixed, moving = rng.random((24, 20)), rng.random((24, 20))
    plan = MismatchPlan(fixed.astype(np.float32), (2, 3), (3, 3))
    mms = plan.compute(moving.astype(np.float32))
    assert mms.dtype == np.float32
    expected = brute_force_apertures(fixed.astype(np.float32).astype(float),
                                     moving.astype(np.float32).astype(float), (2, 3), (3, 3),
                                     "pixels")
    np.testing.assert_allclose(mms, expected, rtol=1e-4, atol=1e-4)


def test_plan_rejects_bad_input():
    a = np.ones((10, 9))
    with pytest.raises(ValueError, match="maxshift"):
        MismatchPlan(a, (2, 2), (10, 1))
    with pytest.raises(ValueError, match="normalization"):
        MismatchPlan(a, (2, 2), (1, 1), normalization="counts")
    with pytest.raises(ValueError, match="max_batch_bytes"):
        MismatchPlan(a, (2, 2), (1, 1), max_batch_bytes=0)
    with pytest.raises(ValueError, match="moving"):
        MismatchPlan(a, (2, 2), (1, 1)).compute(np.ones((10, 9, 2)))
