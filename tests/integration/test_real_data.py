"""Registration of the real recordings in ../shared/data (skipped where that folder is absent).

The true motion of real data is unknown, so these check what a user checks: the registered frames
agree better with the reference than the raw ones (normalised cross-correlation, NCC, over the
inner region), and the recovered displacements are of the size the data's README reports.
"""

import numpy as np
import pytest
from scipy import ndimage as ndi

import blockreg as br
from blockreg.reg.deformation import nodes_for_shape
from helpers.paths import SHARED_DATA

DATA = SHARED_DATA
tifffile = pytest.importorskip("tifffile")


def _need(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"needs {path}")
    return path


def _ncc(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_ciatah_nonrigid_pair_improves():
    # In-vivo spinal cord, clearly non-rigid (local displacements up to ~17 px, mostly along y);
    # the data's README measured NCC 0.959 -> 0.972 (inner region) after TV-L1 optical flow.
    # blockreg must do at least as well.
    ref, template = tifffile.imread(_need("ciatah_spinal_ref_template_pair.tif")).astype(np.float32)
    gridsize = (6, 8)
    pp = br.PreprocessSNF(bias=0, sigma_lp=0, sigma_hp=(40, 40))
    alg = br.Apertures(pp(ref), nodes_for_shape(ref.shape, gridsize), (20, 20), 1e-3, preprocess=pp)
    out = br.register(template[None], alg, monitor=("u", "warped0"))
    # NCC of the images smoothed with sigma 2 px, as the README's figures (raw 0.959): the raw
    # pixels are so noisy that interpolation's smoothing alone would raise their NCC (checked by
    # the control, a pure (0.5, 0.5) px shift of the template).
    def smooth_ncc(a, b):
        inner = (slice(40, -40), slice(40, -40))
        a, b = (ndi.gaussian_filter(np.nan_to_num(v), 2.0)[inner] for v in (a, b))
        return _ncc(a, b)

    before = smooth_ncc(ref, template)
    control = smooth_ncc(ref, br.warp(template, np.full(gridsize + (2,), 0.5), ref.shape))
    after = smooth_ncc(ref, out["warped0"][0])
    assert abs(before - 0.959) < 0.005 and control < before + 0.002, (before, control)
    assert after > 0.972, (before, after)                # the README's TV-L1 optical flow result
    assert 3 < np.abs(out["u"][0]).max() < 25            # real non-rigid motion, inside maxshift


def test_sima_ca1_small_real_motion():
    # 2-photon CA1, 20 very photon-limited frames. The data's README (phase correlation against
    # the leave-one-out mean) reports frame 0 off by about -6.7 px in x and a slow x drift from
    # about -1 to +1.4 px; its sign is "the shift that registers the frame", ours the displacement
    # u with moving(x) = fixed(x - u), so ours should be about +6.7 and drift the other way.
    movie = tifffile.imread(_need("sima_ca1_2p_tyx.tif"))
    pp = br.PreprocessSNF(bias=0, sigma_lp=(1, 1), sigma_hp=(20, 20))
    fixed = pp(np.median(movie, axis=0))
    alg = br.Apertures(fixed, nodes_for_shape(fixed.shape, (3, 5)), (8, 8), 1e-2, preprocess=pp)
    u = br.register(movie, alg, monitor=("u",))["u"]
    x = np.median(u[..., 1], axis=(1, 2))
    assert np.isfinite(u).all()
    assert 5.0 < x[0] < 8.5, x
    assert np.median(x[1:8]) - np.median(x[13:]) > 0.8, x
