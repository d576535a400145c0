"""Series readers: shapes/axes per format, one-frame reads, pickling by path, error messages."""
import importlib.util
import pickle

import numpy as np
import pytest
import tifffile
import zarr

from blockreg.io import open_series
from helpers.paths import SHARED_DATA

DATA = SHARED_DATA


@pytest.fixture
def movie():
    rng = np.random.default_rng(0)
    return rng.integers(0, 1000, (4, 9, 11)).astype(np.uint16)


def _check_reader(reader, movie, axes):
    assert reader.shape == movie.shape and len(reader) == movie.shape[0]
    assert reader.ndim == movie.ndim - 1 and reader.axes == axes
    assert reader.dtype == movie.dtype
    for t in (0, 2, -1):
        np.testing.assert_array_equal(reader[t], movie[t])
        np.testing.assert_array_equal(reader.frame(t), movie[t])
    np.testing.assert_array_equal(reader[1, 2:5, 3:], movie[1, 2:5, 3:])
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone[-1], movie[-1])
    with pytest.raises(IndexError):
        reader[movie.shape[0]]


def test_npy(tmp_path, movie):
    np.save(tmp_path / "m.npy", movie)
    _check_reader(open_series(tmp_path / "m.npy"), movie, "tyx")


@pytest.mark.parametrize("kind", ["imagej", "plain", "compressed"])
def test_tiff(tmp_path, movie, kind):
    path = tmp_path / "m.tif"
    if kind == "imagej":
        tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TYX"})
    elif kind == "plain":
        tifffile.imwrite(path, movie, photometric="minisblack", metadata={"axes": "TYX"})
    else:
        tifffile.imwrite(path, movie, compression="zlib", photometric="minisblack",
                         metadata={"axes": "TYX"})
    reader = open_series(path)
    _check_reader(reader, movie, "tyx")
    assert (reader._memmap is None) == (kind == "compressed")


def test_tiff_channels_need_a_choice(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 255, (3, 4, 2, 8, 10)).astype(np.uint8)  # T Z C Y X
    path = tmp_path / "h.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    with pytest.raises(ValueError, match="channel"):
        open_series(path)
    with pytest.raises(ValueError, match="channel"):
        open_series(path, channel=2)
    _check_reader(open_series(path, channel=1), data[:, :, 1], "tzyx")


@pytest.mark.skipif(not (DATA / "sima_volume_2p_tzcyx.tif").exists(), reason="needs /work/shared/data")
def test_real_tzcyx_volume():
    path = DATA / "sima_volume_2p_tzcyx.tif"
    full = tifffile.imread(path)
    reader = open_series(path, channel=0)
    assert reader.shape == (10, 3, 64, 64) and reader.axes == "tzyx"
    np.testing.assert_array_equal(reader[7], full[7, :, 0])
    assert reader.spacing is not None and reader.spacing[0] == 1.0
    assert reader.spacing[1] == pytest.approx(0.2926, abs=1e-3)


@pytest.mark.skipif(not (DATA / "sima_ca1_2p_tyx.tif").exists(), reason="needs /work/shared/data")
def test_real_multipage_tyx():
    path = DATA / "sima_ca1_2p_tyx.tif"
    full = tifffile.imread(path)
    reader = open_series(path)
    assert reader.shape == full.shape and reader.axes == "tyx"
    np.testing.assert_array_equal(reader[13], full[13])


def test_zarr_array_and_group(tmp_path, movie):
    arr = zarr.create_array(tmp_path / "a.zarr", shape=movie.shape, chunks=(1, 9, 11), dtype=movie.dtype)
    arr[...] = movie
    _check_reader(open_series(tmp_path / "a.zarr"), movie, "tyx")
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("raw", shape=movie.shape, dtype=movie.dtype)[...] = movie
    with pytest.raises(ValueError, match="dataset.*raw"):
        open_series(tmp_path / "g.zarr")
    with pytest.raises(ValueError, match="dataset"):
        open_series(tmp_path / "g.zarr", dataset="nope")
    _check_reader(open_series(tmp_path / "g.zarr", dataset="raw"), movie, "tyx")


def test_zarr_dimension_names_with_channel(tmp_path, movie):
    data = np.stack([movie, movie + 1], axis=1)  # t c y x
    arr = zarr.create_array(tmp_path / "c.zarr", shape=data.shape, dtype=data.dtype,
                            dimension_names=("t", "c", "y", "x"))
    arr[...] = data
    with pytest.raises(ValueError, match="channel"):
        open_series(tmp_path / "c.zarr")
    _check_reader(open_series(tmp_path / "c.zarr", channel=1), movie + 1, "tyx")


@pytest.mark.skipif(importlib.util.find_spec("h5py") is None, reason="h5py not installed")
def test_hdf5(tmp_path, movie):
    import h5py

    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["imaging"] = movie
    _check_reader(open_series(tmp_path / "m.h5", dataset="imaging"), movie, "tyx")


def test_errors(tmp_path, movie):
    with pytest.raises(ValueError, match="path.*does not exist"):
        open_series(tmp_path / "missing.npy")
    (tmp_path / "m.xyz").write_text("x")
    with pytest.raises(ValueError, match="path.*unknown format"):
        open_series(tmp_path / "m.xyz")
    np.save(tmp_path / "line.npy", np.zeros((4, 10)))
    with pytest.raises(ValueError, match="path.*spatial"):
        open_series(tmp_path / "line.npy")
    np.save(tmp_path / "m.npy", movie)
    with pytest.raises(ValueError, match="channel"):
        open_series(tmp_path / "m.npy", channel=0)
    with pytest.raises(ValueError, match="dataset"):
        open_series(tmp_path / "m.npy", dataset="x")
