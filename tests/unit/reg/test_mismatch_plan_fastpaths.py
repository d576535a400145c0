"""MismatchPlan's fast paths against the plain computations they replace."""
import numpy as np
import pytest

from blockreg.reg.mismatch_plan import MismatchPlan


@pytest.mark.parametrize("shape, maxshift, dtype", [
    ((40,), (3,), np.float64),
    ((30, 41), (4, 5), np.float64),          # odd and even padded sizes
    ((12, 20, 23), (2, 3, 4), np.float32),
])
def test_inverse_at_lags_equals_full_inverse_fft(shape, maxshift, dtype):
    rng = np.random.default_rng(0)
    plan = MismatchPlan(rng.random(shape).astype(dtype), (2,) * len(shape), maxshift)
    p = plan.padded_shape
    data = rng.standard_normal((3,) + p)
    spec = np.fft.rfftn(data, axes=tuple(range(1, len(p) + 1)))
    expected = data
    for a, (n, m) in enumerate(zip(p, maxshift)):
        expected = np.take(expected, np.r_[n - m:n, 0:m + 1], axis=a + 1)
    complex_dtype = np.result_type(dtype, np.complex64)
    got = plan._inverse_at_lags(spec.astype(complex_dtype))
    assert got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, expected, atol=tol * np.abs(data).max())


@pytest.mark.parametrize("normalization", ["pixels", "intensity"])
@pytest.mark.parametrize("fixed_has_nan", [False, True])
def test_fixed_spectra_are_computed_lazily_with_unchanged_results(normalization, fixed_has_nan):
    # A plan keeps only f's spectra until a frame needs theta_f's or f**2's; frames of every kind,
    # in any order, must give what a plan that saw nothing before gives.
    rng = np.random.default_rng(1)
    fixed = rng.random((30, 34))
    if fixed_has_nan:
        fixed[4, 5] = np.nan
    clean = rng.random((30, 34))
    holey = clean.copy()
    holey[10, 20] = np.nan

    def fresh(frame):
        return MismatchPlan(fixed, (3, 3), (4, 5), normalization=normalization).compute(frame)

    plan = MismatchPlan(fixed, (3, 3), (4, 5), normalization=normalization)
    np.testing.assert_allclose(plan.compute(clean), fresh(clean), rtol=1e-12, atol=1e-9)
    stored = set(plan._fixed_spectra[0])
    assert stored == ({"f", "theta"} if fixed_has_nan else {"f"})
    np.testing.assert_allclose(plan.compute(holey), fresh(holey), rtol=1e-12, atol=1e-9)
    assert set(plan._fixed_spectra[0]) == {"f", "theta", "f2"} - (set() if fixed_has_nan else {"theta"})
    np.testing.assert_allclose(plan.compute(clean), fresh(clean), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("shape", [(6, 9, 11), (40, 33), (1, 5), (7,)])
def test_running_sum_is_numpys_cumsum_bit_for_bit(shape):
    from blockreg.reg._lags import running_sum

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) ** 2 * 1e4).astype(np.float32)
    for axis in range(len(shape)):
        for data in (x, x.astype(np.float64), np.moveaxis(x, 0, -1)):
            got = running_sum(data, axis)
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, np.cumsum(data, axis=axis, dtype=np.float64))
    assert running_sum(x, 0) is not x
