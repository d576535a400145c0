"""Test doubles for the service's unit tests: a toy algorithm and a fake broker.

The toy algorithm has the real :class:`blockreg.algorithms.base.Algorithm` interface and a result
that is easy to compute independently (the mean difference to the fixed image), so tests can check
that the service wires frames, ROI, preprocessing, store and database together correctly without
depending on the registration core.  Not a test module (no ``test_`` prefix).
"""
from __future__ import annotations

import contextlib

import numpy as np

from blockreg.algorithms.base import Algorithm, ArrayDecl


class MeanShiftAlgorithm(Algorithm):
    """``u`` = the mean of (preprocessed frame - fixed) at every node; ``mismatch`` = mean square."""

    prepared = 0

    def __init__(self, fixed, nodes, maxshift, lam, preprocess=None, **options):
        self.fixed = np.asarray(fixed, dtype=np.float32)
        self.nodes = nodes
        self.preprocess = preprocess
        self.options = options
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


def install(monkeypatch):
    """Make blockreg.jobs build the toy algorithm (the reader and preprocessing stay real)."""
    import blockreg.jobs as jobs

    monkeypatch.setattr(
        jobs, "_build_algorithm",
        lambda spec, fixed, nodes, preprocess: MeanShiftAlgorithm(fixed, nodes, spec.params.maxshift,
                                                                  spec.params.lam, preprocess))


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
