"""Tests of blockreg.reg.rigid.optimize_rigid on a known rigid motion of a smooth texture."""
import math

import numpy as np
import pytest
from scipy import ndimage

from blockreg.reg.rigid import optimize_rigid
from helpers.rigid_motion import rigidly_moved, rotation_2d


def smooth_texture(shape, seed=0, sigma=3.0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), sigma) * 10 + 5


def test_optimize_rigid_recovers_rotation_and_translation():
    fixed = smooth_texture((64, 72))
    theta = np.deg2rad(6.0)
    A_true = rotation_2d(theta)
    center = (np.array(fixed.shape) - 1) / 2
    t_true = np.array([2.4, -3.3])
    b_true = center + t_true - A_true @ center
    moving = rigidly_moved(fixed, A_true, b_true)

    A, b, mismatch = optimize_rigid(fixed, moving, maxshift=(6, 6), maxrot=0.5)
    assert math.atan2(A[1, 0], A[0, 0]) == pytest.approx(theta, abs=2e-3)
    np.testing.assert_allclose(A @ center + b, A_true @ center + b_true, atol=0.05)
    np.testing.assert_allclose(A.T @ A, np.eye(2), atol=1e-12)
    assert mismatch < 1e-3
    # the unregistered images (translation only, no rotation) are clearly worse
    _, _, start_mismatch = optimize_rigid(
        fixed, moving, maxshift=(6, 6), maxrot=0.5, tform0=(np.eye(2), t_true), atol=1e9
    )
    assert start_mismatch > 10 * mismatch


def test_optimize_rigid_keeps_a_perfect_start():
    fixed = smooth_texture((40, 40), seed=1)
    A, b, mismatch = optimize_rigid(fixed, fixed, maxshift=3, tform0=(np.eye(2), np.zeros(2)))
    assert mismatch < 1e-10
    np.testing.assert_allclose(b, 0, atol=1e-4)


def test_optimize_rigid_rejects_bad_input():
    with pytest.raises(ValueError, match="fixed"):
        optimize_rigid(np.zeros(5), np.zeros(5), maxshift=1)
    with pytest.raises(ValueError, match="moving"):
        optimize_rigid(np.zeros((5, 5)), np.zeros((5, 5, 5)), maxshift=1)
    with pytest.raises(ValueError, match="tform0"):
        optimize_rigid(np.ones((5, 5)), np.ones((5, 5)), maxshift=1, tform0=(np.eye(3), np.zeros(3)))


def test_optimize_rigid_recovers_3d_rotation_vector():
    from scipy.spatial.transform import Rotation

    fixed = smooth_texture((16, 24, 24), seed=2, sigma=2.5)
    rotvec = np.array([0.03, -0.05, 0.04])
    A_true = Rotation.from_rotvec(rotvec).as_matrix()
    center = (np.array(fixed.shape) - 1) / 2
    b_true = center + np.array([1.3, -2.2, 0.7]) - A_true @ center
    moving = rigidly_moved(fixed, A_true, b_true)
    A, b, mismatch = optimize_rigid(fixed, moving, maxshift=4, maxrot=0.3)
    np.testing.assert_allclose(Rotation.from_matrix(A).as_rotvec(), rotvec, atol=3e-3)
    np.testing.assert_allclose(A @ center + b, A_true @ center + b_true, atol=0.05)
    assert mismatch < 1e-4
