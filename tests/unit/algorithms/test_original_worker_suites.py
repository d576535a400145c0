"""Ports of RegisterWorkerApertures' ``apertured1.jl`` and BlockRegistration's ``gen2d.jl`` + cookbook.

The originals use the cameraman image; we use the synthetic two-photon texture (a real image is
not shipped with the package). Deformations are random and smooth, as in the originals: a
coarse grid of normally distributed node displacements, interpolated and applied with ``warp``.
"""
import numpy as np
import pytest

import blockreg as br
from blockreg.reg.deformation import nodes_for_shape
from blockreg.synthetic import make_texture

pytestmark = pytest.mark.slow


def _random_deformation(shape, gridsize, amplitude, rng):
    return br.GridDeformation(amplitude * rng.standard_normal(tuple(gridsize) + (len(shape),)),
                              nodes_for_shape(shape, gridsize))


def _mismatch(fixed, moving):
    num, denom = br.reg.mismatch_zeroshift(fixed, moving, normalization="pixels")
    return num / denom


@pytest.mark.parametrize("overlap_fraction", [0.0, 0.3])
def test_apertured1_fine_grid_auto_lambda_improves(overlap_fraction):
    # apertured1.jl: a 4x4 random deformation of amplitude 10, crop 30, a 17x17 aperture grid and
    # auto-lambda over (1e-6, 10), with and without 30 % overlap: the warped frame must match the
    # fixed image better than the raw frame.
    rng = np.random.default_rng(1)
    image = 1000 * make_texture((300, 300), rng)
    phi_true = _random_deformation(image.shape, (4, 4), 10.0, rng)
    crop = (slice(30, -30), slice(30, -30))
    fixed, moving = image[crop], br.warp(image, phi_true)[crop]
    gridsize = (17, 17)
    width = br.reg.default_aperture_width(fixed.shape, gridsize)
    overlap = tuple(overlap_fraction * w for w in width)
    alg = br.Apertures(fixed, nodes_for_shape(fixed.shape, gridsize), (20, 20), (1e-6, 10),
                       overlap=overlap)
    out = alg.run_frame(moving, 0, ("u", "warped", "lambda", "datapenalty"))
    assert np.isfinite(out["u"]).all()
    assert 1e-6 <= out["lambda"] <= 10
    assert _mismatch(fixed, out["warped"]) < _mismatch(fixed, moving)


def test_gen2d_cookbook_auto_lambda_penalties_are_small():
    # gen2d.jl + the cookbook doctest: a 512x512 image trimmed by 50, 11 frames deformed on a 3x3
    # grid with amplitude 10 (seed 123), registered on a 3x3 grid with auto-lambda; every frame's
    # final penalty (mean squared intensity difference, intensities in [0, 1]) must be below 0.03, and every warped frame must improve on the raw one.
    rng = np.random.default_rng(123)
    image = make_texture((512, 512), rng)   # values in [0, 1], like the original's Gray image
    trim = (slice(50, -50), slice(50, -50))
    fixed = image[trim]
    gridsize = (3, 3)
    alg = br.Apertures(fixed, nodes_for_shape(fixed.shape, gridsize), (30, 30), (1e-6, 1))
    penalties = []
    for t in range(11):
        moving = br.warp(image, _random_deformation(image.shape, gridsize, 10.0, rng))[trim]
        out = alg.run_frame(moving, t, ("mismatch", "warped"))
        penalties.append(out["mismatch"])
        assert _mismatch(fixed, out["warped"]) < _mismatch(fixed, moving), f"frame {t}"
    assert max(penalties) < 0.03, penalties
