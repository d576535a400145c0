"""Test doubles for the service's unit tests: a toy algorithm and a fake broker.

The toy algorithm has the real :class:`blockreg.algorithms.base.Algorithm` interface and a result
that is easy to compute independently (the mean difference to the fixed image), so tests can check
that the service wires frames, ROI, preprocessing, store and database together correctly without
depending on the registration core.  It is a second algorithm, ``"mean-shift"`` (params: just
``gridsize``), which tests register through the public registry:
``with blockreg.registry.registered(MEAN_SHIFT): ...``.  Not a test module (no ``test_`` prefix).
"""
from __future__ import annotations

import contextlib

import numpy as np
from pydantic import Field, PositiveInt

from blockreg.algorithms.base import Algorithm, ArrayDecl
from blockreg.errors import ParameterError
from blockreg.jobspec import SpecModel
from blockreg.registry import AlgorithmEntry


class MeanShiftAlgorithm(Algorithm):
    """``u`` = the mean of (preprocessed frame - fixed) at every node; ``mismatch`` = mean square."""

    prepared = 0

    def __init__(self, fixed, nodes, preprocess=None):
        self.fixed = np.asarray(fixed, dtype=np.float32)
        self.nodes = nodes
        self.preprocess = preprocess
        self._context = None

    def declare(self):
        grid = tuple(len(n) for n in self.nodes)
        return {"u": ArrayDecl(grid + (len(grid),), "float64"),
                "mismatch": ArrayDecl((), "float64"),
                "warped": ArrayDecl(self.fixed.shape, "float32")}

    def prepare(self):
        if self._context is None:
            MeanShiftAlgorithm.prepared += 1
            self._context = {"fixed": self.fixed.copy()}

    def run_frame(self, frame, t, wanted):
        self.prepare()
        moving = self.preprocess(frame)
        if not np.all(np.isfinite(moving)):
            raise FloatingPointError("frame has non-finite pixels")
        diff = moving - self._context["fixed"]
        decl = self.declare()
        out = {"u": np.full(decl["u"].shape, float(diff.mean())),
               "mismatch": float(np.mean(diff.astype(np.float64) ** 2)),
               "warped": moving}
        return {name: out[name] for name in self.check_wanted(wanted)}

    def describe(self):
        return {"algorithm": "mean-shift (test double)"}


def shot_noise_flattened(movie, bias):
    """PreprocessSNF without filters, written out: sqrt(max(0, movie - bias)) in float32."""
    return np.sqrt(np.maximum(np.asarray(movie, dtype=np.float32) - np.float32(bias), 0))


def expected_u(movie, t, fixed_index, roi, gridsize, bias=0.0):
    """The toy algorithm's ``u`` for source frame ``t``, computed directly from the movie."""
    window = (slice(None),) + tuple(slice(a, b) for a, b in roi)
    data = shot_noise_flattened(movie[window], bias)
    value = float((data[t] - data[fixed_index]).mean())
    return np.full(tuple(gridsize) + (len(gridsize),), value)


class MeanShiftParams(SpecModel):
    gridsize: list[PositiveInt] = Field(min_length=1, max_length=3,
                                        description="Nodes per spatial axis.")


def _mean_shift_nodes(params, image_shape):
    # the toy owns its rules as a real algorithm does: ParameterError naming the params field
    from blockreg.reg.deformation import nodes_for_shape

    if len(params.gridsize) != len(image_shape):
        raise ParameterError("gridsize", f"needs {len(image_shape)} entries")
    for axis, (g, n) in enumerate(zip(params.gridsize, image_shape)):
        if g > n:
            raise ParameterError(f"gridsize.{axis}", f"{g} nodes exceed the image size {n}")
    return nodes_for_shape(image_shape, params.gridsize)


MEAN_SHIFT = AlgorithmEntry(
    name="mean-shift",
    params=MeanShiftParams,
    build=lambda params, fixed, nodes, preprocess: MeanShiftAlgorithm(fixed, nodes, preprocess),
    nodes=_mean_shift_nodes,
    variables={"u": "mean difference to the fixed image, at every node",
               "mismatch": "mean squared difference", "warped": "the preprocessed frame"},
    summary="test double: the mean difference to the fixed image",
)


class FakeBroker:
    """Records ``send_task`` calls instead of talking to Redis."""

    def __init__(self, reachable=True, fail_sends=False):
        self.sent = []
        self.reachable = reachable
        self.fail_sends = fail_sends

    def send_task(self, name, args=(), queue=None, **_):
        if self.fail_sends:
            raise ConnectionError("broker down")
        self.sent.append((name, tuple(args), queue))

    @contextlib.contextmanager
    def connection_for_write(self):
        if not self.reachable:
            raise ConnectionError("broker down")
        yield self

    def ensure_connection(self, **_):
        return self


def make_movie(path, shape=(12, 24, 20), seed=0):
    """Write a random uint16 movie with np.save; return the array."""
    rng = np.random.default_rng(seed)
    movie = rng.integers(100, 1000, size=shape).astype(np.uint16)
    np.save(path, movie)
    return movie
