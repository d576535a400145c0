"""The in-process runner: frame selection, monitor validation, one-frame reads, store writes, pool."""
import numpy as np
import pytest

from blockreg.algorithms.base import Algorithm, ArrayDecl
from blockreg.runner import register
from blockreg.store import open_results, read_results
from helpers.gpu import cupy_or_skip


class MeanShift(Algorithm):
    """A tiny algorithm with an independent answer: frame mean, frame minus fixed, and t itself."""

    def __init__(self, fixed):
        self.fixed = np.asarray(fixed, dtype=np.float32)
        self._context = None
        self.prepared = 0
        self.closed = 0

    def declare(self):
        return {"mean": ArrayDecl((), "float64"), "diff": ArrayDecl(self.fixed.shape, "float32"),
                "t": ArrayDecl((), "int64")}

    def prepare(self):
        if self._context is None:
            self.prepared += 1
            self._context = {"fixed_sum": float(self.fixed.sum())}

    def run_frame(self, frame, t, wanted):
        self.prepare()
        out = {"mean": float(frame.mean()), "diff": frame - self.fixed, "t": t}
        return {k: out[k] for k in wanted}

    def close(self):
        self.closed += 1
        self._context = None

    def describe(self):
        return {"name": "MeanShift", "shape": list(self.fixed.shape)}


class CountingMovie:
    """A series reader stand-in that records which frames were read."""

    def __init__(self, data):
        self.data = data
        self.shape = data.shape
        self.reads = []

    def __getitem__(self, t):
        if not isinstance(t, (int, np.integer)):
            raise TypeError("only single frames may be read")
        self.reads.append(int(t))
        return self.data[t]


@pytest.fixture
def movie():
    rng = np.random.default_rng(0)
    return rng.random((5, 6, 7)).astype(np.float32)


def test_results_stack_time_first_and_match_direct_computation(movie):
    alg = MeanShift(movie[0])
    out = register(movie, alg, monitor=("mean", "diff"))
    assert set(out) == {"mean", "diff"}
    np.testing.assert_allclose(out["mean"], movie.reshape(5, -1).mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(out["diff"], movie - movie[0])
    assert out["diff"].dtype == np.float32 and out["mean"].shape == (5,)


def test_reads_one_frame_at_a_time_and_only_selected_frames(movie):
    src = CountingMovie(movie)
    out = register(src, MeanShift(movie[0]), monitor=("t",), frames=[4, 1, 2])
    assert src.reads == [4, 1, 2]
    np.testing.assert_array_equal(out["t"], [4, 1, 2])
    out = register(movie, MeanShift(movie[0]), monitor=("t",), frames=slice(1, None, 2))
    np.testing.assert_array_equal(out["t"], [1, 3])


def test_unknown_monitor_lists_valid_names(movie):
    with pytest.raises(ValueError, match=r"monitor.*'bogus'.*valid names.*'diff'"):
        register(movie, MeanShift(movie[0]), monitor=("mean", "bogus"))


@pytest.mark.parametrize("frames", [[5], [-1], [0, 0], "abc"])
def test_bad_frames_rejected(movie, frames):
    with pytest.raises(ValueError, match="frames"):
        register(movie, MeanShift(movie[0]), monitor=("t",), frames=frames)


def test_bad_movie_and_workers_rejected(movie):
    with pytest.raises(ValueError, match="movie"):
        register(movie[0], MeanShift(movie[0]), monitor=("t",))
    with pytest.raises(ValueError, match="workers"):
        register(movie, MeanShift(movie[0]), monitor=("t",), workers=0)


def test_caller_algorithm_is_prepared_once_and_never_closed(movie):
    alg = MeanShift(movie[0])
    register(movie, alg, monitor=("mean",))
    register(movie, alg, monitor=("mean",))
    assert alg.prepared == 1 and alg.closed == 0


def test_out_writes_store_with_frames_and_fixed(tmp_path, movie):
    alg = MeanShift(movie[0])
    path = tmp_path / "res.zarr"
    out = register(movie, alg, monitor=("mean", "diff"), out=path, frames=[3, 0],
                   attrs={"fixed_index": 0})
    stored = read_results(path)
    np.testing.assert_array_equal(stored["diff"], out["diff"])
    np.testing.assert_array_equal(stored["mean"], out["mean"])
    np.testing.assert_array_equal(stored["fixed"], movie[0])
    meta = open_results(path).attrs["blockreg"]
    assert meta["frames"] == [3, 0] and meta["fixed_index"] == 0
    assert meta["spec"] == alg.describe() and meta["axes"] == "tyx"
    with pytest.raises(ValueError, match="exists"):
        register(movie, alg, monitor=("mean",), out=path)
    np.testing.assert_array_equal(read_results(path)["diff"], out["diff"])  # untouched


@pytest.mark.slow
def test_process_pool_gives_the_same_results(tmp_path, movie):
    alg = MeanShift(movie[0])
    serial = register(movie, alg, monitor=("mean", "diff", "t"))
    pooled = register(movie, alg, monitor=("mean", "diff", "t"), workers=2, out=tmp_path / "p.zarr")
    for name in serial:
        np.testing.assert_array_equal(pooled[name], serial[name])
    np.testing.assert_array_equal(read_results(tmp_path / "p.zarr")["t"], np.arange(5))
    assert alg.closed == 0


@pytest.mark.slow
def test_pool_with_apertures_matches_serial(tmp_path):
    from blockreg.algorithms.apertures import Apertures
    from blockreg.reg.deformation import nodes_for_shape
    from blockreg.synthetic import make_movie

    movie, fixed, _ = make_movie((48, 48), 3, max_translation=3, max_local=1, seed=4)
    alg = Apertures(fixed, nodes_for_shape(fixed.shape, (3, 3)), (5, 5), 1e-3)
    serial = register(movie, alg, monitor=("u", "mismatch"))
    pooled = register(movie, alg, monitor=("u", "mismatch"), workers=2)
    np.testing.assert_allclose(pooled["u"], serial["u"], atol=1e-9)
    np.testing.assert_allclose(pooled["mismatch"], serial["mismatch"], rtol=1e-9)


class DeviceLikeFrame(np.ndarray):
    """Stands for a device array: np.asarray would turn it into a plain host ndarray."""


def test_in_process_frames_reach_the_algorithm_as_read(movie):
    # A CuPy movie's frames must reach run_frame unconverted (np.asarray fails on CuPy arrays).
    seen = []

    class Recording(MeanShift):
        def run_frame(self, frame, t, wanted):
            seen.append(type(frame))
            return super().run_frame(frame, t, wanted)

    out = register(movie.view(DeviceLikeFrame), Recording(movie[0]), monitor=("mean",))
    assert seen == [DeviceLikeFrame] * len(movie)
    np.testing.assert_allclose(out["mean"], movie.mean(axis=(1, 2)), rtol=1e-6)


@pytest.mark.gpu
def test_cupy_movie_runs_in_process():
    cp = cupy_or_skip()
    data = np.random.default_rng(3).random((3, 6, 7)).astype(np.float32)
    out = register(cp.asarray(data), MeanShift(data[0]), monitor=("mean", "t"))
    np.testing.assert_allclose(out["mean"], data.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(out["t"], [0, 1, 2])


def test_store_axes_default_to_the_readers_rule_beyond_three_spatial_axes(tmp_path):
    # a bare array has no axes: the store records the io default, also for 4 spatial axes
    from blockreg.io.base import default_axes

    data = np.random.default_rng(4).random((2, 2, 3, 2, 3)).astype(np.float32)
    register(data, MeanShift(data[0]), monitor=("mean",), out=tmp_path / "r.zarr")
    axes = open_results(tmp_path / "r.zarr").attrs["blockreg"]["axes"]
    assert axes == default_axes(4) and len(axes) != len("tzyx")
