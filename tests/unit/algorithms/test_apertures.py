"""The Algorithm interface and the Apertures algorithm: parameters, context, outputs, validation."""
import json
import pickle

import numpy as np
import pytest
from scipy import ndimage as ndi

import blockreg.reg.warp as warp_module
from blockreg.algorithms.apertures import Apertures
from blockreg.algorithms.base import Algorithm, ArrayDecl
from blockreg.errors import ParameterError
from blockreg.reg.deformation import GridDeformation, nodes_for_shape
from blockreg.reg.preprocess import PreprocessSNF


real_warp = warp_module.warp


def _texture(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 2.0) * 1000.0 + 100.0


@pytest.fixture(scope="module")
def scene():
    big = _texture((100, 110), seed=3)
    fixed = big[15:75, 15:85]
    d = (2, -1)
    moving = big[15 - d[0]:75 - d[0], 15 - d[1]:85 - d[1]]      # moving(x) = fixed(x - d)
    return fixed, moving, np.array(d, dtype=float)


def _alg(fixed, gridsize=(3, 4), maxshift=(5, 5), lam=1e-3, **kw):
    return Apertures(fixed, nodes_for_shape(fixed.shape, gridsize), maxshift, lam, **kw)


def test_arraydecl_normalises():
    assert ArrayDecl([3, np.int64(2)], "f8") == ArrayDecl((3, 2), "float64")
    with pytest.raises(TypeError):
        Algorithm()  # abstract


def test_original_thresh_is_available_and_explicit_thresh_is_kept():
    # RegisterWorkerApertures: (0.5^2 / 25) * length(fixed) for :pixels, * sum(fixed^2) for :intensity
    fixed = _texture((40, 50))
    assert Apertures.default_thresh(fixed, (5, 5)) == pytest.approx(0.25 / 25 * fixed.size)
    assert Apertures.default_thresh(fixed, (5, 5), "intensity") == pytest.approx(
        0.25 / 25 * np.sum(fixed.astype(np.float64) ** 2))
    vol = _texture((10, 12, 14))
    assert Apertures.default_thresh(vol, (2, 2, 2)) == pytest.approx(0.125 / 8 * vol.size)
    assert np.all(_alg(fixed, gridsize=(5, 5), thresh=17.0).thresh == 17.0)
    with pytest.raises(ValueError, match="normalization"):
        _alg(fixed, normalization="bogus")
    with pytest.raises(ValueError, match="thresh"):
        _alg(fixed, gridsize=(5, 5), thresh=np.ones((4, 4)))


def test_default_thresh_is_per_aperture():
    # Counted independently: each aperture's pixels inside the image, times thresh_fac.
    fixed = _texture((41, 51))
    fixed[3, 4] = np.nan
    alg = _alg(fixed, gridsize=(5, 6), thresh_fac=0.3)
    w = (40 / 4, 50 / 5)
    expected = np.empty((5, 6))
    for i in range(5):
        for j in range(6):
            lo = [int(np.ceil(c - ww / 2)) for c, ww in zip((i * w[0], j * w[1]), w)]
            hi = [int(np.ceil(c + ww / 2)) for c, ww in zip((i * w[0], j * w[1]), w)]
            block = fixed[max(lo[0], 0):min(hi[0], 41), max(lo[1], 0):min(hi[1], 51)]
            expected[i, j] = 0.3 * np.isfinite(block).sum()
    np.testing.assert_allclose(alg.thresh, expected)
    intensity = _alg(fixed, gridsize=(5, 6), normalization="intensity")
    assert intensity.thresh[2, 3] == pytest.approx(
        0.25 * 2 * np.sum(fixed[15:25, 25:35].astype(np.float64) ** 2))


def test_corner_aperture_keeps_its_true_shift_when_motion_leaves_the_image():
    # A translation pointing out of the image at corner (7, 0): the quarter aperture there overlaps
    # the moving frame over fewer pixels than the original's global threshold, so with that
    # threshold its fit cannot see the true minimum; the per-aperture default can.
    big = _texture((300, 300), seed=7)
    d = (7, -9)
    fixed = big[40:240, 40:240]
    moving = big[40 - d[0]:240 - d[0], 40 - d[1]:240 - d[1]]    # moving(x) = fixed(x - d)
    kw = dict(gridsize=(8, 8), maxshift=(15, 15))
    corner = (7, 0)
    u = _alg(fixed, **kw).run_frame(moving, 0, ("u",))["u"]
    assert np.abs(u[corner] - d).max() < 0.5
    assert np.abs(u - d).max() < 0.5
    original = _alg(fixed, thresh=Apertures.default_thresh(fixed, (8, 8)), **kw)
    u_original = original.run_frame(moving, 0, ("u",))["u"]
    assert np.abs(u_original[corner] - d).max() > 2     # the failure this default avoids


def test_declare_describe_and_only_wanted(scene):
    fixed, moving, d = scene
    pp = PreprocessSNF(bias=50, sigma_lp=0, sigma_hp=(10, 10))
    alg = _alg(pp(fixed), preprocess=pp)
    decl = alg.declare()
    assert decl["u"] == ArrayDecl((3, 4, 2), "float64")
    assert decl["warped"] == ArrayDecl(fixed.shape, "float32")
    assert "lambdas" not in decl
    desc = alg.describe()
    json.dumps(desc, allow_nan=True)
    assert desc["preprocess"] == pp.to_dict() and desc["gridsize"] == [3, 4] and desc["lam"] == 1e-3
    out = alg.run_frame(moving, 0, ("u",))
    assert set(out) == {"u"} and out["u"].shape == (3, 4, 2) and out["u"].dtype == np.float64
    with pytest.raises(ValueError, match="monitor.*'nope'"):
        alg.run_frame(moving, 0, ("u", "nope"))


def test_translation_and_warped_outputs_agree_with_warp(scene):
    fixed, moving, d = scene
    pp = PreprocessSNF(bias=50, sigma_lp=0, sigma_hp=(10, 10))
    alg = _alg(pp(fixed), preprocess=pp)
    out = alg.run_frame(moving, 3, ("u", "mismatch", "lambda", "warped", "warped0"))
    assert np.abs(out["u"][1:-1, 1:-1] - d).max() < 0.5
    assert out["lambda"] == 1e-3 and np.isfinite(out["mismatch"])
    phi = GridDeformation(out["u"], alg.nodes)
    np.testing.assert_allclose(out["warped"], warp_module.warp(pp(moving), phi), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(out["warped0"], warp_module.warp(moving.astype(np.float32), phi),
                               rtol=1e-6, equal_nan=True)
    assert out["warped"].dtype == np.float32 and out["warped0"].dtype == np.float32


def test_warping_skipped_unless_asked(scene, monkeypatch):
    fixed, moving, d = scene
    calls = []
    real = warp_module.warp
    monkeypatch.setattr(warp_module, "warp", lambda *a, **k: calls.append(1) or real(*a, **k))
    alg = _alg(fixed, passes=1)        # (a second pass warps the frame for itself)
    alg.run_frame(moving, 0, ("u", "mismatch"))
    assert calls == []
    alg.run_frame(moving, 0, ("warped",))
    assert len(calls) == 1


def test_warped_and_warped0_share_one_dense_field(scene, monkeypatch):
    # the dense field is the expensive part of a warp: build it once per frame, not per image
    fixed, moving, d = scene
    calls = []
    real = GridDeformation.field
    monkeypatch.setattr(GridDeformation, "field",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    out = _alg(fixed, passes=1).run_frame(moving.astype(np.float32), 0, ("u", "warped", "warped0"))
    assert len(calls) == 1
    phi = GridDeformation(out["u"], _alg(fixed).nodes)
    np.testing.assert_array_equal(out["warped0"], out["warped"])
    np.testing.assert_allclose(out["warped"], real_warp(moving.astype(np.float32), phi),
                               rtol=1e-6, equal_nan=True)


def test_prepare_idempotent_close_reprepare_and_pickle(scene):
    fixed, moving, d = scene
    alg = _alg(fixed)
    alg.prepare()
    ctx = alg._context
    alg.prepare()
    assert alg._context is ctx
    first = alg.run_frame(moving, 0, ("u",))["u"]
    alg.close()
    assert alg._context is None
    np.testing.assert_array_equal(alg.run_frame(moving, 0, ("u",))["u"], first)
    clone = pickle.loads(pickle.dumps(alg))
    assert clone._context is None                     # the context never travels
    np.testing.assert_array_equal(clone.run_frame(moving, 0, ("u",))["u"], first)


def test_auto_lambda_outputs(scene):
    fixed, moving, d = scene
    alg = _alg(fixed, lam=(1e-4, 1.0))
    decl = alg.declare()
    out = alg.run_frame(moving, 0, ("u", "lambda", "lambdas", "datapenalty", "sigmoid_quality"))
    assert out["lambdas"].shape == decl["lambdas"].shape == out["datapenalty"].shape
    np.testing.assert_allclose(out["lambdas"], 1e-4 * 2.0 ** np.arange(decl["lambdas"].shape[0]))
    assert out["lambda"] in out["lambdas"]
    assert np.abs(out["u"][1:-1, 1:-1] - d).max() < 0.5


def test_two_passes_and_correct_bias_run(scene):
    fixed, moving, d = scene
    for kw in (dict(passes=2), dict(correct_bias=True)):
        out = _alg(fixed, **kw).run_frame(moving, 0, ("u",))
        assert np.abs(out["u"][1:-1, 1:-1] - d).max() < 0.5


@pytest.mark.parametrize("kw,field", [
    (dict(gridsize=(70, 4)), "gridsize.0"),
    (dict(maxshift=(5, 70)), "maxshift.1"),
    (dict(maxshift=(0, 5)), "maxshift"),
    (dict(maxshift=(5, 5, 5)), "maxshift"),
    (dict(lam=-1.0), "lam"),
    (dict(lam=(1.0, 0.1)), "lam"),
    (dict(lam=(0.1, 0.1)), "lam"),
    (dict(lam=(-1.0, 1.0)), "lam"),
    (dict(passes=3), "passes"),
    (dict(overlap=-1), "overlap"),
    (dict(overlap=(0, 40)), "overlap.1"),
    (dict(preprocess=5), "preprocess"),
])
def test_parameter_validation(scene, kw, field):
    # the constructor owns these rules; callers (spec checks, CLI, API) translate .field
    with pytest.raises(ParameterError) as info:
        _alg(scene[0], **kw)
    assert info.value.field == field and info.value.problem
    assert isinstance(info.value, ValueError)


def test_nodes_must_span_the_corners(scene):
    fixed = scene[0]
    nodes = nodes_for_shape(fixed.shape, (3, 4))
    shifted = (nodes[0] + 1, nodes[1])
    with pytest.raises(ValueError, match="nodes.*corner-spanning"):
        Apertures(fixed, shifted, (5, 5), 1e-3)
    with pytest.raises(ValueError, match="fixed.*finite"):
        Apertures(np.full(fixed.shape, np.nan), nodes, (5, 5), 1e-3)


def test_frame_validation(scene):
    fixed, moving, d = scene
    alg = _alg(fixed)
    with pytest.raises(ValueError, match="frame.*dimensions"):
        alg.run_frame(moving[None], 0, ("u",))
    with pytest.raises(ValueError, match="frame.*shape"):
        alg.run_frame(moving[:-1], 0, ("u",))
    with pytest.raises(ValueError, match="frame.*NaN"):
        alg.run_frame(np.full(fixed.shape, np.nan), 4, ("u",))


def test_blas_limited_to_one_thread_during_a_frame_also_after_pickling(scene, monkeypatch):
    # The prepared ThreadpoolController must cap BLAS as threadpool_limits did, also in a clone
    # that was pickled (as to a spawned worker) and prepared anew.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fixed, moving, _ = scene
    seen = []
    original = Apertures._run

    def spy(self, raw, t, wanted):
        blas = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]
        seen.append(blas)
        return original(self, raw, t, wanted)

    monkeypatch.setattr(Apertures, "_run", spy)
    alg = _alg(fixed)
    clone = pickle.loads(pickle.dumps(alg))
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):   # so that 1 is not a given
        u = alg.run_frame(moving, 0, ("u",))["u"]
        np.testing.assert_array_equal(clone.run_frame(moving, 0, ("u",))["u"], u)
        after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert all(n == 2 for n in after)                 # and the limit is lifted after the frame
    assert len(seen) == 2 and all(blas and all(n == 1 for n in blas) for blas in seen)


def test_overlap_wider_than_the_image_is_refused():
    fixed = _texture((40, 50))
    _alg(fixed, gridsize=(3, 3), overlap=(5, 12))                  # widths 30 and 48.5: fine
    with pytest.raises(ValueError, match="overlap"):
        _alg(fixed, gridsize=(3, 3), overlap=(5, 13))              # 51 px > 50


def test_every_normalization_check_names_the_argument(scene):
    from blockreg.reg.apertures import aperture_content

    fixed = scene[0]
    for call in (lambda: _alg(fixed, normalization="counts"),
                 lambda: Apertures.default_thresh(fixed, (3, 4), "counts"),
                 lambda: aperture_content(fixed, (3, 4), 0, "counts")):
        with pytest.raises(ValueError, match="normalization.*'intensity'.*'pixels'.*'counts'"):
            call()


@pytest.mark.parametrize("lam_range", [(1e-3, 1.6e-2), (1e-3, 1.7e-2), (3e-4, 1.0)])
def test_declared_ladder_length_is_the_searched_one(lam_range):
    from blockreg.reg.autolambda import _lambda_ladder

    lo, hi = lam_range
    expected = sum(1 for k in range(64) if lo * 2.0**k < hi * (1 - 1e-12))
    alg = Apertures(_texture((40, 44)), nodes_for_shape((40, 44), (3, 3)), (3, 3), lam_range)
    assert alg.nlambdas == len(_lambda_ladder(lam_range, "lam_range")) == expected
    assert alg.declare()["lambdas"].shape == (expected,)


@pytest.mark.parametrize("lam", [1e-3, (1e-4, 1e-1)])
def test_blas_is_limited_once_per_frame(scene, monkeypatch, lam):
    # the limit/restore walks every loaded library: once per frame, not once per solve
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fixed, moving, _ = scene
    alg = _alg(fixed, lam=lam)
    alg.prepare()
    calls = []
    real = threadpoolctl.ThreadpoolController.limit
    monkeypatch.setattr(threadpoolctl.ThreadpoolController, "limit",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    alg.run_frame(moving, 0, ("u",))
    assert len(calls) == 1
