"""AperturesMismatch, the first stage of two-stage registration (RegisterWorkerAperturesMismatch's
``overall.jl`` ported: bright patterns moved by integer shifts, reference §8)."""
import pickle

import numpy as np
import pytest

from blockreg.algorithms.apertures_mismatch import AperturesMismatch
from blockreg.errors import ParameterError
from blockreg.reg.deformation import nodes_for_shape
from blockreg.reg.mismatch import mismatch_apertures
from blockreg.reg.penalty import data_penalty, interpolate_mm
from blockreg.reg.preprocess import PreprocessSNF

CASES = [((150,), (6,), (4,)), ((150, 140), (6, 5), (4, 3)), ((150, 140, 21), (6, 5, 2), (4, 3, 3))]


def bright_patterns(shape, gridsize, maxshift, nframes, rng):
    """A uniform background with one random pattern on every node; each frame moves every pattern
    by its own integer shift ``|d| < maxshift`` (the original's test image)."""
    N = len(shape)
    nodes = nodes_for_shape(shape, gridsize)
    # the original's patterns are 11 px wide in x, y and 3 planes in z; here 5 planes (and 21
    # instead of 15 planes) so that a z shift of maxshift cannot move the whole pattern of an
    # edge aperture out of the compared region (see the inward rule below)
    half = tuple(5 if a < 2 else 2 for a in range(N))
    pattern = rng.random(tuple(2 * h + 1 for h in half)) + 1.0

    def draw(shifts):
        img = np.ones(shape)
        for k in np.ndindex(gridsize):
            centre = [int(round(nodes[a][k[a]])) + int(shifts[k][a]) for a in range(N)]
            dst, src = [], []
            for a in range(N):
                lo, hi = centre[a] - half[a], centre[a] + half[a] + 1
                dst.append(slice(max(lo, 0), min(hi, shape[a])))
                src.append(slice(max(lo, 0) - lo, (2 * half[a] + 1) - (hi - min(hi, shape[a]))))
            img[tuple(dst)] = pattern[tuple(src)]
        return img

    fixed = draw(np.zeros(gridsize + (N,), dtype=int))
    displacements = np.stack([
        np.stack([rng.integers(-m + 1, m, gridsize) for m in maxshift], axis=-1) for _ in range(nframes)
    ])
    # The original's frame is a view into a padded array, so its edge patterns have valid data
    # beyond the frame.  Here nothing lies beyond the frame: a pattern on an edge node that moves
    # outwards is mostly cut off and can match the uniform background at several shifts.  Edge
    # patterns therefore move inwards (or stay).
    for a, g in enumerate(gridsize):
        index = (slice(None),) + (slice(None),) * a
        first, last = index + (0, Ellipsis, a), index + (g - 1, Ellipsis, a)
        displacements[first] = np.abs(displacements[first])
        if g > 1:
            displacements[last] = -np.abs(displacements[last])
    return fixed, [draw(d) for d in displacements], displacements, nodes


@pytest.mark.parametrize("shape, maxshift, gridsize", CASES)
def test_cs_equal_integer_displacements_of_bright_points(shape, maxshift, gridsize):
    rng = np.random.default_rng(len(shape))
    fixed, frames, displacements, nodes = bright_patterns(shape, gridsize, maxshift, 3, rng)
    alg = AperturesMismatch(fixed, nodes, maxshift)
    for t, frame in enumerate(frames):
        out = alg.run_frame(frame, t, ("Es", "cs", "Qs", "mmis"))
        assert np.all(out["Es"] < 1e-12)
        # the original's exact test: the integer displacement of every aperture is found
        np.testing.assert_array_equal(out["cs"], displacements[t])
        # the interpolated mismatch is (near) zero at the true shifts and not elsewhere
        assert data_penalty(out["cs"].astype(float), out["mmis"].astype(float))[0] < 1e-6
        assert data_penalty(np.zeros_like(out["cs"], dtype=float), out["mmis"].astype(float))[0] > 1e-3
        assert np.all(np.linalg.eigvalsh(out["Qs"]) >= -1e-12)


def test_outputs_match_declarations_and_the_library_path():
    rng = np.random.default_rng(7)
    shape, maxshift, gridsize = (60, 50), (4, 3), (3, 3)
    fixed, frames, _, nodes = bright_patterns(shape, gridsize, maxshift, 1, rng)
    frame = frames[0] + rng.normal(0, 0.05, shape)
    preprocess = PreprocessSNF(bias=0.5, sigma_lp=0, sigma_hp=np.inf)
    alg = AperturesMismatch(preprocess(fixed), nodes, maxshift, preprocess)
    out = alg.run_frame(frame, 0, alg.declare())
    for name, decl in alg.declare().items():
        assert out[name].shape == decl.shape and out[name].dtype == np.dtype(decl.dtype), name
    # the same numbers the library functions give when called by hand
    mms = mismatch_apertures(preprocess(fixed), preprocess(frame), gridsize, maxshift)
    np.testing.assert_allclose(out["mmis"], interpolate_mm(mms), rtol=1e-5, atol=1e-6)
    # only what is asked for is computed and returned; pickling drops the prepared plan
    assert set(alg.run_frame(frame, 0, ["cs"])) == {"cs"}
    clone = pickle.loads(pickle.dumps(alg))
    assert clone._context is None
    np.testing.assert_array_equal(clone.run_frame(frame, 0, ["Qs"])["Qs"], out["Qs"])
    assert alg.describe()["algorithm"] == "AperturesMismatch"


@pytest.mark.parametrize("kwargs, field", [
    (dict(maxshift=0), "maxshift"), (dict(maxshift=(2, 2, 2)), "maxshift"), (dict(overlap=-1), "overlap"),
    (dict(normalization="bogus"), "normalization"), (dict(thresh=np.ones((2, 2))), "thresh"),
    (dict(nodes=(np.arange(3.0), np.arange(3.0))), "nodes"), (dict(preprocess=5), "preprocess"),
])
def test_bad_parameters_name_the_field(kwargs, field):
    fixed = np.random.default_rng(0).random((20, 24))
    args = dict(fixed=fixed, nodes=nodes_for_shape(fixed.shape, (3, 3)), maxshift=3)
    args.update(kwargs)
    with pytest.raises(ParameterError) as info:
        AperturesMismatch(**args)
    assert info.value.field == field
    with pytest.raises(ValueError, match="shape"):
        AperturesMismatch(fixed, args["nodes"] if field != "nodes" else nodes_for_shape((20, 24), (3, 3)),
                          3).run_frame(np.ones((5, 5)), 0, ["cs"])
