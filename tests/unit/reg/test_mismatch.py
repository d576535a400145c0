"""Whole-image mismatch and its helpers: ports of RegisterCore's and RegisterMismatch's tests (plus the
CPU-checkable cases of RegisterMismatchCuda), checked against direct sums."""
import numpy as np
import pytest

from blockreg.reg.mismatch import (argmin_mismatch, correct_bias, mismatch, mismatch_zeroshift,
                                   nanpad, ratio, register_translate, truncate_noise)


def julia_reshape(n, *shape):
    """Julia's reshape(1:n, shape...) (column-major fill)."""
    return np.arange(1, n + 1, dtype=float).reshape(shape, order="F")


def direct_mismatch(fixed, moving, maxshift, normalization):
    """Independent reference: explicit loops over shifts, NaN-aware sums over overlapping pixels."""
    fixed = np.asarray(fixed, dtype=float)
    moving = np.asarray(moving, dtype=float)
    out = np.zeros((2,) + tuple(2 * m + 1 for m in maxshift))
    for s in np.ndindex(*out.shape[1:]):
        shift = np.array(s) - maxshift
        num = den = 0.0
        for x in np.ndindex(*fixed.shape):
            y = np.array(x) + shift
            if (y < 0).any() or (y >= moving.shape).any():
                continue
            f, m = fixed[x], moving[tuple(y)]
            if np.isnan(f) or np.isnan(m):
                continue
            num += (f - m) ** 2
            den += 1 if normalization == "pixels" else f * f + m * m
        out[(0,) + s], out[(1,) + s] = num, den
    return out


# --- RegisterCore: ratio and argmin ---------------------------------------------------------

def test_ratio():
    mm = np.array([3.5, 10.0])
    assert ratio(mm, 5) == pytest.approx(0.35)
    assert np.isnan(ratio(mm, 20))
    assert ratio(mm, 20, fill=-1) == -1


def test_argmin_ignores_edges_and_breaks_ties_column_major():
    numer = np.outer([5, 4, 3, 4.5, 7], [2, 1, 1.5, 2, 3])
    numer[0, 4] = -1  # an edge entry: never chosen
    mm = np.stack([numer, np.ones_like(numer)])
    assert argmin_mismatch(mm, 0.5) == (0, -1)
    mm = np.stack([numer, julia_reshape(25, 5, 5)])
    assert argmin_mismatch(mm, 0.5) == (0, 1)
    assert argmin_mismatch(mm[0] / mm[1]) == (0, 1)  # same on a ratio array


def test_argmin_nothing_valid_is_zero_shift():
    mm = np.stack([np.ones((5, 7)), np.zeros((5, 7))])
    assert argmin_mismatch(mm, 0.5) == (0, 0)


# --- RegisterMismatch --------------------------------------------------------------------------

@pytest.mark.parametrize("imsz", [(7, 10), (6, 5)])
@pytest.mark.parametrize("maxshift", [(4, 3), (3, 2)])
def test_mismatch_of_zero_padded_images(imsz, maxshift):
    rng = np.random.default_rng(0)
    n = int(np.prod(imsz))
    A = np.pad(julia_reshape(n, *imsz), [(m, m) for m in maxshift])
    B = np.pad(rng.integers(1, 21, imsz).astype(float), [(m, m) for m in maxshift])
    nrm = (A ** 2).sum() + (B ** 2).sum()
    mm_i = mismatch(A, B, maxshift)
    mm_p = mismatch(A, B, maxshift, normalization="pixels")
    for s in np.ndindex(*mm_i.shape[1:]):
        shift = np.array(s) - maxshift
        expected = ((A - np.roll(B, tuple(-shift), axis=(0, 1))) ** 2).sum()
        assert abs(mm_i[(0,) + s] - expected) < 1e-5 * nrm
        assert abs(mm_p[(0,) + s] - expected) < 1e-5 * nrm
        assert mm_i[(1,) + s] == pytest.approx(nrm, abs=1e-5 * nrm)
        assert mm_p[(1,) + s] == np.prod(np.array(A.shape) - np.abs(shift))


def test_zeroshift_is_exact_for_narrow_integer_types():
    # N0f16 values in the original: big uint16 values whose squares overflow 16 and 32 bits.
    a = np.array([[39321, 6554], [45875, 6554]], dtype=np.uint16)
    b = np.array([[45875, 6554], [39321, 6554]], dtype=np.uint16)
    num, den = mismatch_zeroshift(a, b)
    ai, bi = a.astype(object), b.astype(object)
    assert num == float(((ai - bi) ** 2).sum())
    assert den == float((ai ** 2 + bi ** 2).sum())
    assert mismatch_zeroshift(a, b, "pixels")[1] == 4


@pytest.mark.parametrize("normalization", ["intensity", "pixels"])
def test_zero_shift_entry_equals_mismatch_zeroshift(normalization):
    rng = np.random.default_rng(1)
    fixed, moving = rng.random((7, 9)), rng.random((7, 9))
    mm = mismatch(fixed, moving, (3, 2), normalization)
    np.testing.assert_allclose(mm[:, 3, 2], mismatch_zeroshift(fixed, moving, normalization),
                               rtol=1e-12)


@pytest.mark.parametrize("normalization", ["intensity", "pixels"])
def test_mismatch_matches_direct_sums_with_nans(normalization):
    rng = np.random.default_rng(2)
    fixed, moving = rng.random((9, 8)), rng.random((9, 8))
    fixed[2, 3] = moving[5, 5] = moving[0, 7] = np.nan
    mm = mismatch(fixed, moving, (3, 2), normalization)
    np.testing.assert_allclose(mm, direct_mismatch(fixed, moving, (3, 2), normalization),
                               rtol=1e-10, atol=1e-10)


def test_mismatch_3d_matches_direct_sums():
    rng = np.random.default_rng(3)
    fixed, moving = rng.random((5, 6, 4)), rng.random((5, 6, 4))
    moving[1, 2, 3] = np.nan
    mm = mismatch(fixed, moving, (1, 2, 1), "pixels")
    np.testing.assert_allclose(mm, direct_mismatch(fixed, moving, (1, 2, 1), "pixels"),
                               rtol=1e-10, atol=1e-10)


def test_fixed_and_moving_of_different_sizes():
    full = np.random.default_rng(4).random((4, 6))
    fixed, moving = full[:, 1:5], full[:, :5]     # Julia: full[1:4, 2:5] and 4x5
    for normalization in ("intensity", "pixels"):
        mm = mismatch(fixed, moving, (2, 2), normalization)
        np.testing.assert_allclose(mm, direct_mismatch(fixed, moving, (2, 2), normalization),
                                   rtol=1e-10, atol=1e-10)
        r = mm[0] / mm[1]
        # moving(x + (0, 1)) = fixed(x): a perfect match at s = (0, 1)
        assert r[2, 3] == pytest.approx(0, abs=1e-12)


def test_float32_working_type_and_dtype_override():
    rng = np.random.default_rng(5)
    fixed, moving = rng.random((12, 10)), rng.random((12, 10))
    mm32 = mismatch(fixed.astype(np.float32), moving.astype(np.float32), (2, 3))
    assert mm32.dtype == np.float32
    assert mismatch(fixed.astype(np.uint8), moving.astype(np.uint8), (2, 3)).dtype == np.float32
    mm = mismatch(fixed, moving, (2, 3), dtype=np.float32)
    assert mm.dtype == np.float32
    np.testing.assert_allclose(mm, direct_mismatch(fixed, moving, (2, 3), "intensity"), rtol=1e-5)


def test_truncate_noise():
    mm = np.stack([np.array([[1.0, 2], [3, 4]]), np.array([[1, 1e-6], [2, 1]])])
    out = truncate_noise(mm, 1e-5, axis=0)
    np.testing.assert_array_equal(out[0], [[1, 0], [3, 4]])
    np.testing.assert_array_equal(out[1], [[1, 0], [2, 1]])
    assert mm[0, 0, 1] == 2  # non-mutating


@pytest.mark.parametrize("shape", [(3, 3), (3, 3, 3)])
def test_correct_bias_restores_a_corrupted_middle_row_and_column(shape):
    rng = np.random.default_rng(6)
    val = np.array([2.0, 0.5])
    mm = np.empty((2,) + shape)
    mm[0], mm[1] = val
    noisy = mm.copy()
    for a in range(2):
        index = [slice(None)] * len(shape)
        index[a] = 1
        noisy[(slice(None),) + tuple(index)] = rng.random((2,) + noisy[(0,) + tuple(index)].shape)
    out = correct_bias(noisy)
    np.testing.assert_allclose(out[0], val[0])
    np.testing.assert_allclose(out[1], val[1])
    assert not np.allclose(noisy, mm)  # non-mutating
    # vectorised over apertures: the same for a grid of them
    grid = correct_bias(np.stack([noisy, noisy]))
    np.testing.assert_allclose(grid, np.stack([out, out]))


def test_correct_bias_averages_nonsuspect_neighbours():
    rng = np.random.default_rng(7)
    mm = rng.random((2, 5, 3))
    out = correct_bias(mm)
    # Zero shift (index (2, 1)): its neighbours within +-1 are rows 1..3 x columns 0..2; those
    # not on the suspect row 2 or column 1 are rows {1, 3} x columns {0, 2}.
    rows, cols = [1, 3], [0, 2]
    expected = mm[:, rows][:, :, cols].mean(axis=(1, 2))
    np.testing.assert_allclose(out[:, 2, 1], expected)
    np.testing.assert_array_equal(out[:, 0, 0], mm[:, 0, 0])  # non-suspect entries unchanged


def test_register_translate():
    outer = julia_reshape(120, 12, 10)
    # Julia: register_translate(outer[1:10, 2:9], outer[3:12, 1:8], (3, 11)) == (-2, 1). We require
    # maxshift < image size, so (3, 7): the answer lies well inside either range.
    assert register_translate(outer[0:10, 1:9], outer[2:12, 0:8], (3, 7)) == (-2, 1)


def test_bright_pixel():
    a = np.zeros((5, 5))
    a[2, 2] = 1
    b = np.zeros((5, 5))
    b[3, 4] = 1   # b(x) = a(x - (1, 2))  =>  s = (1, 2)
    for moving, expected in [(a, (0, 0)), (b, (1, 2))]:
        mm = truncate_noise(mismatch(a, moving, (2, 3)), 0.01)
        assert argmin_mismatch(mm, 0.01) == expected


def test_random_uint8_translation_sign():
    # RegisterMismatchCuda: fixed = img[1:40, 10:50], moving = img[7:46, 2:42] -> (-6, 8). Here
    # moving(x + s) = img(x + s + (6, 1)) equals fixed(x) = img(x + (0, 9)) at s = (-6, 8): the
    # original's answer is also ours, so the sign conventions agree.
    img = np.random.default_rng(8).integers(0, 256, (60, 60)).astype(np.uint8)
    fixed, moving = img[0:40, 9:50], img[6:46, 1:42]
    mm = mismatch(fixed, moving, (10, 10))
    assert argmin_mismatch(mm, 0.25 * mm[1].max()) == (-6, 8)


def test_nanpad():
    f, m = nanpad(np.ones((2, 3), dtype=np.uint8), np.zeros((3, 2)))
    assert f.shape == m.shape == (3, 3)
    assert f.dtype == np.float32 and m.dtype == np.float64
    assert np.isnan(f[2]).all() and np.isnan(m[:, 2]).all()
    assert (f[:2] == 1).all() and (m[:, :2] == 0).all()


def test_bad_arguments_raise():
    a = np.ones((6, 7))
    with pytest.raises(ValueError, match="maxshift"):
        mismatch(a, a, (6, 1))
    with pytest.raises(ValueError, match="maxshift"):
        mismatch(a, a, (-1, 1))
    with pytest.raises(ValueError, match="maxshift"):
        mismatch(a, a, (1.5, 1))
    with pytest.raises(ValueError, match="maxshift"):
        mismatch(a, a, (1,))
    with pytest.raises(ValueError, match="fixed.*moving"):
        mismatch(a, np.ones((6, 7, 2)), (1, 1))
    with pytest.raises(ValueError, match="normalization"):
        mismatch(a, a, (1, 1), normalization="nope")
    with pytest.raises(ValueError, match="thresh"):
        argmin_mismatch(np.ones((2, 3, 3)))


@pytest.mark.parametrize("normalization", ["intensity", "pixels"])
def test_one_dimensional_and_zero_maxshift_axes(normalization):
    rng = np.random.default_rng(9)
    f, m = rng.random(12), rng.random(14)
    np.testing.assert_allclose(mismatch(f, m, (3,), normalization),
                               direct_mismatch(f, m, (3,), normalization), rtol=1e-10, atol=1e-10)
    f, m = rng.random((6, 9)), rng.random((6, 9))
    np.testing.assert_allclose(mismatch(f, m, (0, 2), normalization),
                               direct_mismatch(f, m, (0, 2), normalization), rtol=1e-10, atol=1e-10)
