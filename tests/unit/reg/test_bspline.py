"""Quadratic B-spline helpers: reproduction of samples and of quadratics, both boundary conditions."""
import numpy as np
import pytest

from blockreg.reg import bspline


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 12])
@pytest.mark.parametrize("bc", ["flat", "quadratic"])
def test_interpolates_samples(n, bc):
    y = np.random.default_rng(n).random(n)
    c = bspline.prefilter(y, bc=bc)
    np.testing.assert_allclose(bspline.evaluation_matrix(n, np.arange(n), bc=bc) @ c, y, atol=1e-12)


@pytest.mark.parametrize("n", [3, 4, 9])
def test_quadratic_boundary_is_exact_for_quadratics(n):
    def f(x):
        return 0.3 * (x - 1.7) ** 2 - 2.0 * x + 1.0

    c = bspline.prefilter(f(np.arange(n)), bc="quadratic")
    xs = np.linspace(-0.5, n - 0.5, 41)                   # includes both half-cell edges
    np.testing.assert_allclose(bspline.evaluation_matrix(n, xs, bc="quadratic") @ c, f(xs), atol=1e-12)


@pytest.mark.parametrize("n", [2, 5, 6])
def test_flat_reproduces_constants_up_to_the_edges(n):
    c = bspline.prefilter(np.full(n, 4.0))
    xs = np.linspace(-0.5, n - 0.5, 23)
    np.testing.assert_allclose(bspline.evaluation_matrix(n, xs) @ c, 4.0, atol=1e-12)


def test_stencil_weights_match_the_dense_evaluation():
    n = 7
    c = np.random.default_rng(0).random(n)
    x = np.array([0.2, 2.5, 3.49, 5.9])
    i, w, _ = bspline.stencil(x)
    padded = bspline.pad_ghosts(c)                       # index j of c is j + 1 here
    direct = sum(w[:, k] * padded[i + k] for k in range(3))
    np.testing.assert_allclose(direct, bspline.evaluation_matrix(n, x) @ c, atol=1e-12)


def test_separable_prefilter_equals_axis_by_axis():
    y = np.random.default_rng(1).random((4, 5, 2))
    both = bspline.prefilter(y, axes=(0, 1))
    step = bspline.prefilter(bspline.prefilter(y, axes=0), axes=1)
    np.testing.assert_allclose(both, step, atol=1e-12)


def test_unknown_boundary_condition_is_named():
    with pytest.raises(ValueError, match="bc"):
        bspline.prefilter(np.ones(3), bc="periodic")
