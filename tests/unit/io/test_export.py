"""Exports: the registered movie to OME-TIFF/BigTIFF and Imagine, the deformations to NPZ; each
file is read back (through ``open_series`` or NumPy) and compared with the store's arrays."""
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from blockreg.errors import ParameterError
from blockreg.io import open_series
from blockreg.io.export import convert_frame, export_results, write_imagine, write_tiff
from blockreg.store import create_store, write_frame


def _store(path, ndim=2, spacing=(0.5, 0.25)):
    rng = np.random.default_rng(7)
    image = (4, 6, 9) if ndim == 3 else (6, 9)
    grid = (2, 2, 3) if ndim == 3 else (2, 3)
    nframes = 4
    warped = (rng.normal(100, 40, (nframes,) + image)).astype(np.float32)
    warped[0, 0, 0] = -5.0  # clipped to 0 by an unsigned export
    warped[1, 1, 1] = 1e6   # clipped to the type's maximum
    u = rng.normal(0, 1, (nframes,) + grid + (ndim,)).astype(np.float32)
    nodes = [np.linspace(0, n - 1, g) for n, g in zip(image, grid)]
    axes = "t" + "zyx"[-ndim:]
    decls = {"warped": SimpleNamespace(shape=image, dtype=np.float32),
             "u": SimpleNamespace(shape=grid + (ndim,), dtype=np.float32)}
    attrs = {"nodes": [n.tolist() for n in nodes], "axes": axes, "spacing": list(spacing),
             "frames": [1, 2, 3, 5], "fixed_index": 0}
    group = create_store(path, nframes, decls, attrs=attrs, fixed=warped[0])
    for t in range(nframes):
        write_frame(group, t, {"warped": warped[t], "u": u[t]})
    return warped, u, nodes


def test_movie_to_ome_tiff_keeps_values_axes_and_spacing(tmp_path):
    warped, _, _ = _store(tmp_path / "r.zarr")
    [out] = export_results(tmp_path / "r.zarr", tmp_path / "m.ome.tif")
    reader = open_series(out)
    assert reader.axes == "tyx" and reader.dtype == np.float32
    assert reader.spacing == pytest.approx((0.5, 0.25))
    np.testing.assert_array_equal(np.stack([reader[t] for t in range(4)]), warped)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and not tif.is_bigtiff


def test_movie_to_bigtiff_as_integers(tmp_path):
    warped, _, _ = _store(tmp_path / "r.zarr", ndim=3, spacing=(2.0, 0.5, 0.5))
    [out] = export_results(tmp_path / "r.zarr", tmp_path / "m.btf", dtype="uint16")
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
    reader = open_series(out)
    assert reader.axes == "tzyx" and reader.dtype == np.uint16
    assert reader.spacing == pytest.approx((2.0, 0.5, 0.5))
    expected = np.clip(np.rint(warped), 0, 65535).astype(np.uint16)
    assert expected[0, 0, 0, 0] == 0 and expected[1, 1, 1, 1] == 65535
    np.testing.assert_array_equal(np.stack([reader[t] for t in range(4)]), expected)


@pytest.mark.parametrize("ndim", [2, 3])
def test_movie_to_imagine(tmp_path, ndim):
    spacing = (3.0, 0.5, 0.5) if ndim == 3 else (0.5, 0.5)
    warped, _, _ = _store(tmp_path / "r.zarr", ndim=ndim, spacing=spacing)
    header, cam = export_results(tmp_path / "r.zarr", tmp_path / "reg.imagine", dtype="int16")
    assert cam.stat().st_size == warped.size * 2
    reader = open_series(header)
    assert reader.axes == "t" + "zyx"[-ndim:] and reader.spacing == pytest.approx(spacing)
    np.testing.assert_array_equal(reader[2], convert_frame(warped[2], np.int16))


def test_deformation_npz_layout(tmp_path):
    _, u, nodes = _store(tmp_path / "r.zarr")
    [out] = export_results(tmp_path / "r.zarr", tmp_path / "u.npz", what="deformation")
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["u"], u)
        np.testing.assert_array_equal(npz["nodes_y"], nodes[0])
        np.testing.assert_array_equal(npz["nodes_x"], nodes[1])
        assert str(npz["axes"]) == "tyx" and list(npz["frames"]) == [1, 2, 3, 5]
        np.testing.assert_array_equal(npz["spacing"], [0.5, 0.25])
        assert int(npz["fixed_index"]) == 0 and int(npz["layout_version"]) == 1


def test_bad_export_choices_name_the_field(tmp_path):
    _store(tmp_path / "r.zarr")
    for kwargs, field in [({"what": "mismatch"}, "what"), ({"fmt": "png"}, "fmt"),
                          ({"dtype": "complex64"}, "dtype"), ({"dtype": "nonsense"}, "dtype")]:
        with pytest.raises(ParameterError) as err:
            export_results(tmp_path / "r.zarr", tmp_path / "m.tif", **kwargs)
        assert err.value.field == field
    with pytest.raises(ParameterError) as err:
        export_results(tmp_path / "r.zarr", tmp_path / "m.mov")
    assert err.value.field == "out"


def test_writers_stream_frames_and_check_their_count(tmp_path):
    frames = [np.full((3, 4), t, dtype=np.float32) for t in range(3)]
    write_tiff(tmp_path / "a.tif", iter(frames), shape=(3, 3, 4), dtype=np.uint8, time_step_s=0.2)
    reader = open_series(tmp_path / "a.tif")
    assert reader[2].tolist() == frames[2].astype(np.uint8).tolist()
    assert reader.time_step_s == pytest.approx(0.2) and reader.spacing is None
    with pytest.raises(ParameterError, match="2 frames"):
        write_imagine(tmp_path / "b.imagine", iter(frames[:2]), shape=(3, 3, 4), dtype=np.uint8)


def test_export_of_a_real_registration(tmp_path):
    """The store a job writes (whatever its image layout) exports and reads back."""
    from blockreg.jobs import run_inprocess
    from blockreg_services import demo

    path, _ = demo.write_demo_movie(tmp_path, frames=2)
    spec = demo.demo_spec(path, 2)
    spec["output"] = {**spec.get("output", {}), "path": str(tmp_path / "out.zarr")}
    results = run_inprocess(spec)
    [movie] = export_results(tmp_path / "out.zarr", tmp_path / "m.tif")
    reader = open_series(movie)
    assert reader.shape == results["warped"].shape
    np.testing.assert_array_equal(reader[1], results["warped"][1])
    [npz] = export_results(tmp_path / "out.zarr", tmp_path / "u.npz", what="deformation")
    with np.load(npz) as data:
        np.testing.assert_array_equal(data["u"], results["u"])


@pytest.mark.parametrize("out, what", [("raw.imagine", "movie"), ("m.tif", "movie"),
                                       ("u.npz", "deformation")])
def test_an_export_never_replaces_an_existing_file(tmp_path, out, what):
    # OUT may name the raw recording: exporting to exp.imagine would rewrite its .cam
    _store(tmp_path / "r.zarr")
    existing = tmp_path / ("raw.cam" if out == "raw.imagine" else out)
    existing.write_bytes(b"raw data")
    with pytest.raises(ParameterError) as err:
        export_results(tmp_path / "r.zarr", tmp_path / out, what=what)
    assert err.value.field == "out" and existing.read_bytes() == b"raw data"
