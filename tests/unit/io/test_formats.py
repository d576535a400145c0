"""Every input format, written here from a known array and read back through ``open_series``:
shape, axis names, spacing (µm), time step and pixel values must match the source."""
import pickle
import warnings

import numpy as np
import pytest
import tifffile
import zarr

from blockreg.errors import ParameterError
from blockreg.io import open_series
from blockreg.io.imagine import parse_header, write_header


@pytest.fixture
def movie():
    rng = np.random.default_rng(3)
    return rng.integers(0, 4000, (5, 7, 9)).astype(np.uint16)  # t y x


@pytest.fixture
def volume():
    rng = np.random.default_rng(4)
    return rng.integers(-300, 300, (4, 3, 6, 8)).astype(np.int16)  # t z y x


def check(reader, source, axes, spacing=None, time_step_s=None):
    assert reader.shape == source.shape and reader.axes == axes
    assert reader.dtype == source.dtype
    if spacing is None:
        assert reader.spacing is None
    else:
        assert reader.spacing == pytest.approx(spacing)
    if time_step_s is None:
        assert reader.time_step_s is None
    else:
        assert reader.time_step_s == pytest.approx(time_step_s)
    for t in range(source.shape[0]):
        np.testing.assert_array_equal(reader[t], source[t])
    region = tuple(slice(1, n - 1) for n in source.shape[1:])
    np.testing.assert_array_equal(reader[(-1,) + region], source[(-1,) + region])
    np.testing.assert_array_equal(reader[-1, 1], source[-1, 1])  # an index, not a slice
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reader))[-1], source[-1])


# --- TIFF ---------------------------------------------------------------------------------------

def test_imagej_hyperstack_spacing_unit_and_interval(tmp_path, volume):
    path = tmp_path / "h.tif"
    tifffile.imwrite(path, volume, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"axes": "TZYX", "spacing": 2.0, "unit": "nm", "finterval": 0.1})
    # ImageJ's unit applies to x, y and z: nm -> µm
    check(open_series(path), volume, "tzyx", (0.002, 0.0005, 0.00025), 0.1)


def test_imagej_without_unit_reads_micrometres(tmp_path, movie):
    path = tmp_path / "h.tif"
    tifffile.imwrite(path, movie, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TYX"})
    check(open_series(path), movie, "tyx", (0.5, 0.5))


def test_ome_tiff_physical_size_in_its_units(tmp_path, volume):
    path = tmp_path / "v.ome.tif"
    tifffile.imwrite(path, volume, metadata={
        "axes": "TZYX", "PhysicalSizeX": 300.0, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.4, "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 0.002,
        "PhysicalSizeZUnit": "mm", "TimeIncrement": 250.0, "TimeIncrementUnit": "ms"})
    check(open_series(path), volume, "tzyx", (2.0, 0.4, 0.3), 0.25)


def test_bigtiff_is_memory_mapped(tmp_path, movie):
    path = tmp_path / "b.btf"
    tifffile.imwrite(path, movie, bigtiff=True, photometric="minisblack", metadata={"axes": "TYX"})
    reader = open_series(path)
    assert reader._memmap is not None
    check(reader, movie, "tyx")


def test_tiff_without_time_axis_is_one_frame(tmp_path, movie):
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "ZYX"})
    reader = open_series(path)
    check(reader, movie[None], "tzyx", None)


def test_plain_tiff_centimetre_resolution(tmp_path, movie):
    path = tmp_path / "p.tif"
    tifffile.imwrite(path, movie, photometric="minisblack", resolution=(10000.0, 5000.0),
                     resolutionunit="CENTIMETER", metadata=None)
    check(open_series(path), movie, "tyx", (2.0, 1.0))


# --- Zarr and OME-Zarr ------------------------------------------------------------------------

def _ngff_axes(letters, units):
    kinds = {"t": "time", "c": "channel"}
    axes = []
    for a in letters:
        axis = {"name": a, "type": kinds.get(a, "space")}
        if units.get(a):
            axis["unit"] = units[a]
        axes.append(axis)
    return axes


def _write_ome_zarr(path, data, letters, scale, units, version):
    fmt = 3 if version == "0.5" else 2
    group = zarr.open_group(path, mode="w", zarr_format=fmt)
    multiscales = [{
        "axes": _ngff_axes(letters, units),
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]},
            {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [
                s * (2 if a in "yx" else 1) for s, a in zip(scale, letters)]}]},
        ],
    }]
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    else:
        multiscales[0]["version"] = "0.4"
        group.attrs["multiscales"] = multiscales
    group.create_array("0", data=data, chunks=(1,) + data.shape[1:])
    half = (slice(None),) * (data.ndim - 2) + (slice(None, None, 2),) * 2
    group.create_array("1", data=data[half])
    return group


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_level_zero_axes_and_scale(tmp_path, volume, version):
    path = tmp_path / "v.ome.zarr"
    _write_ome_zarr(path, volume, "tzyx", [0.5, 2.0, 300.0, 300.0],
                    {"t": "second", "z": "micrometer", "y": "nanometer", "x": "nanometer"}, version)
    check(open_series(path), volume, "tzyx", (2.0, 0.3, 0.3), 0.5)
    level1 = open_series(path, dataset="1")
    assert level1.shape == (4, 3, 3, 4) and level1.spacing == pytest.approx((2.0, 0.6, 0.6))


def test_ome_zarr_channel_axis_and_bioformats2raw_layout(tmp_path, movie):
    data = np.stack([movie, movie + 7], axis=1)  # t c y x
    root = zarr.open_group(tmp_path / "b.zarr", mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    _write_ome_zarr(tmp_path / "b.zarr" / "0", data, "tcyx", [1.0, 1.0, 0.7, 0.7],
                    {"y": "micrometer", "x": "micrometer"}, "0.4")
    with pytest.raises(ParameterError, match="channel") as err:
        open_series(tmp_path / "b.zarr")
    assert err.value.field == "input.channel"
    check(open_series(tmp_path / "b.zarr", channel=1), movie + 7, "tyx", (0.7, 0.7))


def test_ome_zarr_image_inside_a_group_and_without_time(tmp_path, movie):
    root = zarr.open_group(tmp_path / "s.zarr", mode="w")
    _write_ome_zarr(tmp_path / "s.zarr" / "warped", movie, "tyx", [1.0, 1.0, 1.0],
                    {"y": "micrometer", "x": "micrometer"}, "0.5")
    check(open_series(tmp_path / "s.zarr", dataset="warped"), movie, "tyx", (1.0, 1.0))
    _write_ome_zarr(tmp_path / "one.zarr", movie, "zyx", [4.0, 1.0, 1.0],
                    {"z": "micrometer", "y": "micrometer", "x": "micrometer"}, "0.5")
    check(open_series(tmp_path / "one.zarr"), movie[None], "tzyx", (4.0, 1.0, 1.0))
    del root


def test_ome_zarr_unknown_level_names_the_dataset(tmp_path, movie):
    path = tmp_path / "v.zarr"
    _write_ome_zarr(path, movie, "tyx", [1.0, 1.0, 1.0], {}, "0.5")
    with pytest.raises(ParameterError) as err:
        open_series(path, dataset="7")
    assert err.value.field == "input.dataset" and "7" in str(err.value)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_written_by_ome_zarr_py(tmp_path, volume, version):
    pytest.importorskip("ome_zarr.writer")
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    group = zarr.open_group(tmp_path / "o.zarr", mode="w", zarr_format=2 if version == "0.4" else 3)
    write_image(volume, group, axes="tzyx", fmt=FormatV04() if version == "0.4" else FormatV05(),
                scale_factors=(2,), scale={"t": 0.1, "z": 2.0, "y": 250.0, "x": 250.0},
                axes_units={"t": "second", "z": "micrometer", "y": "nanometer", "x": "nanometer"})
    check(open_series(tmp_path / "o.zarr"), volume, "tzyx", (2.0, 0.25, 0.25), 0.1)


def test_zarr_v2_plain_array(tmp_path, movie):
    arr = zarr.create_array(tmp_path / "a2.zarr", shape=movie.shape, dtype=movie.dtype,
                            zarr_format=2)
    arr[...] = movie
    check(open_series(tmp_path / "a2.zarr"), movie, "tyx")


# --- HDF5, NWB ------------------------------------------------------------------------------------

def test_hdf5_element_size(tmp_path, volume):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["data"] = volume
        f["data"].attrs["element_size_um"] = (2.0, 0.5, 0.5)
    check(open_series(tmp_path / "v.h5"), volume, "tzyx", (2.0, 0.5, 0.5))


def _nwb_file(path, series_type, data, *, grid_spacing=None, rate=10.0, extra_series=False):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from pynwb import ophys

    nwb = pynwb.NWBFile(session_description="blockreg test", identifier="t1",
                        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    device = nwb.create_device(name="scope")
    channel = ophys.OpticalChannel(name="green", description="gcamp", emission_lambda=510.0)
    plane_args = {}
    if grid_spacing is not None:
        plane_args = {"grid_spacing": grid_spacing, "grid_spacing_unit": "micrometers"}
    plane = nwb.create_imaging_plane(name="plane", optical_channel=channel, description="L2/3",
                                     device=device, excitation_lambda=920.0, indicator="GCaMP6",
                                     location="V1", imaging_rate=rate, **plane_args)
    cls = getattr(ophys, series_type)
    nwb.add_acquisition(cls(name=series_type, data=data, imaging_plane=plane, rate=rate,
                            unit="n.a."))
    if extra_series:
        nwb.add_acquisition(cls(name="second", data=data, imaging_plane=plane, rate=rate,
                                unit="n.a."))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


@pytest.mark.parametrize("series_type", ["TwoPhotonSeries", "OnePhotonSeries"])
def test_nwb_series_are_presented_t_y_x(tmp_path, movie, series_type):
    stored = np.ascontiguousarray(movie.transpose(0, 2, 1))  # NWB: (frame, x, y)
    path = tmp_path / "rec.nwb"
    _nwb_file(path, series_type, stored, grid_spacing=[0.8, 0.6], rate=20.0)
    reader = open_series(path)
    # spacing follows the presented axes: y (0.6) then x (0.8)
    check(reader, movie, "tyx", (0.6, 0.8), 0.05)


def test_nwb_volume_and_choice_of_series(tmp_path, volume):
    stored = np.ascontiguousarray(volume.transpose(0, 3, 2, 1))  # (frame, x, y, z)
    path = tmp_path / "vol.nwb"
    _nwb_file(path, "TwoPhotonSeries", stored, extra_series=True)
    with pytest.raises(ParameterError) as err:
        open_series(path)
    assert err.value.field == "input.dataset" and "second" in str(err.value)
    check(open_series(path, dataset="TwoPhotonSeries"), volume, "tzyx", None, 0.1)
    with pytest.raises(ParameterError) as err:
        open_series(path, dataset="nope")
    assert err.value.field == "input.dataset"


# --- Imagine, npy ------------------------------------------------------------------------------

KNOWN_HEADER = """IMAGINE
[general]
header version=5.1
app version=2.0, build 1130
date and time=2016-05-12 14:09:47
byte order=b

[misc params]
stimulus file content=
comment=
ai data file=/data/exp1.ai
image data file=/data/exp1.cam
piezo=start position:20 um;stop position:40 um;output scan rate:10000;bidirection:0

[camera]
original image depth=14
saved image depth=16
image width=9
image height=7
number of frames requested=12
nStacks=4
idle time between stacks=0.7 s
pre amp gain=NA
gain=0
exposure time=0.1 s
vertical shift speed=
vertical clock vol amp=1
readout rate=
pixel order=x y z
frame index offset=0
frames per stack=3
pixel data type=uint16
camera=PCO.Edge
um per pixel=0.71
hbin=1
vbin=1
"""


def test_imagine_known_header(tmp_path):
    rng = np.random.default_rng(5)
    stacks = rng.integers(0, 16000, (4, 3, 7, 9)).astype(np.uint16)
    (tmp_path / "exp1.imagine").write_text(KNOWN_HEADER)
    (tmp_path / "exp1.cam").write_bytes(stacks.astype(">u2").tobytes())
    header = parse_header(tmp_path / "exp1.imagine")
    assert header["piezo"]["stop position"] == "40 um" and header["nStacks"] == "4"
    # z: (40 - 20) um over 3 frames; time: idle 0.7 s + 3 frames * 0.1 s
    for name in ("exp1.imagine", "exp1.cam"):
        check(open_series(tmp_path / name), stacks, "tzyx", (10.0, 0.71, 0.71), 1.0)


def test_imagine_round_trip_of_write_header(tmp_path, movie):
    write_header(tmp_path / "m.imagine", shape=movie.shape, dtype=movie.dtype,
                 spacing=(0.5, 0.5), time_step_s=0.033)
    movie.tofile(tmp_path / "m.cam")
    check(open_series(tmp_path / "m.imagine"), movie, "tyx", (0.5, 0.5), 0.033)


def test_imagine_header_with_unknown_spacing_and_time(tmp_path, volume):
    write_header(tmp_path / "u.imagine", shape=volume.shape, dtype=volume.dtype)
    volume.tofile(tmp_path / "u.cam")
    header = parse_header(tmp_path / "u.imagine")
    # the keys ImagineFormat.jl looks up unconditionally are there, with "unknown" values
    assert header["um per pixel"] == "NaN" and header["exposure time"] == "0.0 s"
    assert header["piezo"]["stop position"] == "0.0 um"
    check(open_series(tmp_path / "u.imagine"), volume, "tzyx", None, None)


def test_imagine_short_cam_is_truncated_with_a_warning(tmp_path, volume):
    write_header(tmp_path / "v.imagine", shape=volume.shape, dtype=volume.dtype,
                 spacing=(3.0, 1.0, 1.0))
    data = volume.tobytes()
    (tmp_path / "v.cam").write_bytes(data[: len(data) * 3 // 4 - 5])  # 2 whole stacks and a bit
    with pytest.warns(UserWarning, match="2 whole stacks"):
        reader = open_series(tmp_path / "v.imagine")
    check(reader, volume[:2], "tzyx", (3.0, 1.0, 1.0))
    (tmp_path / "v.cam").write_bytes(data[:10])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ParameterError, match="shorter than one stack") as err:
            open_series(tmp_path / "v.imagine")
    assert err.value.field == "input.path"


def test_npy_is_memory_mapped(tmp_path, volume):
    np.save(tmp_path / "v.npy", volume)
    reader = open_series(tmp_path / "v.npy")
    assert isinstance(reader._handle, np.memmap)
    check(reader, volume, "tzyx")
