"""GridDeformation, compose, regrid, tform_to_deformation (ports of RegisterDeformation's tests)."""
import numpy as np
import pytest

from blockreg.reg.deformation import (
    GridDeformation,
    compose,
    grid_deformations,
    node_grid,
    nodes_for_shape,
    regrid,
    tform_to_deformation,
)

# The original's node sets (1-based ranges 1..n), shifted to 0-based pixel positions.
NODE_SETS = [
    ((15, 5),),
    ((15, 5), (8, 4)),
    ((15, 3), (8, 4), (7, 2)),
    ((15, 5), (8, 4), (7, 6)),
]


def make_nodes(spec):
    return tuple(np.linspace(0, n - 1, g) for n, g in spec)


def random_points(rng, spec, count=10):
    """Integer pixels anywhere, and fractional points between the second and second-last pixel."""
    ints = np.stack([rng.integers(0, n, count) for n, _ in spec], axis=-1).astype(float)
    fracs = np.stack([rng.integers(1, n - 1, count) + rng.random(count) - 0.5 for n, _ in spec], axis=-1)
    return np.concatenate([ints, fracs])


@pytest.mark.parametrize("spec", NODE_SETS)
def test_zero_and_constant_displacement(spec):
    rng = np.random.default_rng(len(spec))
    nodes = make_nodes(spec)
    gridsize = tuple(g for _, g in spec)
    N = len(spec)
    x = random_points(rng, spec)
    phi = GridDeformation(np.zeros(gridsize + (N,)), nodes)
    np.testing.assert_allclose(x + phi.displacement_at(x), x, atol=1e-12)
    dx = rng.normal(size=N)
    phi = GridDeformation(np.zeros(gridsize + (N,)) + dx, nodes)
    np.testing.assert_allclose(x + phi.displacement_at(x), x + dx, rtol=1e-12, atol=1e-12)
    for comp, d in zip(phi.field(tuple(n for n, _ in spec), dtype=np.float64), dx):
        np.testing.assert_allclose(comp, d, rtol=1e-12)


@pytest.mark.parametrize("spec", [s for s in NODE_SETS if all(g > 2 for _, g in s)])
def test_quadratic_displacement_reproduced_exactly_with_quadratic_bc(spec):
    rng = np.random.default_rng(7)
    nodes = make_nodes(spec)
    N = len(spec)
    centres = [np.array([rng.integers(0, n - 1) + rng.random() for n, _ in spec]) for _ in range(N)]
    weights = [rng.random(N) for _ in range(N)]

    def f(x, i):
        return ((x - centres[i]) ** 2 * weights[i]).sum(axis=-1)

    grid = node_grid(nodes)
    u = np.stack([f(grid, i) for i in range(N)], axis=-1)
    phi = GridDeformation(u, nodes)
    lo = [(n[0] + n[1]) / 2 for n in nodes]
    hi = [(n[-2] + n[-1]) / 2 for n in nodes]
    y = np.stack([rng.uniform(a, b, 10) for a, b in zip(lo, hi)], axis=-1)
    expected = np.stack([f(y, i) for i in range(N)], axis=-1)
    np.testing.assert_allclose(phi.displacement_at(y, bc="quadratic"), expected, rtol=1e-10, atol=1e-10)
    # and on every pixel through the separable path
    shape = tuple(n for n, _ in spec)
    pixels = node_grid(tuple(np.arange(n, dtype=float) for n in shape))
    field = phi.field(shape, dtype=np.float64, bc="quadratic")
    for i in range(N):
        np.testing.assert_allclose(field[i], f(pixels, i), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("shape,gridsize", [((37,), (5,)), ((40, 50), (5, 6)), ((9, 33, 20), (3, 4, 1)),
                                            ((12, 17), (1, 2))])
@pytest.mark.parametrize("bc", ["flat", "quadratic"])
def test_field_equals_pointwise_evaluation(shape, gridsize, bc):
    rng = np.random.default_rng(3)
    phi = GridDeformation(rng.normal(size=gridsize + (len(shape),)), shape)
    pixels = node_grid(tuple(np.arange(n, dtype=float) for n in shape))
    pointwise = phi.displacement_at(pixels, bc=bc)
    field = phi.field(shape, dtype=np.float64, bc=bc)
    assert len(field) == len(shape)
    for a in range(len(shape)):
        assert field[a].shape == shape
        np.testing.assert_allclose(field[a], pointwise[..., a], rtol=1e-12, atol=1e-12)
    assert phi.field(shape)[0].dtype == np.float32


def test_nodes_reproduce_u_and_single_node_axis_is_constant():
    rng = np.random.default_rng(4)
    u = rng.normal(size=(4, 1, 2))
    phi = GridDeformation(u, (31, 20))
    np.testing.assert_allclose(phi.nodes[0], [0, 10, 20, 30])
    np.testing.assert_allclose(phi.nodes[1], [9.5])
    np.testing.assert_allclose(phi.displacement_at(node_grid(phi.nodes)), u, atol=1e-12)
    along = np.stack([np.full(20, 10.0), np.arange(20.0)], axis=-1)
    np.testing.assert_allclose(phi.displacement_at(along), np.broadcast_to(u[1, 0], (20, 2)), atol=1e-12)


def test_flat_extension_beyond_outer_nodes_is_constant():
    phi = GridDeformation(np.random.default_rng(5).normal(size=(4, 1)), (31,))
    outside = np.array([[-5.5], [-50.0], [30 + 5.5], [30 + 50.0]])   # past the half cell (5 px)
    edges = np.array([[-5.0], [-5.0], [35.0], [35.0]])
    np.testing.assert_allclose(phi.displacement_at(outside), phi.displacement_at(edges), atol=1e-12)


def test_tuple_of_components_and_with_u():
    rng = np.random.default_rng(6)
    u = rng.normal(size=(3, 4, 2))
    phi = GridDeformation((u[..., 0], u[..., 1]), (20, 30))
    np.testing.assert_array_equal(phi.u, u)
    assert phi.gridsize == (3, 4) and phi.ndim == 2
    other = phi.with_u(2 * u)
    assert all(np.array_equal(a, b) for a, b in zip(other.nodes, phi.nodes))
    np.testing.assert_array_equal(other.u, 2 * u)
    assert phi.coefficients() is phi.coefficients()       # cached
    assert "gridsize=(3, 4)" in repr(phi)


@pytest.mark.parametrize(
    "u,nodes,word",
    [
        (np.zeros((3, 4, 3)), (np.arange(3.0), np.arange(4.0)), "u"),
        (np.zeros((3, 4, 2)), (np.arange(3.0), np.arange(5.0)), "nodes"),
        (np.zeros((3, 1)), (np.array([0.0, 2.0, 1.0]),), "nodes"),
        (np.zeros((3, 1)), (np.array([0.0, 1.0, 3.0]),), "nodes"),
        (np.zeros((3, 4)), (10, 20), "u"),
    ],
)
def test_bad_input_raises(u, nodes, word):
    with pytest.raises(ValueError, match=word):
        GridDeformation(u, nodes)


def test_tform_to_deformation_translation():
    s = np.array([3.3, -2.6])
    phi = tform_to_deformation(np.eye(2), s, (500, 480), (3, 2))
    assert phi.gridsize == (3, 2)
    assert np.all(phi.u[..., 0] == s[0]) and np.all(phi.u[..., 1] == s[1])


def rotation_about_centre(theta, shape):
    A = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    c = (np.array(shape) - 1) / 2
    return A, c - A @ c


def test_two_small_rotations_compose_to_their_sum():
    shape, gridsize = (200, 200), (49, 47)
    phi1 = tform_to_deformation(*rotation_about_centre(np.pi / 180, shape), shape, gridsize)
    phi2 = tform_to_deformation(*rotation_about_centre(2 * np.pi / 180, shape), shape, gridsize)
    composed = compose(phi1, phi1)
    err = np.abs(composed.u - phi2.u).max()
    assert err <= 0.02 * np.abs(phi2.u).max()


def test_compose_jacobians_match_finite_differences():
    rng = np.random.default_rng(8)
    shape, gridsize = (100, 101), (11, 11)
    phi_old = GridDeformation(rng.normal(size=gridsize + (2,)), shape)
    u_new = rng.normal(size=gridsize + (2,))
    phi_new = GridDeformation(u_new, shape)
    composed, J = compose(phi_old, phi_new, jacobians=True)
    assert J.shape == gridsize + (2, 2)
    # u_c at node k depends only on u_new at node k, so perturbing one component everywhere at
    # once gives one column of every node's Jacobian.
    h = 1e-5
    for j in range(2):
        step = np.zeros(2)
        step[j] = h
        plus = compose(phi_old, GridDeformation(u_new + step, shape)).u
        minus = compose(phi_old, GridDeformation(u_new - step, shape)).u
        np.testing.assert_allclose(J[..., :, j], (plus - minus) / (2 * h), atol=1e-6)
    # ... and indeed only on it: perturbing one node leaves the others untouched
    bumped = u_new.copy()
    bumped[4, 6] += 0.1
    diff = compose(phi_old, GridDeformation(bumped, shape)).u - composed.u
    diff[4, 6] = 0
    assert np.abs(diff).max() == 0


def test_compose_with_zero_new_samples_old_at_nodes_and_identity_jacobian_for_zero_old():
    rng = np.random.default_rng(9)
    phi_old = GridDeformation(rng.normal(size=(5, 4, 2)), (40, 30))
    zero = GridDeformation(np.zeros((5, 4, 2)), (40, 30))
    np.testing.assert_allclose(compose(phi_old, zero).u, phi_old.u, atol=1e-12)
    _, J = compose(zero, phi_old, jacobians=True)
    np.testing.assert_allclose(J, np.broadcast_to(np.eye(2), J.shape), atol=1e-14)


def test_jacobian_at_matches_finite_differences():
    rng = np.random.default_rng(10)
    phi = GridDeformation(rng.normal(size=(4, 5, 3, 3)), (30, 41, 20))
    x = rng.uniform([1, 1, 1], [28, 39, 18], size=(20, 3))
    J = phi.jacobian_at(x)
    h = 1e-5
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        fd = (phi.displacement_at(x + e) - phi.displacement_at(x - e)) / (2 * h)
        np.testing.assert_allclose(J[:, :, j], fd, atol=1e-6)


def test_regrid_quadratic_field():
    z = (np.arange(6.0) - 2.5) ** 2
    u = np.zeros((6, 6, 2))
    u[..., 0] = z[:, None]
    u[..., 1] = z[None, :]
    nodes = (np.linspace(0, 19, 6), np.linspace(0, 29, 6))
    phi = GridDeformation(u, nodes)
    new = regrid(phi, (10, 8))
    np.testing.assert_allclose(new.nodes[0], np.linspace(0, 19, 10))
    np.testing.assert_allclose(new.nodes[1], np.linspace(0, 29, 8))
    grid = node_grid(new.nodes)
    scaled = grid * np.array([5 / 19, 5 / 29])          # back to node-index units
    analytic = (scaled - 2.5) ** 2
    err = np.linalg.norm(new.u - analytic, axis=-1)
    size = np.maximum(np.linalg.norm(new.u, axis=-1), np.linalg.norm(analytic, axis=-1))
    assert np.all(err <= 0.2 * size)
    np.testing.assert_allclose(new.u, phi.displacement_at(grid), rtol=1e-12)


def test_regrid_refuses_to_invent_a_span():
    phi = GridDeformation(np.zeros((3, 1, 2)), (10, 10))
    with pytest.raises(ValueError, match="gridsize"):
        regrid(phi, (3, 2))


def test_grid_deformations_views_per_frame():
    us = np.random.default_rng(11).normal(size=(4, 3, 2, 2))
    phis = grid_deformations(us, (20, 10))
    assert len(phis) == 4
    for t, phi in enumerate(phis):
        np.testing.assert_array_equal(phi.u, us[t])
        np.testing.assert_allclose(phi.nodes[1], [0, 9])


def test_nodes_for_shape_validates():
    with pytest.raises(ValueError, match="gridsize"):
        nodes_for_shape((10, 10), (3,))
    np.testing.assert_allclose(nodes_for_shape((11,), (1,))[0], [5.0])
