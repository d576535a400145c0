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
