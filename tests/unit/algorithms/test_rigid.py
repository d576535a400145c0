"""The Rigid frame algorithm: a known rotation + translation of a synthetic image is recovered."""
import pickle

import numpy as np
import pytest

from blockreg.algorithms.rigid import Rigid, affine_field, downsample2
from blockreg.errors import ParameterError
from blockreg.reg.deformation import tform_to_deformation
from blockreg.synthetic import make_texture
from helpers.rigid_motion import rigidly_moved, rotation_2d


@pytest.mark.parametrize("levels", [1, 2, None])
def test_rigid_recovers_a_known_rotation_and_translation(levels):
    fixed = make_texture((96, 104), np.random.default_rng(2)) * 100
    A_true = rotation_2d(np.deg2rad(4.0))
    centre = (np.array(fixed.shape) - 1) / 2
    b_true = centre + np.array([5.3, -7.6]) - A_true @ centre  # 9 px of translation about the centre
    moving = rigidly_moved(fixed, A_true, b_true)

    alg = Rigid(fixed, maxshift=12, maxrot=0.3, levels=levels)
    out = alg.run_frame(moving, 0, alg.declare())
    tform = out["tform"]
    assert tform.shape == (3, 3)
    np.testing.assert_array_equal(tform[2], [0, 0, 1])
    np.testing.assert_allclose(tform[:2, :2], A_true, atol=2e-3)
    np.testing.assert_allclose(tform[:2, 2], b_true, atol=0.1)
    assert out["mismatch"] < 1e-3
    # u is the transform on the node grid, like every algorithm's
    phi = tform_to_deformation(tform[:2, :2], tform[:2, 2], fixed.shape, alg.gridsize)
    np.testing.assert_allclose(out["u"], phi.u)
    # warped0 samples the frame at exactly A x + b: it is the fixed image where both exist, up to
    # linear interpolation of the texture (the frame was made with cubic splines)
    inner = (slice(12, -12), slice(12, -12))
    rms = np.sqrt(np.nanmean(((out["warped0"] - fixed)[inner]) ** 2))
    assert rms < 0.01 * np.ptp(fixed)
    assert rms < 0.1 * np.sqrt(np.nanmean(((moving - fixed)[inner]) ** 2))
    assert out["warped"].dtype == np.float32 and np.array_equal(out["warped"], out["warped0"], equal_nan=True)


def test_pyramid_levels_default_and_downsampling():
    assert Rigid(np.ones((300, 280)), 5).levels == 4
    assert Rigid(np.ones((64, 200)), 5).levels == 2
    assert Rigid(np.ones((24, 256, 256)), 5).levels == 1
    img = np.arange(20.0).reshape(4, 5)
    img[0, 0] = np.nan
    small = downsample2(img)
    np.testing.assert_allclose(small, [[(1 + 5 + 6) / 3, (2 + 3 + 7 + 8) / 4], [13, 15]])
    # the affine field samples exactly A x + b
    A, b = rotation_2d(0.1), np.array([1.5, -2.0])
    u = affine_field(A, b, (5, 6), dtype=np.float64)
    x = np.array([3.0, 4.0])
    np.testing.assert_allclose([u[0][3, 4], u[1][3, 4]], A @ x + b - x)


def test_rigid_pickles_without_its_pyramid_and_validates():
    fixed = make_texture((40, 40), np.random.default_rng(0))
    alg = Rigid(fixed, 3, levels=1)
    alg.prepare()
    clone = pickle.loads(pickle.dumps(alg))
    assert clone._context is None
    assert clone.describe()["algorithm"] == "Rigid"
    for kwargs, field in [(dict(maxshift=-1), "maxshift"), (dict(maxshift=3, levels=0), "levels"),
                          (dict(maxshift=3, levels=5), "levels"), (dict(maxshift=3, maxrot=(1, 2)), "maxrot"),
                          (dict(maxshift=3, nodes=(np.arange(3.0), np.arange(3.0))), "nodes")]:
        with pytest.raises(ParameterError) as info:
            Rigid(fixed, **kwargs)
        assert info.value.field == field
    with pytest.raises(ParameterError, match="fixed"):
        Rigid(np.ones(10), 3)
