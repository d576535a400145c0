"""What a results store looks like to viewers and file systems (issue 9): OME-Zarr 0.5 images with
axes, units and scale; shards of at most 64 frames; the registered movies' pixel type."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from blockreg.algorithms.base import Algorithm, ArrayDecl
from blockreg.runner import register
from blockreg.store import member, open_results, read_results
from blockreg.store_ngff import image_attributes, shard_frames, to_output_dtype


class Difference(Algorithm):
    """A cheap algorithm: the frame minus the fixed image as ``warped``, its mean as
    ``mismatch``, ``t`` as ``u``."""

    def __init__(self, fixed):
        self.fixed = np.asarray(fixed, dtype=np.float32)

    def declare(self):
        return {"warped": ArrayDecl(self.fixed.shape, "float32"),
                "mismatch": ArrayDecl((), "float64"), "u": ArrayDecl((2, 2, 2), "float64")}

    def prepare(self):
        pass

    def run_frame(self, frame, t, wanted):
        diff = np.asarray(frame, dtype=np.float32) - self.fixed
        out = {"warped": diff, "mismatch": float(diff.mean()), "u": np.full((2, 2, 2), float(t))}
        return {name: out[name] for name in wanted}

    def close(self):
        pass

    def describe(self):
        return {"name": "Difference"}


class Movie:
    """An in-memory series with what a reader knows: axes, µm spacing, time step."""

    def __init__(self, data, spacing=None, time_step_s=None):
        self.data, self.shape = data, data.shape
        self.axes = "tzyx"[-data.ndim:]
        self.spacing, self.time_step_s = spacing, time_step_s

    def __getitem__(self, t):
        return self.data[t]


@pytest.mark.parametrize("nframes, expected", [(1, 1), (16, 1), (17, 2), (100, 7), (1024, 64),
                                               (30000, 64)])
def test_shard_size_spreads_short_jobs_and_caps_at_64(nframes, expected):
    assert shard_frames(nframes) == expected


def test_2000_frames_make_at_most_one_file_per_64_frames_per_array(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((2000, 16, 16)).astype(np.float32)
    out = tmp_path / "long.zarr"
    results = register(Movie(data), Difference(data[0]), monitor=("warped", "mismatch", "u"),
                       out=out, workers=1)
    for folder in (out / "warped" / "0", out / "mismatch", out / "u"):
        files = [p for p in (folder / "c").rglob("*") if p.is_file()]
        assert 0 < len(files) <= math.ceil(2000 / 64), folder
    # the store holds exactly what the runner returned
    stored = read_results(out)
    for name, values in results.items():
        np.testing.assert_array_equal(stored[name], values)


def test_pool_writes_each_shard_once_and_loses_nothing(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.random((70, 8, 8)).astype(np.float32)
    results = register(Movie(data), Difference(data[0]), monitor=("warped", "u"),
                       out=tmp_path / "p.zarr", workers=2)
    stored = read_results(tmp_path / "p.zarr")
    np.testing.assert_array_equal(stored["warped"], results["warped"])
    np.testing.assert_array_equal(stored["u"][:, 0, 0, 0], np.arange(70))


def test_registered_store_opens_with_an_ome_zarr_reader(tmp_path):
    data = np.random.default_rng(2).random((5, 6, 12, 10)).astype(np.float32)
    out = tmp_path / "vol.zarr"
    register(Movie(data, spacing=(2.0, 0.5, 0.25), time_step_s=0.1), Difference(data[0]),
             monitor=("warped", "mismatch"), out=out)
    # the metadata on disk, as any NGFF reader sees it
    doc = json.loads((out / "warped" / "zarr.json").read_text())
    ome = doc["attributes"]["ome"]
    assert ome["version"] == "0.5"
    image = ome["multiscales"][0]
    assert [(a["name"], a.get("type"), a.get("unit")) for a in image["axes"]] == [
        ("t", "time", "second"), ("z", "space", "micrometer"), ("y", "space", "micrometer"),
        ("x", "space", "micrometer")]
    assert image["datasets"] == [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [0.1, 2.0, 0.5, 0.25]}]}]
    meta = open_results(out).attrs["blockreg"]
    assert meta["spacing"] == [2.0, 0.5, 0.25] and meta["time_step_s"] == 0.1
    assert meta["units"]["spacing"] == "micrometer"

    # validated against the NGFF 0.5 models when ome-zarr-models is installed
    try:
        import zarr
        from ome_zarr_models.v05.image import Image
    except ImportError:
        pass
    else:
        for name in ("warped", "fixed"):
            Image.from_zarr(zarr.open_group(str(out / name), mode="r"))

    ome_zarr = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    node = next(iter(ome_zarr.Reader(parse_url(str(out / "warped")))()))
    assert [a["name"] for a in node.metadata["axes"]] == ["t", "z", "y", "x"]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [0.1, 2.0, 0.5, 0.25]
    level0 = node.data[0]
    assert level0.shape == data.shape                  # a time series of 5 volumes
    np.testing.assert_array_equal(np.asarray(level0[3]), data[3] - data[0])
    fixed = next(iter(ome_zarr.Reader(parse_url(str(out / "fixed")))()))
    assert [a["name"] for a in fixed.metadata["axes"]] == ["z", "y", "x"]   # no time axis
    np.testing.assert_array_equal(np.asarray(fixed.data[0]), data[0])


def test_unknown_spacing_leaves_axes_without_units():
    image = image_attributes("warped", "tyx")["multiscales"][0]
    assert all("unit" not in a for a in image["axes"])
    assert image["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0]


def test_integer_output_rounds_clips_and_maps_nan_to_zero():
    values = np.array([-3.2, 0.5, 1.5, 2.6, 70000.0, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(to_output_dtype(values, np.uint16), [0, 0, 2, 3, 65535, 0])
    assert to_output_dtype(values, np.float32).dtype == np.float32


def test_output_dtype_input_stores_the_inputs_integer_type(tmp_path):
    from blockreg.jobs import run_inprocess
    from helpers import service_fakes as fakes
    from helpers.api_app import spec_for

    fakes.make_movie(tmp_path / "m.npy", shape=(4, 24, 20))
    spec = spec_for(tmp_path / "m.npy", monitor=["u", "warped0"],
                    output={"path": str(tmp_path / "out.zarr"), "dtype": "input"})
    spec.pop("preprocess")
    results = run_inprocess(spec)
    warped0 = member(open_results(tmp_path / "out.zarr"), "warped0")
    assert warped0.dtype == np.uint16 and results["warped0"].dtype == np.float32
    np.testing.assert_array_equal(warped0[...], to_output_dtype(results["warped0"], np.uint16))
