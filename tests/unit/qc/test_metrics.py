"""blockreg.qc.metrics against independent computations and constructed ground truth."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from blockreg.qc import metrics
from blockreg.reg.deformation import GridDeformation, nodes_for_shape


@pytest.fixture
def texture():
    rng = np.random.default_rng(1)
    return ndimage.gaussian_filter(rng.normal(size=(48, 64)), 2.0)


# --- correlation -------------------------------------------------------------------------------

def test_correlation_of_identical_and_negated_images(texture):
    assert metrics.pearson(texture, texture) == pytest.approx(1.0, abs=1e-12)
    assert metrics.pearson(texture, -texture) == pytest.approx(-1.0, abs=1e-12)
    # brightness and contrast do not matter
    assert metrics.pearson(texture, 3.0 * texture + 7.0) == pytest.approx(1.0, abs=1e-12)


def test_correlation_equals_numpy_on_the_pixels_both_images_have(texture):
    rng = np.random.default_rng(2)
    other = texture + rng.normal(scale=0.05, size=texture.shape)
    a, b = texture.copy(), other.copy()
    a[:5] = np.nan      # e.g. the NaN border of a warped frame
    b[:, -3:] = np.inf
    valid = np.isfinite(a) & np.isfinite(b)
    expected = np.corrcoef(a[valid], b[valid])[0, 1]
    assert metrics.pearson(a, b) == pytest.approx(expected, rel=1e-12)
    assert 0.5 < expected < 1.0


def test_correlation_with_a_mask_uses_only_those_pixels(texture):
    mask = np.zeros(texture.shape, dtype=bool)
    mask[10:30, 10:40] = True
    noisy = texture + np.random.default_rng(3).normal(scale=0.1, size=texture.shape)
    expected = np.corrcoef(texture[mask], noisy[mask])[0, 1]
    assert metrics.pearson(texture, noisy, mask) == pytest.approx(expected, rel=1e-12)


def test_correlation_is_nan_without_enough_varying_pixels(texture):
    assert np.isnan(metrics.pearson(np.ones((4, 4)), texture[:4, :4]))
    assert np.isnan(metrics.pearson(np.full((4, 4), np.nan), texture[:4, :4]))
    with pytest.raises(ValueError, match="same shape"):
        metrics.pearson(texture, texture[:-1])


def test_common_mask_is_where_every_image_is_finite():
    a = np.array([1.0, np.nan, 3.0, 4.0])
    b = np.array([1.0, 2.0, np.inf, 4.0])
    np.testing.assert_array_equal(metrics.common_mask(a, b), [True, False, False, True])


# --- crispness ---------------------------------------------------------------------------------

def test_crispness_of_a_ramp_is_its_slope_times_the_root_of_the_pixel_count():
    # independent: a plane a*y + b*x has gradient (a, b) at every pixel, edges included
    y, x = np.mgrid[0:20, 0:30].astype(float)
    image = 0.5 * y - 2.0 * x
    assert metrics.crispness(image) == pytest.approx(np.hypot(0.5, 2.0) * np.sqrt(600), rel=1e-12)


def test_blurring_lowers_crispness(texture):
    blurred = ndimage.gaussian_filter(texture, 2.0)
    assert metrics.crispness(blurred) < 0.7 * metrics.crispness(texture)


def test_crispness_leaves_out_missing_pixels_and_follows_the_mask():
    y, x = np.mgrid[0:10, 0:10].astype(float)
    image = 3.0 * x
    image[0, 0] = np.nan
    # the NaN poisons its own gradient and its two neighbours' central differences
    assert metrics.crispness(image) == pytest.approx(3.0 * np.sqrt(100 - 3), rel=1e-12)
    mask = np.zeros((10, 10), dtype=bool)
    mask[5:, 5:] = True
    assert metrics.crispness(image, mask) == pytest.approx(3.0 * 5, rel=1e-12)


# --- folds -------------------------------------------------------------------------------------

def _lattice_det(u, nodes, samples_per_cell=4):
    """det(I + grad u) straight from GridDeformation.jacobian_at, one frame at a time."""
    axes = [np.linspace(n[0], n[-1], (len(n) - 1) * samples_per_cell + 1) for n in nodes]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    J = GridDeformation(u, nodes).jacobian_at(points) + np.eye(len(nodes))
    return np.linalg.det(J)


@pytest.mark.parametrize("shape, gridsize", [((60, 80), (4, 5)), ((20, 30, 40), (3, 4, 4))])
def test_fold_fractions_equal_the_determinant_of_jacobian_at(shape, gridsize):
    nodes = nodes_for_shape(shape, gridsize)
    us = np.random.default_rng(4).normal(scale=6.0, size=(3,) + gridsize + (len(shape),))
    fractions, min_det = metrics.fold_fractions(us, nodes)
    for t in range(3):
        det = _lattice_det(us[t], nodes)
        assert fractions[t] == pytest.approx(np.mean(det <= 0), abs=1e-12)
        assert min_det[t] == pytest.approx(det.min(), rel=1e-9)
    assert fractions.max() > 0  # strong random displacements do fold somewhere


def test_no_folds_for_a_translation_and_a_small_smooth_deformation():
    nodes = nodes_for_shape((64, 64), (5, 5))
    translation = np.zeros((5, 5, 2)) + [3.0, -2.0]
    gentle = np.random.default_rng(5).normal(scale=0.5, size=(5, 5, 2))
    fractions, min_det = metrics.fold_fractions(np.stack([translation, gentle]), nodes)
    np.testing.assert_array_equal(fractions, [0.0, 0.0])
    assert min_det[0] == pytest.approx(1.0, abs=1e-12)  # a translation has det 1 everywhere
    assert 0 < min_det[1] < 1.5


def test_a_deformation_that_overtakes_its_neighbour_folds():
    # node spacing 16 px along x; node 2 moves +12, node 3 moves -12: u_x falls by 24 over 16 px,
    # so 1 + du_x/dx < 0 between them: the middle of the image is folded over
    nodes = nodes_for_shape((65, 65), (5, 5))
    u = np.zeros((1, 5, 5, 2))
    u[0, :, 2, 1] = 12.0
    u[0, :, 3, 1] = -12.0
    fractions, min_det = metrics.fold_fractions(u, nodes)
    assert 0.05 < fractions[0] < 0.5
    assert min_det[0] < 0


def test_a_frame_without_displacement_has_no_fold_value():
    nodes = nodes_for_shape((32, 32), (3, 3))
    us = np.zeros((2, 3, 3, 2))
    us[1] = np.nan
    fractions, min_det = metrics.fold_fractions(us, nodes)
    assert fractions[0] == 0 and np.isnan(fractions[1]) and np.isnan(min_det[1])


def test_fold_fractions_do_not_depend_on_the_batch_size():
    nodes = nodes_for_shape((40, 40), (4, 4))
    us = np.random.default_rng(6).normal(scale=5.0, size=(7, 4, 4, 2))
    whole = metrics.fold_fractions(us, nodes)
    one_by_one = metrics.fold_fractions(us, nodes, max_batch_bytes=1)
    np.testing.assert_array_equal(whole[0], one_by_one[0])
    np.testing.assert_allclose(whole[1], one_by_one[1], rtol=1e-12)


# --- bound, largest displacements, summaries -----------------------------------------------------

def test_at_bound_flags_exactly_the_components_near_maxshift():
    us = np.zeros((3, 2, 2, 2))
    us[0, 1, 0] = [7.45, 0.0]     # maxshift 8 along y: the optimiser's limit is 7.4999
    us[1, 0, 1] = [0.0, -3.9]     # maxshift 4 along x, negative side
    us[2, 1, 1] = [7.3, 3.3]      # inside on both axes
    hit = metrics.at_bound(us, (8, 4))
    expected = np.zeros((3, 2, 2), dtype=bool)
    expected[0, 1, 0] = expected[1, 0, 1] = True
    np.testing.assert_array_equal(hit, expected)
    assert metrics.at_bound(us, (8, 4), tolerance=0.8)[2, 1, 1]  # within 0.8 of 4 on x
    with pytest.raises(ValueError, match="maxshift"):
        metrics.at_bound(us, (8, 4, 4))


def test_at_bound_ignores_missing_frames():
    us = np.full((1, 2, 2, 2), np.nan)
    assert not metrics.at_bound(us, (4, 4)).any()


def test_largest_displacements_lists_the_frames_in_order():
    us = np.zeros((5, 3, 3, 2))
    us[1, 2, 0] = [3.0, 4.0]      # |u| = 5
    us[3, 0, 1] = [0.0, -6.0]     # |u| = 6
    us[4] = np.nan                # failed frame: never listed
    top = metrics.largest_displacements(us, k=2)
    assert [item["position"] for item in top] == [3, 1]
    assert top[0]["max_abs_u"] == pytest.approx(6.0)
    assert top[0]["node"] == [0, 1] and top[0]["u"] == [0.0, -6.0]
    assert top[1]["node"] == [2, 0]
    assert len(metrics.largest_displacements(us, k=10)) == 4


def test_summarize_pairs():
    before = [0.5, 0.6, np.nan, 0.9]
    after = [0.9, 0.95, 0.99, 0.8]
    s = metrics.summarize_pairs(before, after)
    assert s["median_before"] == pytest.approx(0.6)
    assert s["median_after"] == pytest.approx(np.median(after))
    assert s["median_change"] == pytest.approx(np.median([0.4, 0.35, -0.1]))
    assert s["improved_fraction"] == pytest.approx(2 / 3)
    assert s["count"] == 3
    empty = metrics.summarize_pairs([np.nan], [np.nan])
    assert empty["count"] == 0 and np.isnan(empty["median_change"])
