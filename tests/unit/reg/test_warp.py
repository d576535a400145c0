"""warp and warp_to_file (ports of RegisterDeformation's warp tests, plus the public conventions)."""
import io

import numpy as np
import pytest
from scipy import ndimage as ndi

from blockreg.reg.deformation import GridDeformation, tform_to_deformation
from blockreg.reg.warp import warp, warp_to_file
from helpers.gpu import cupy_or_skip

EPS32 = float(np.finfo(np.float32).eps)


def constant(shape, gridsize, d):
    return GridDeformation(np.zeros(tuple(gridsize) + (len(shape),)) + np.asarray(d, float), shape)


def smooth_texture(shape, seed, sigma=2.0):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), sigma) * 1000 + 100


@pytest.mark.parametrize("d,expected", [(0, slice(0, 10)), (1, slice(1, 11)), (2, slice(2, 12)),
                                        (5, slice(5, 15))])
def test_1d_translations(d, expected):
    p = np.arange(1, 101, dtype=float) - 5
    w = warp(p, constant(p.shape, (2,), [d]))
    tol = 10 * np.spacing(np.float32(np.abs(p[expected]).max()))
    assert np.abs(w[:10] - p[expected]).max() < tol


def test_1d_negative_translation_leaves_nan_at_the_start():
    p = np.arange(1, 101, dtype=float) - 5
    w = warp(p, constant(p.shape, (2,), [-2.0]))
    assert np.isnan(w[:2]).all()
    np.testing.assert_allclose(w[2:10], p[0:8], rtol=10 * EPS32)
    assert np.isfinite(w[2:]).all()


def test_2d_translation():
    p = np.arange(1, 121, dtype=float).reshape(12, 10).T      # the original's reshape(1:120, 10, 12)
    w = warp(p, GridDeformation((np.full((2, 2), 2.0), np.full((2, 2), -1.0)), p.shape))
    np.testing.assert_allclose(w[0:8, 1:], p[2:10, :-1], rtol=10 * EPS32)
    assert np.isnan(w[8:]).all() and np.isnan(w[:, 0]).all()


def test_convention_constant_u_along_axis_1():
    img = smooth_texture((20, 22), seed=3)
    nodes = (np.linspace(0, 19, 3), np.linspace(0, 21, 4))
    u = np.zeros((3, 4, 2))
    u[..., 1] = 3.0
    w = warp(img, GridDeformation(u, nodes))
    assert w.shape == img.shape and w.dtype == np.float64
    np.testing.assert_allclose(w[:, :-3], img[:, 3:], atol=1e-5)
    assert np.isnan(w[:, -3:]).all()


@pytest.mark.parametrize("beyond", [1e-4, 1e-5])
def test_samples_within_float32_rounding_of_the_edge_are_inside(beyond):
    img = smooth_texture((16, 24), seed=4).astype(np.float32)
    # shift by a whole image width minus one plus a rounding error: column 0 samples the last column
    w = warp(img, constant(img.shape, (2, 2), [0.0, 23 + beyond]))
    np.testing.assert_allclose(w[:, 0], img[:, -1], rtol=1e-5)
    assert np.isnan(w[:, 1:]).all()
    w = warp(img, constant(img.shape, (2, 2), [-beyond, 0.0]))
    np.testing.assert_allclose(w, img, rtol=1e-5)


def test_samples_clearly_outside_are_nan():
    img = smooth_texture((16, 24), seed=5)
    w = warp(img, constant(img.shape, (2, 2), [0.0, 23.05]))
    assert np.isnan(w).all()


def test_output_types():
    img = (smooth_texture((10, 12), seed=6)).astype(np.uint16)
    phi = constant(img.shape, (2, 2), [0.3, -0.2])
    assert warp(img, phi).dtype == np.float32
    assert warp(img.astype(np.float64), phi).dtype == np.float64
    assert warp(img.astype(np.float32), phi).dtype == np.float32


def test_nan_pixels_propagate_only_where_they_have_weight():
    img = smooth_texture((12, 14), seed=7)
    img[5, 6] = np.nan
    w = warp(img, constant(img.shape, (2, 2), [0.0, 0.0]))
    assert np.isnan(w).sum() == 1 and np.isnan(w[5, 6])
    np.testing.assert_allclose(w[~np.isnan(img)], img[~np.isnan(img)], rtol=1e-12)
    w = warp(img, constant(img.shape, (2, 2), [0.5, 0.0]))
    assert np.isnan(w[4, 6]) and np.isnan(w[5, 6])
    assert np.isnan(w[:11]).sum() == 2                  # the last row reaches past the edge


def test_u_and_nodes_form_equals_deformation_form():
    rng = np.random.default_rng(8)
    img = smooth_texture((30, 26), seed=8)
    u = rng.normal(size=(3, 4, 2))
    np.testing.assert_array_equal(warp(img, u, img.shape), warp(img, GridDeformation(u, img.shape)))


def test_bad_input():
    img = np.zeros((10, 10))
    with pytest.raises(ValueError, match="img"):
        warp(img, constant((10, 10, 10), (2, 2, 2), [0, 0, 0]))
    with pytest.raises(ValueError, match="nodes"):
        warp(img, np.zeros((2, 2, 2)))


def affine_reference(img, A, b):
    """Direct affine warp: img sampled at A x + b by scipy's linear interpolation, NaN outside."""
    grid = np.indices(img.shape).reshape(img.ndim, -1).astype(float)
    coords = A @ grid + b[:, None]
    out = ndi.map_coordinates(img, coords, order=1, mode="constant", cval=np.nan)
    return out.reshape(img.shape)


@pytest.mark.parametrize("about_centre", [False, True])
def test_rotated_ramp_matches_direct_affine_warp(about_centre):
    ramp = np.linspace(0, 1, 101)
    img = np.outer(ramp, ramp)
    theta = np.pi / 4
    A = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    b = np.zeros(2)
    if about_centre:
        c = np.array([50.0, 50.0])
        b = c - A @ c
    direct = affine_reference(img, A, b)
    via_grid = warp(img, tform_to_deformation(A, b, img.shape, (7, 7)))
    diff = direct - via_grid
    assert np.all(np.isnan(diff) | (np.abs(diff) < 0.02))
    assert np.isfinite(diff).sum() > 0.2 * img.size       # the comparison covers real pixels


def test_3d_warp_matches_scipy_linear_interpolation():
    rng = np.random.default_rng(9)
    shape = (12, 30, 26)
    img = smooth_texture(shape, seed=9).astype(np.float32)
    phi = GridDeformation(2 * rng.normal(size=(3, 4, 3, 3)), shape)
    u = np.stack(phi.field(shape, dtype=np.float64))
    coords = np.indices(shape).astype(float) + u
    expected = ndi.map_coordinates(img.astype(np.float64), coords, order=1, mode="constant", cval=np.nan)
    interior = np.all((coords >= 0) & (coords <= np.array(shape)[:, None, None, None] - 1), axis=0)
    w = warp(img, phi)
    np.testing.assert_allclose(w[interior], expected[interior], rtol=1e-5)
    far = np.any((coords < -0.01) | (coords > np.array(shape)[:, None, None, None] - 0.99), axis=0)
    assert np.isnan(w[far]).all()
    assert interior.sum() > 0.5 * img.size


def stack_5x5x7():
    return np.ones((7, 5, 5), np.float32) * np.arange(1, 8, dtype=np.float32)[:, None, None]


def test_warp_to_file_with_zero_u_reproduces_the_stack(tmp_path):
    frames = stack_5x5x7()
    phis = [GridDeformation(np.zeros((3, 3, 2)), (5, 5)) for _ in range(7)]
    path = tmp_path / "warped.raw"
    warp_to_file(path, frames, phis)
    np.testing.assert_array_equal(np.fromfile(path, dtype=np.float32).reshape(frames.shape), frames)


def test_warp_to_file_object_and_displacement_array():
    frames = stack_5x5x7()
    buf = io.BytesIO()
    buf.write(b"hdr!")                                     # writing starts at the current position
    warp_to_file(buf, frames, np.zeros((7, 3, 3, 2)), dtype=np.float64, nodes=(5, 5))
    data = np.frombuffer(buf.getvalue()[4:], dtype=np.float64).reshape(frames.shape)
    np.testing.assert_array_equal(data, frames)


def test_warp_to_file_writes_each_frame_warped(tmp_path):
    frames = np.stack([smooth_texture((8, 9), seed=s) for s in range(3)])
    us = np.random.default_rng(10).normal(size=(3, 2, 2, 2))
    path = tmp_path / "w.raw"
    warp_to_file(path, frames, us, nodes=(8, 9))
    data = np.fromfile(path, dtype=np.float32).reshape(frames.shape)
    for t in range(3):
        np.testing.assert_array_equal(data[t], warp(frames[t], us[t], (8, 9)).astype(np.float32))
    with pytest.raises(ValueError, match="phis"):
        warp_to_file(path, frames, us[:2], nodes=(8, 9))




@pytest.mark.gpu
def test_cupy_warp_and_field_match_numpy():
    cp = cupy_or_skip()
    rng = np.random.default_rng(12)
    img = smooth_texture((20, 40, 36), seed=12).astype(np.float32)
    img[3, 10, 10] = np.nan
    u = 2 * rng.normal(size=(3, 4, 3, 3))
    on_host = warp(img, GridDeformation(u, img.shape))
    phi_dev = GridDeformation(cp.asarray(u), img.shape)
    on_device = warp(cp.asarray(img), phi_dev)
    assert isinstance(on_device, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(on_device), on_host, rtol=1e-5, atol=1e-3)
    for a, b in zip(phi_dev.field(img.shape), GridDeformation(u, img.shape).field(img.shape)):
        np.testing.assert_allclose(cp.asnumpy(a), b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(37, 29), (9, 17, 13)])
def test_slabs_give_the_same_result_as_one_pass(monkeypatch, shape):
    # warp() interpolates in slabs along axis 0 to bound its memory; slab edges must be invisible.
    import blockreg.reg.warp as warp_module

    rng = np.random.default_rng(5)
    img = rng.random(shape)
    img[(2,) * len(shape)] = np.nan
    gridsize = (3,) * len(shape)
    nodes = tuple(np.linspace(0, n - 1, g) for n, g in zip(shape, gridsize))
    phi = GridDeformation(2.5 * rng.standard_normal(gridsize + (len(shape),)), nodes)
    monkeypatch.setattr(warp_module, "_SLAB_VOXELS", 10**9)
    whole = warp(img, phi)
    monkeypatch.setattr(warp_module, "_SLAB_VOXELS", 1)      # one row of axis 0 per slab
    np.testing.assert_array_equal(warp(img, phi), whole)
    assert np.isnan(whole).any() and np.isfinite(whole).any()


def test_field_in_a_named_module_equals_the_default_field():
    # warp() asks for the field in the image's module; with NumPy it must be the same field.
    rng = np.random.default_rng(13)
    phi = GridDeformation(rng.normal(size=(3, 4, 2)), (17, 23))
    default = phi.field((17, 23), dtype=np.float32)
    named = phi.field((17, 23), dtype=np.float32, xp=np)
    for a, b in zip(named, default):
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


@pytest.mark.gpu
def test_cupy_frame_with_a_host_deformation_is_warped_on_the_device():
    # Apertures' lambda search returns deformations with host u; warping a device frame with one
    # must not mix NumPy and CuPy arrays.
    cp = cupy_or_skip()
    rng = np.random.default_rng(14)
    img = smooth_texture((24, 30), seed=14).astype(np.float32)
    phi = GridDeformation(2 * rng.normal(size=(3, 4, 2)), img.shape)
    on_device = warp(cp.asarray(img), phi)
    assert isinstance(on_device, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(on_device), warp(img, phi), rtol=1e-5, atol=1e-3)
    for a in phi.field(img.shape, xp=cp):
        assert isinstance(a, cp.ndarray)


def test_a_precomputed_field_gives_the_same_warp():
    from blockreg.reg.warp import working_dtype

    rng = np.random.default_rng(15)
    img = smooth_texture((19, 21), seed=15).astype(np.uint16)
    phi = GridDeformation(2 * rng.normal(size=(3, 3, 2)), img.shape)
    field = phi.field(img.shape, dtype=working_dtype(img.dtype))
    np.testing.assert_array_equal(warp(img, phi, field=field), warp(img, phi))
    with pytest.raises(ValueError, match="field"):
        warp(img, phi, field=field[:1])
    with pytest.raises(ValueError, match="field"):
        warp(img, phi, field=tuple(c[:-1] for c in field))
