"""The registration on "device" arrays without a device: the strict CuPy stand-in.

``helpers.strict_cupy`` replaces CuPy with NumPy-backed arrays that refuse NumPy (implicit
conversion, NumPy functions, host arrays mixed in) and count every bus crossing.  A whole frame of
:class:`blockreg.Apertures` (2-D and 3-D, one and two passes, warped outputs, NaN pixels) must run
through it, give the CPU's result, and cross the bus only as budgeted below.  The broken variants
at the end show that the test catches a host round trip introduced in any stage.
"""
import numpy as np
import pytest

import blockreg
from blockreg import _backend
from blockreg.synthetic import make_movie
from helpers import strict_cupy

# What one frame may move across the bus once the job's constants are on the device.
#   h2d: the raw frame, plus the node displacements of every dense field built on the device
#        (the second pass's warp and the output warp, one each);
#   d2h: per pass the fits' centres and curvatures (cs, Qs: gridsize x N(N+1) numbers) and the
#        interpolated mismatch for the host optimiser (gridsize x 2 x (2m+1)^N: the second pass
#        searches only refine_maxshift), plus one copy per monitored image;
#   scalar: the NaN checks that pick a code path (frame, preprocess, mismatch, warp) and the
#        preprocessing's mean.
BUDGET = {
    # (passes, images monitored): (h2d, d2h, max scalar reads)
    (1, 0): (1, 3, 4),
    (1, 1): (2, 4, 5),
    (2, 1): (3, 7, 8),
}


@pytest.fixture
def cp(monkeypatch):
    """The stand-in installed as ``cupy``, with an empty device-constant cache before and after."""
    module = strict_cupy.install(monkeypatch)
    _backend.clear_device_constants()
    strict_cupy.reset_transfers()
    yield module
    _backend.clear_device_constants()


def _case(ndim, seed=1):
    if ndim == 2:
        shape, grid, maxshift, motion = (64, 72), (4, 4), (5, 5), dict(max_translation=3.0,
                                                                     max_local=1.0)
        pp = blockreg.PreprocessSNF(bias=100.0, sigma_lp=0.0, sigma_hp=10.0)
    else:
        shape, grid, maxshift, motion = (10, 36, 40), (2, 3, 3), (2, 4, 4), dict(
            max_translation=(1.0, 2.0, 2.0), max_local=(0.5, 1.0, 1.0))
        pp = blockreg.PreprocessSNF(bias=100.0, sigma_lp=0.0, sigma_hp=(2.0, 6.0, 6.0))
    movie, fixed, _ = make_movie(shape, 3, seed=seed, **motion)
    nodes = tuple(np.linspace(0.0, n - 1.0, g) for n, g in zip(shape, grid))
    return movie, pp(fixed), nodes, maxshift, pp


def _register(fixed, nodes, maxshift, pp, movie, wanted, cp=None, **kw):
    """``u`` and the wanted images of every frame; transfers of the last frame (after a warm-up)."""
    if cp is not None:
        fixed = cp.asarray(fixed)
    alg = blockreg.Apertures(fixed, nodes, maxshift, 1e-3, preprocess=pp, **kw)
    alg.prepare()
    outs = []
    for t, frame in enumerate(movie):
        if cp is not None:
            strict_cupy.reset_transfers()
            frame = cp.asarray(frame)
        outs.append(alg.run_frame(frame, t, wanted))
    return outs, dict(strict_cupy.transfers)


def _check_budget(transfers, passes, images):
    h2d, d2h, scalars = BUDGET[(passes, images)]
    got = (transfers.get("h2d", 0), transfers.get("d2h", 0))
    assert got == (h2d, d2h), f"per frame (h2d, d2h) = {got}, budget {(h2d, d2h)}: {transfers}"
    assert transfers.get("scalar", 0) <= scalars, transfers


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("passes,wanted", [(1, ("u", "mismatch")), (1, ("u", "warped0")),
                                           (2, ("u", "warped"))])
def test_a_frame_runs_on_the_device_within_its_transfer_budget(cp, ndim, passes, wanted):
    movie, fixed, nodes, maxshift, pp = _case(ndim)
    host, _ = _register(fixed, nodes, maxshift, pp, movie, wanted, passes=passes)
    device, transfers = _register(fixed, nodes, maxshift, pp, movie, wanted, cp=cp, passes=passes)
    for h, d in zip(host, device):
        for name in wanted:
            assert isinstance(d[name], (np.ndarray, float))      # outputs come back to the host
            np.testing.assert_allclose(d[name], h[name], rtol=1e-6, atol=1e-9, equal_nan=True)
    images = sum(name.startswith("warped") for name in wanted)
    _check_budget(transfers, passes, images)


def test_frames_with_missing_pixels_and_intensity_normalization(cp):
    movie, fixed, nodes, maxshift, pp = _case(2, seed=4)
    movie = movie.astype(np.float32)
    movie[:, 5:9, 10:30] = np.nan
    fixed = fixed.copy()
    fixed[40:44, :6] = np.nan
    kw = dict(normalization="intensity", passes=2)
    host, _ = _register(fixed, nodes, maxshift, pp, movie, ("u", "warped"), **kw)
    device, transfers = _register(fixed, nodes, maxshift, pp, movie, ("u", "warped"), cp=cp, **kw)
    for h, d in zip(host, device):
        np.testing.assert_allclose(d["u"], h["u"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(d["warped"], h["warped"], rtol=1e-6, equal_nan=True)
    _check_budget(transfers, 2, 1)


def test_the_stand_in_refuses_what_cupy_refuses(cp):
    a = cp.asarray(np.arange(6.0))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="NumPy function"):
        np.sum(a)
    with pytest.raises(TypeError):
        np.add(a, 1)
    with pytest.raises(TypeError, match="NumPy array"):
        a + np.ones(6)
    assert float((a * 2).sum()) == 30.0 and strict_cupy.transfers["scalar"] == 1
    assert _backend.array_module(a) is cp and _backend.is_cupy(cp)
    np.testing.assert_array_equal(_backend.to_host(a), np.arange(6.0))
    assert strict_cupy.transfers["h2d"] == 1 and strict_cupy.transfers["d2h"] == 1


# --- the test must fail when a stage gets a host round trip ---------------------------------------

def _break(monkeypatch, stage, how):
    """Make ``stage`` take its device result through the host: with a NumPy function (what CuPy
    refuses) or explicitly (legal, but two more transfers than the budget)."""
    from blockreg.reg import fit, mismatch_plan, optimize, warp

    owner, name, pick = {
        "mismatch": (mismatch_plan.MismatchPlan, "compute", lambda r: r),
        "fit": (fit, "mms_to_fit", lambda r: r[1]),
        "optimise": (optimize, "fixed_lambda", None),
        "warp": (warp, "warp", lambda r: r),
    }[stage]
    real = getattr(owner, name)

    def through_host(x):
        if how == "numpy":
            return np.ascontiguousarray(x)            # refused: a NumPy function on device data
        return _backend.to_device(_backend.to_host(x), strict_cupy)

    if stage == "optimise":
        def broken(cs, Qs, nodes, ap, mmis, **kw):
            return real(cs, Qs, nodes, ap, through_host(mmis), **kw)
    elif stage == "fit":
        def broken(*a, **kw):
            E, cs, Qs = real(*a, **kw)
            return E, through_host(cs), Qs
    else:
        def broken(*a, **kw):
            return through_host(real(*a, **kw))
    monkeypatch.setattr(owner, name, broken)


@pytest.mark.parametrize("how", ["numpy", "explicit"])
@pytest.mark.parametrize("stage", ["mismatch", "fit", "optimise", "warp"])
def test_a_host_round_trip_in_any_stage_is_caught(cp, monkeypatch, stage, how):
    movie, fixed, nodes, maxshift, pp = _case(2)
    _break(monkeypatch, stage, how)
    with pytest.raises((TypeError, AssertionError)) as info:
        _, transfers = _register(fixed, nodes, maxshift, pp, movie[:2], ("u", "warped"), cp=cp)
        _check_budget(transfers, 2, 1)
    if how == "numpy":
        assert isinstance(info.value, strict_cupy.HostRoundTrip)
    else:
        assert "budget" in str(info.value)


def test_a_large_interpolant_stays_on_the_device(cp, monkeypatch):
    # Above DEVICE_PENALTY_BYTES (the 3-D production size) the optimiser's penalty runs on the
    # device: each step moves u up and its gradient down, never the interpolated mismatch.
    from blockreg.reg import optimize

    monkeypatch.setattr(optimize, "DEVICE_PENALTY_BYTES", 0)
    movie, fixed, nodes, maxshift, pp = _case(3)
    host, _ = _register(fixed, nodes, maxshift, pp, movie, ("u",), passes=1)
    device, transfers = _register(fixed, nodes, maxshift, pp, movie, ("u",), cp=cp, passes=1)
    for h, d in zip(host, device):
        np.testing.assert_allclose(d["u"], h["u"], rtol=1e-6, atol=1e-9)
    u_bytes = host[0]["u"].nbytes
    # per step: u up, gradient down; the fits (cs, Qs) are the largest arrays that come down
    assert transfers["h2d"] == transfers["d2h"] - 2 + 1 > 3
    assert transfers["d2h_bytes"] <= 2 * u_bytes * transfers["d2h"] + host[0]["u"].size * 3 * 8
