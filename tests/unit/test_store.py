"""The Zarr results layout: declared arrays, one chunk per frame, NaN fill, safe creation."""
import json
from pathlib import Path

import numpy as np
import pytest

from blockreg.algorithms.base import ArrayDecl
from blockreg.store import (create_store, member, open_results, open_store, read_results,
                            write_frame)

DECLS = {
    "u": ArrayDecl((3, 4, 2), "float64"),
    "mismatch": ArrayDecl((), "float64"),
    "warped": ArrayDecl((10, 12), "float32"),
}


def _make(tmp_path, **kw):
    fixed = np.arange(120, dtype=np.float64).reshape(10, 12)
    attrs = {"spec": {"lam": 1e-3}, "nodes": [np.linspace(0, 9, 3), np.linspace(0, 11, 4)],
             "frames": [4, 5, 6], "fixed_index": np.int64(5), "axes": "tyx", "spacing": None}
    return create_store(tmp_path / "r.zarr", 3, DECLS, attrs=attrs, fixed=fixed, **kw), fixed


def test_layout_chunks_fill_and_dimension_names(tmp_path):
    group, fixed = _make(tmp_path)
    u, mm, w = group["u"], group["mismatch"], member(group, "warped")
    assert u.shape == (3, 3, 4, 2) and u.chunks == (1, 3, 4, 2) and u.dtype == np.float64
    assert mm.shape == (3,) and mm.chunks == (1,)
    assert w.dtype == np.float32 and w.metadata.dimension_names == ("t", "y", "x")
    assert group["warped/0"].path == w.path            # images are OME-Zarr groups, level "0"
    assert member(group, "fixed").metadata.dimension_names == ("y", "x")
    assert np.isnan(u[...]).all() and np.isnan(w[...]).all()
    np.testing.assert_array_equal(member(group, "fixed")[...], fixed.astype(np.float32))
    meta = open_results(tmp_path / "r.zarr").attrs["blockreg"]
    assert meta["frames"] == [4, 5, 6] and meta["fixed_index"] == 5 and "version" in meta
    assert meta["nodes"][1] == [0.0, 11 / 3, 22 / 3, 11.0]
    # the metadata is plain JSON on disk (readable without blockreg)
    doc = json.loads((tmp_path / "r.zarr" / "zarr.json").read_text())
    assert doc["attributes"]["blockreg"]["spec"] == {"lam": 0.001}


def test_write_frame_is_idempotent_and_frames_are_separate_chunks(tmp_path):
    group, _ = _make(tmp_path, shard=1)
    rng = np.random.default_rng(1)
    result = {"u": rng.random((3, 4, 2)), "mismatch": 0.25, "warped": rng.random((10, 12))}
    write_frame(group, 1, result)
    chunk_files = sorted(p for p in (tmp_path / "r.zarr" / "u").rglob("*") if p.is_file()
                         and p.name != "zarr.json")
    before = [p.read_bytes() for p in chunk_files]
    write_frame(group, 1, result)
    after = [p.read_bytes() for p in chunk_files]
    assert before == after and len(chunk_files) == 1       # frame 1 alone wrote one chunk
    data = read_results(tmp_path / "r.zarr")
    np.testing.assert_array_equal(data["u"][1], result["u"])
    assert data["mismatch"][1] == 0.25 and np.isnan(data["mismatch"][[0, 2]]).all()
    np.testing.assert_array_equal(data["warped"][1], result["warped"].astype(np.float32))


def test_write_frame_rejects_bad_results(tmp_path):
    group, _ = _make(tmp_path)
    with pytest.raises(ValueError, match="results.*'bogus'"):
        write_frame(group, 0, {"bogus": 1.0})
    with pytest.raises(ValueError, match="results.*shape"):
        write_frame(group, 0, {"u": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="index"):
        write_frame(group, 3, {"mismatch": 1.0})


def test_existing_store_is_never_replaced_silently(tmp_path):
    group, _ = _make(tmp_path)
    write_frame(group, 0, {"mismatch": 7.0})
    with pytest.raises(ValueError, match="out.*exists"):
        _make(tmp_path)
    assert read_results(tmp_path / "r.zarr")["mismatch"][0] == 7.0
    group, _ = _make(tmp_path, overwrite=True)
    assert np.isnan(read_results(tmp_path / "r.zarr")["mismatch"]).all()


def test_overwrite_refuses_foreign_directories(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a Zarr group"):
        create_store(foreign, 1, DECLS, attrs={}, overwrite=True)
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_open_store_modes_and_missing(tmp_path):
    _make(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        open_store(tmp_path / "r.zarr", "w")
    with pytest.raises(ValueError, match="path"):
        open_store(tmp_path / "missing.zarr")
    group = open_store(tmp_path / "r.zarr", "r+")
    write_frame(group, 2, {"mismatch": 1.5})
    assert read_results(Path(tmp_path / "r.zarr"))["mismatch"][2] == 1.5


def test_store_module_does_not_import_the_algorithms():
    import ast
    import blockreg.store as store

    tree = ast.parse(Path(store.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not any("reg" in m.split(".") or "algorithms" in m for m in imported)


def test_non_finite_numpy_scalars_in_attrs_stay_valid_json(tmp_path):
    # JSON has no NaN/Inf: a NumPy float scalar must take the same string route as a Python float.
    attrs = {"spec": {"lam": np.float64(np.nan), "cap": np.float32(np.inf), "plain": float("-inf")},
             "values": np.array([1.0, np.nan])}
    create_store(tmp_path / "r.zarr", 2, DECLS, attrs=attrs)
    text = (tmp_path / "r.zarr" / "zarr.json").read_text()
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written to zarr.json"))
    spec = doc["attributes"]["blockreg"]["spec"]
    assert spec == {"lam": "nan", "cap": "inf", "plain": "-inf"}
    assert doc["attributes"]["blockreg"]["values"] == [1.0, "nan"]


def test_attrs_copied_from_another_store_do_not_override_this_stores_layout(tmp_path):
    # an optimize job's store starts from its source's attributes (frames, nodes, roi, ...)
    source_attrs = {"spec": {}, "frames": [0], "shard_frames": 64, "store_format": 1,
                    "version": "0.0.0"}
    group = create_store(tmp_path / "r.zarr", 1, {"u": DECLS["u"]}, attrs=source_attrs)
    meta = open_results(tmp_path / "r.zarr").attrs["blockreg"]
    assert meta["shard_frames"] == group["u"].shards[0] == 1
    assert meta["store_format"] == 2 and meta["version"] != "0.0.0"
