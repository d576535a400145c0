"""Damaged inputs and wrong choices fail when the series is opened, naming the job-spec field."""
import numpy as np
import pytest
import tifffile
import zarr

from blockreg.errors import ParameterError
from blockreg.io import open_series


def _field(call):
    with pytest.raises(ParameterError) as err:
        call()
    return err.value.field, str(err.value)


@pytest.fixture
def movie():
    return np.arange(6 * 16 * 20, dtype=np.uint16).reshape(6, 16, 20)


@pytest.mark.parametrize("kind", ["imagej", "shaped", "ome", "compressed", "bigtiff"])
@pytest.mark.parametrize("keep", [0.5, "data-10"])
def test_truncated_tiff_is_refused_when_opened(tmp_path, movie, kind, keep):
    path = tmp_path / ("m.ome.tif" if kind == "ome" else "m.tif")
    options = {"imagej": {"imagej": True}, "shaped": {"photometric": "minisblack"},
               "ome": {}, "compressed": {"compression": "zlib", "photometric": "minisblack"},
               "bigtiff": {"bigtiff": True, "photometric": "minisblack"}}[kind]
    tifffile.imwrite(path, movie, metadata={"axes": "TYX"}, **options)
    assert open_series(path).shape == movie.shape
    data = path.read_bytes()
    if keep == 0.5:
        cut = len(data) // 2
    else:  # 10 bytes before the end of the pixel data: every IFD may still be intact
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[-1]
            cut = page.dataoffsets[-1] + page.databytecounts[-1] - 10
    path.write_bytes(data[:cut])
    field, message = _field(lambda: open_series(path))
    assert field == "input.path" and "m." in message


def test_not_a_tiff(tmp_path):
    (tmp_path / "x.tif").write_bytes(b"this is not an image" * 10)
    field, message = _field(lambda: open_series(tmp_path / "x.tif"))
    assert field == "input.path" and "TIFF" in message


RECORD = [("a", "<u2"), ("b", "<u2")]


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, "U3", "S2", RECORD])
def test_unsupported_dtypes(tmp_path, dtype):
    data = np.zeros((2, 4, 5), dtype=dtype)
    np.save(tmp_path / "m.npy", data)
    field, message = _field(lambda: open_series(tmp_path / "m.npy"))
    assert field == "input.path" and "integer or real floating-point" in message


def test_object_npy_and_complex_zarr(tmp_path):
    np.save(tmp_path / "o.npy", np.empty((2, 4, 5), dtype=object), allow_pickle=True)
    assert _field(lambda: open_series(tmp_path / "o.npy"))[0] == "input.path"
    arr = zarr.create_array(tmp_path / "c.zarr", shape=(2, 4, 5), dtype=np.complex128)
    assert arr.shape == (2, 4, 5)
    assert _field(lambda: open_series(tmp_path / "c.zarr"))[0] == "input.path"


def test_truncated_npy(tmp_path, movie):
    np.save(tmp_path / "m.npy", movie)
    data = (tmp_path / "m.npy").read_bytes()
    (tmp_path / "m.npy").write_bytes(data[: len(data) // 2])
    field, message = _field(lambda: open_series(tmp_path / "m.npy"))
    assert field == "input.path" and "m.npy" in message


def test_unknown_datasets_name_input_dataset(tmp_path, movie):
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("raw", data=movie)
    assert _field(lambda: open_series(tmp_path / "g.zarr", dataset="nope"))[0] == "input.dataset"
    field, message = _field(lambda: open_series(tmp_path / "g.zarr"))
    assert field == "input.dataset" and "raw" in message
    np.save(tmp_path / "m.npy", movie)
    assert _field(lambda: open_series(tmp_path / "m.npy", dataset="x"))[0] == "input.dataset"


def test_hdf5_damage_and_unknown_dataset(tmp_path, movie):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["a"] = movie
        f["b"] = movie
    assert _field(lambda: open_series(tmp_path / "m.h5"))[0] == "input.dataset"
    assert _field(lambda: open_series(tmp_path / "m.h5", dataset="c"))[0] == "input.dataset"
    data = (tmp_path / "m.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    assert _field(lambda: open_series(tmp_path / "cut.h5", dataset="a"))[0] == "input.path"


def _h5_reading_another_file(path, other, how, movie, h5py):
    """An HDF5 file whose dataset ``a`` holds no pixels of its own: they are in ``other``."""
    with h5py.File(other, "w") as f:
        f["a"] = movie
    with h5py.File(path, "w") as f:
        if how == "external link":
            f["a"] = h5py.ExternalLink(str(other), "/a")
        elif how == "linked group":
            f["g"] = h5py.ExternalLink(str(other), "/")
        elif how == "soft link via a linked group":
            f["g"] = h5py.ExternalLink(str(other), "/")
            f["s"] = h5py.SoftLink("/g/a")
        elif how == "virtual":
            layout = h5py.VirtualLayout(shape=movie.shape, dtype=movie.dtype)
            layout[...] = h5py.VirtualSource(str(other), "a", shape=movie.shape)
            f.create_virtual_dataset("a", layout)
        else:  # raw pixels in an external file
            raw = other.with_suffix(".raw")
            raw.write_bytes(movie.tobytes())
            f.create_dataset("a", shape=movie.shape, dtype=movie.dtype,
                             external=[(str(raw), 0, movie.nbytes)])


@pytest.mark.parametrize("how", ["external link", "linked group", "soft link via a linked group",
                                 "virtual", "external storage"])
def test_hdf5_dataset_stored_in_another_file_is_refused(tmp_path, movie, how):
    # the data roots check the file named in the spec; pixels from another file would bypass it
    h5py = pytest.importorskip("h5py")
    _h5_reading_another_file(tmp_path / "m.h5", tmp_path / "other.h5", how, movie, h5py)
    dataset = {"linked group": "g/a", "soft link via a linked group": "s"}.get(how, "a")
    field, message = _field(lambda: open_series(tmp_path / "m.h5", dataset=dataset))
    assert field == "input.dataset" and "another file" in message


def test_nwb_without_imaging_series(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "e.nwb", "w") as f:
        f.attrs["nwb_version"] = "2.8.0"
        f.create_group("acquisition")
    field, message = _field(lambda: open_series(tmp_path / "e.nwb"))
    assert field == "input.dataset" and "TwoPhotonSeries" in message


def test_imagine_errors(tmp_path):
    (tmp_path / "a.imagine").write_text("NOT IMAGINE\n")
    assert _field(lambda: open_series(tmp_path / "a.imagine"))[0] == "input.path"
    (tmp_path / "b.imagine").write_text("IMAGINE\n[camera]\nimage width=4\nimage height=3\n"
                                        "frames per stack=1\nnStacks=2\n"
                                        "pixel data type=complex64\n")
    field, message = _field(lambda: open_series(tmp_path / "b.imagine"))
    assert field == "input.path" and "pixel data type" in message
    (tmp_path / "c.imagine").write_text("IMAGINE\n[camera]\nimage width=4\nimage height=3\n"
                                        "frames per stack=1\nnStacks=2\npixel data type=uint8\n")
    field, message = _field(lambda: open_series(tmp_path / "c.imagine"))
    assert field == "input.path" and "c.cam" in message  # the pixel file is missing


def test_missing_path_and_unknown_suffix(tmp_path):
    assert _field(lambda: open_series(tmp_path / "none.tif"))[0] == "input.path"
    (tmp_path / "m.xyz").write_text("x")
    field, message = _field(lambda: open_series(tmp_path / "m.xyz"))
    assert field == "input.path" and "unknown format" in message


def test_spec_validation_reports_the_readers_field(tmp_path, movie):
    """At submit: a truncated file, a missing channel choice and an unknown dataset are refused
    with the field the reader named (the API turns these into a 422)."""
    from blockreg.jobspec import SpecError, validate_spec

    def fields(**input_):
        spec = {"input": input_, "params": {"gridsize": [2, 2], "maxshift": [2, 2], "lambda": 0.01}}
        with pytest.raises(SpecError) as err:
            validate_spec(spec)
        return [e["field"] for e in err.value.errors]

    tifffile.imwrite(tmp_path / "m.tif", movie, imagej=True, metadata={"axes": "TYX"})
    data = (tmp_path / "m.tif").read_bytes()
    (tmp_path / "m.tif").write_bytes(data[: len(data) // 2])
    assert fields(path=str(tmp_path / "m.tif")) == ["input.path"]
    tifffile.imwrite(tmp_path / "c.tif", np.stack([movie, movie], 1), imagej=True,
                     metadata={"axes": "TCYX"})
    assert fields(path=str(tmp_path / "c.tif")) == ["input.channel"]
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("raw", data=movie)
    assert fields(path=str(tmp_path / "g.zarr"), dataset="nope") == ["input.dataset"]


def test_an_ome_tiff_never_reads_pixels_from_the_files_its_xml_names(tmp_path):
    # OME-XML may name other files (any path): the data roots check only the named one, so a
    # TIFF is read from itself alone, and one whose pixels are partly elsewhere is refused
    (tmp_path / "root").mkdir()
    secret = tmp_path / "secret.tif"
    tifffile.imwrite(secret, np.full((8, 6), 4242, np.uint16))
    xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
           'Schemas/OME/2016-06" UUID="urn:uuid:aaaa"><Image ID="Image:0"><Pixels ID="Pixels:0" '
           'DimensionOrder="XYZCT" Type="uint16" SizeX="6" SizeY="8" SizeZ="1" SizeC="1" '
           'SizeT="2"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
           '<TiffData FirstT="0" IFD="0" PlaneCount="1"><UUID FileName="a.tif">urn:uuid:aaaa'
           '</UUID></TiffData><TiffData FirstT="1" IFD="0" PlaneCount="1">'
           f'<UUID FileName="{secret}">urn:uuid:bbbb</UUID></TiffData></Pixels></Image></OME>')
    tifffile.imwrite(tmp_path / "root" / "a.tif", np.full((8, 6), 7, np.uint16),
                     description=xml, metadata=None)
    field, message = _field(lambda: open_series(tmp_path / "root" / "a.tif"))
    assert field == "input.path" and "4242" not in message  # refused: it holds half its pixels
