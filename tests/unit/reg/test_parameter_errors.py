"""Bad arguments to the registration layer raise ParameterError naming the argument.

The layers above (spec checks, CLI, API) map ``err.field`` instead of repeating the rules, so the
field must be right, and the message must start with it.
"""
import numpy as np
import pytest

from blockreg import ParameterError
from blockreg import reg
from blockreg.reg import mismatch as mm_module
from blockreg.reg import warp as warp_module
from blockreg.runner import register
from blockreg.store import create_store
from blockreg.synthetic import make_movie

IMG = np.ones((8, 9))
MMS = np.ones((2, 2, 2, 3, 5))      # gridsize (2, 2), maxshift (1, 2)

CASES = [
    ("maxshift.0", lambda: mm_module.mismatch(IMG, IMG, (8, 1))),
    ("maxshift", lambda: mm_module.mismatch(IMG, IMG, (1.5, 1))),
    ("normalization", lambda: mm_module.mismatch(IMG, IMG, (1, 1), normalization="counts")),
    ("moving", lambda: mm_module.mismatch(IMG, np.ones((8, 9, 2)), (1, 1))),
    ("gridsize", lambda: reg.mismatch_apertures(IMG, IMG, (9, 2), (1, 1))),
    ("overlap", lambda: reg.default_aperture_width(IMG.shape, (2, 2), overlap=(1, 2, 3))),
    ("overlap", lambda: reg.default_aperture_width(IMG.shape, (2, 2), overlap=-1)),
    ("width", lambda: reg.aperture_range((3, 3), (0, 2))),
    ("max_batch_bytes", lambda: reg.MismatchPlan(IMG, (2, 2), (1, 1), max_batch_bytes=0)),
    ("sigma", lambda: reg.highpass(IMG, (1, 2, 3))),
    ("sigma_hp", lambda: reg.PreprocessSNF(0, 0, -1)),
    ("mms", lambda: reg.mms_to_fit(np.ones((2, 2, 3, 5, 5)), 0.1)),
    ("thresh", lambda: reg.mms_to_fit(MMS, np.ones((3, 3)))),
    ("maxsep", lambda: reg.qfit(MMS[0, 0], 0.1, maxsep=(1, 2, 3))),
    ("maxshift", lambda: reg.clamp_shifts(np.zeros((2, 2, 2)), (3, 3, 3))),
    ("mmis", lambda: reg.data_penalty(np.zeros((2, 2, 2)), np.ones((2, 2, 3, 5)))),
    ("lam", lambda: reg.AffinePenalty((np.arange(2.0), np.arange(2.0)), -1)),
    ("lam_range", lambda: reg.auto_lambda(np.zeros((2, 2, 2)), np.zeros((2, 2, 2, 2)),
                                          (np.arange(2.0),) * 2, None, MMS, (1, 2))),
    ("bc", lambda: reg.GridDeformation(np.zeros((2, 2, 2)), IMG.shape).coefficients("cubic")),
    ("gridsize", lambda: reg.nodes_for_shape(IMG.shape, (2,))),
    ("img", lambda: warp_module.warp(np.ones((4, 4, 4)), np.zeros((2, 2, 2)), (4, 4))),
    ("n", lambda: reg.medfilt(np.zeros((5, 2, 2, 2)), 2)),
    ("maxshift", lambda: reg.optimize_rigid(IMG, IMG, maxshift=(-1, 1))),
    ("max_local", lambda: make_movie((8, 8), 1, max_local=(1, 2, 3))),
    ("frames", lambda: register(np.ones((2, 8, 8)), None, frames=[5])),
    ("nframes", lambda: create_store("unused.zarr", 0, {})),
]


@pytest.mark.parametrize("field, call", CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)])
def test_bad_argument_names_its_field(field, call):
    with pytest.raises(ParameterError) as info:
        call()
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)  # callers catching ValueError keep working


def test_per_axis_broadcasts_and_checks():
    assert reg.per_axis(2, 3, "x") == (2.0, 2.0, 2.0)
    assert reg.per_axis([1.5], 2, "x") == (1.5, 1.5)
    assert reg.per_axis((1, 2), 2, "x", integer=True) == (1, 2)
    assert reg.per_axis(np.inf, 1, "x", finite=False) == (np.inf,)
    for value, kwargs, problem in [((1, 2, 3), {}, "has 3 entries"), (-1, {}, "non-negative"),
                                   (np.nan, {}, "non-negative"), (0, {"positive": True}, "positive"),
                                   (np.inf, {}, "finite"), (1.5, {"integer": True}, "integers"),
                                   ("a", {}, "expected a number"), ([[1]], {}, "1-D")]:
        with pytest.raises(ParameterError, match=f"^x: .*{problem}"):
            reg.per_axis(value, 1 if value == np.inf else 2, "x", **kwargs)
