"""Real CuPy against the CPU: every stage of a frame equal within float32 tolerance.

Skipped cleanly where CuPy or a CUDA device is missing (CI); ``benchmarks/gpu_check.sh`` runs it
on a GPU machine.  Without a device, ``test_device_transfers`` covers the same code on a strict
stand-in.
"""
import numpy as np
import pytest

import blockreg
from blockreg import reg
from blockreg.synthetic import make_movie
from helpers.gpu import cupy_or_skip

CASES = {
    2: dict(shape=(96, 104), grid=(4, 5), maxshift=(6, 6),
            motion=dict(max_translation=4.0, max_local=1.5), sigma_hp=12.0),
    3: dict(shape=(12, 48, 52), grid=(2, 3, 4), maxshift=(2, 5, 5),
            motion=dict(max_translation=(1.0, 3.0, 3.0), max_local=(0.5, 1.0, 1.0)),
            sigma_hp=(3.0, 8.0, 8.0)),
}


@pytest.fixture(scope="module")
def cp():
    return cupy_or_skip()


def _inputs(ndim, nan):
    c = CASES[ndim]
    movie, fixed, _ = make_movie(c["shape"], 2, seed=5, **c["motion"])
    pp = blockreg.PreprocessSNF(bias=100.0, sigma_lp=0.0, sigma_hp=c["sigma_hp"])
    fixed, moving = pp(fixed), movie[1].astype(np.float32)
    if nan:
        fixed = fixed.copy()
        fixed[(slice(0, 2),) * ndim] = np.nan
        moving[(slice(3, 6),) * ndim] = np.nan
    nodes = tuple(np.linspace(0.0, n - 1.0, g) for n, g in zip(c["shape"], c["grid"]))
    return fixed, moving, pp, nodes, c


def _close(device, host, rtol=2e-4, atol=1e-4):
    import cupy

    device = cupy.asnumpy(device) if isinstance(device, cupy.ndarray) else np.asarray(device)
    np.testing.assert_allclose(device, np.asarray(host), rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("normalization", ["pixels", "intensity"])
@pytest.mark.parametrize("nan", [False, True])
def test_mismatch_fits_and_interpolant_match_the_cpu(cp, ndim, normalization, nan):
    fixed, moving, pp, nodes, c = _inputs(ndim, nan)
    moving = pp(moving)
    plans = [reg.MismatchPlan(x, c["grid"], c["maxshift"], normalization=normalization)
             for x in (fixed, cp.asarray(fixed))]
    mms_h, mms_d = plans[0].compute(moving), plans[1].compute(cp.asarray(moving))
    assert isinstance(mms_d, cp.ndarray)
    scale = float(np.nanmax(np.abs(mms_h)))
    _close(mms_d, mms_h, atol=1e-5 * scale)
    thresh = 0.25 * np.nanmax(mms_h[..., 1, :, :] if ndim == 2 else mms_h[..., 1, :, :, :])
    for d, h in zip(reg.mms_to_fit(mms_d, thresh), reg.mms_to_fit(mms_h, thresh)):
        _close(d, h, rtol=1e-3, atol=1e-3)
    _close(reg.interpolate_mm(mms_d), reg.interpolate_mm(mms_h), atol=1e-5 * scale)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("normalization", ["pixels", "intensity"])
@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("nan", [False, True])
def test_u_and_warped_frames_match_the_cpu(cp, ndim, normalization, passes, nan):
    fixed, moving, pp, nodes, c = _inputs(ndim, nan)
    wanted = ("u", "mismatch", "warped", "warped0")
    outs = []
    for xp in (np, cp):
        alg = blockreg.Apertures(xp.asarray(fixed), nodes, c["maxshift"], 1e-3, preprocess=pp,
                                 normalization=normalization, passes=passes)
        outs.append(alg.run_frame(xp.asarray(moving), 0, wanted))
    host, device = outs
    # float32 FFTs in another order: u agrees to a few thousandths of a pixel
    np.testing.assert_allclose(device["u"], host["u"], atol=5e-3)
    assert device["mismatch"] == pytest.approx(host["mismatch"], rel=1e-3, abs=1e-6)
    for name in ("warped", "warped0"):
        assert isinstance(device[name], np.ndarray) and device[name].dtype == np.float32
        scale = float(np.nanmax(np.abs(host[name])))
        # NaN borders may differ by a pixel where a node moved by a rounding error
        assert (np.isnan(host[name]) == np.isnan(device[name])).mean() > 0.99
        finite = np.isfinite(host[name]) & np.isfinite(device[name])
        np.testing.assert_allclose(device[name][finite], host[name][finite], atol=5e-3 * scale)


def test_device_constants_are_freed_on_request(cp):
    from blockreg import _backend

    fixed, moving, pp, nodes, c = _inputs(2, False)
    alg = blockreg.Apertures(cp.asarray(fixed), nodes, c["maxshift"], 1e-3, preprocess=pp)
    alg.run_frame(cp.asarray(moving), 0, ("u",))
    assert _backend._CONSTANTS
    alg.close()
    _backend.clear_device_constants()
    assert not _backend._CONSTANTS
