"""Job spec validation: every kind of bad spec is rejected with the field that is wrong."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from blockreg.jobspec import JobSpec, SpecError, load_spec_file, validate_spec

SHAPE = (10, 32, 24)  # (T, y, x)


@pytest.fixture
def movie_path(tmp_path):
    path = tmp_path / "movie.npy"
    np.save(path, np.random.default_rng(0).integers(100, 400, size=SHAPE).astype(np.uint16))
    return path


def base(path, **changes):
    spec = {"input": {"path": str(path)},
            "params": {"gridsize": [3, 3], "maxshift": [4, 4], "lambda": 0.01}}
    for dotted, value in changes.items():
        node = spec
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return spec


def fields_of(spec, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate_spec(spec, **kwargs)
    assert str(info.value).startswith("invalid job spec")
    for error in info.value.errors:
        assert set(error) == {"field", "problem"} and error["problem"]
    return [e["field"] for e in info.value.errors]


def test_valid_spec_and_defaults(movie_path):
    spec = validate_spec(base(movie_path))
    assert spec.algorithm == "apertures" and spec.monitor == ["u", "mismatch"]
    assert spec.preprocess.sigma_hp == math.inf and spec.params.passes == 2
    assert spec.params.refine_maxshift == 2
    assert list(spec.frame_indices(SHAPE[0])) == list(range(SHAPE[0]))
    ranged = validate_spec(base(movie_path, **{"input.frames": [1, 9, 3], "params.lambda": [1e-4, 1]}))
    assert list(ranged.frame_indices(SHAPE[0])) == list(range(1, 9, 3))
    assert ranged.params.lam == [1e-4, 1]


@pytest.mark.parametrize("change, field", [
    ({"colour": "red"}, "colour"),
    ({"input.format": "tiff"}, "input.format"),
    ({"params.grid": [3, 3]}, "params.grid"),
    ({"preprocess.sigma": 3}, "preprocess.sigma"),
    ({"output.dir": "/tmp"}, "output.dir"),
    ({"params.gridsize": 3}, "params.gridsize"),
    ({"params.gridsize": [3, 0]}, "params.gridsize.1"),
    ({"params.maxshift": [0, 4]}, "params.maxshift.0"),
    ({"params.lambda": -1}, "params.lambda"),
    ({"params.lambda": [1, 0.5]}, "params.lambda"),
    ({"params.lambda": [0, 1]}, "params.lambda.0"),
    ({"params.lambda": [1, 2, 3]}, "params.lambda"),
    ({"params.passes": 3}, "params.passes"),
    ({"params.normalization": "energy"}, "params.normalization"),
    ({"algorithm": "demons"}, "algorithm"),
    ({"input.roi": [[0, 10, 2], [0, 10]]}, "input.roi.0"),
    ({"input.roi": [[10, 5], [0, 10]]}, "input.roi"),
    ({"input.frames": [0]}, "input.frames"),
    ({"input.frames": [5, 2]}, "input.frames"),
    ({"input.frames": [0, 5, 0]}, "input.frames"),
    ({"fixed_index": -1}, "fixed_index"),
    ({"preprocess.sigma_hp": -2}, "preprocess.sigma_hp"),
    ({"monitor": []}, "monitor"),
    ({"monitor": ["u", "u"]}, "monitor"),
])
def test_shape_errors_name_the_field(movie_path, change, field):
    assert field in fields_of(base(movie_path, **change), check_input=False)


def test_missing_required_fields(movie_path):
    assert set(fields_of({"params": {"gridsize": [3, 3], "maxshift": [4, 4], "lambda": 0}})) == {"input"}
    spec = base(movie_path)
    del spec["params"]["lambda"]
    assert fields_of(spec) == ["params.lambda"]


def test_not_an_object():
    assert fields_of([1, 2]) == ["spec"]


@pytest.mark.parametrize("change, field", [
    ({"params.gridsize": [40, 3]}, "params.gridsize.0"),      # more apertures than pixels
    ({"params.maxshift": [4, 24]}, "params.maxshift.1"),      # not smaller than the image
    ({"params.gridsize": [3, 3, 3], "params.maxshift": [2, 2, 2]}, "params.gridsize"),
    ({"params.maxshift": [4, 4, 4]}, "params.maxshift"),      # one per image axis
    ({"params.overlap": 20}, "params.overlap"),               # apertures wider than the image
    ({"params.overlap": [0, 20]}, "params.overlap.1"),
    ({"input.frames": [0, 11]}, "input.frames"),
    ({"fixed_index": 10}, "fixed_index"),
    ({"input.roi": [[0, 33], [0, 24]]}, "input.roi.0"),
    ({"input.roi": [[0, 10]]}, "input.roi"),
    ({"preprocess.sigma_hp": [3, 3, 3]}, "preprocess.sigma_hp"),
    ({"params.overlap": [1, 1, 1]}, "params.overlap"),
    ({"monitor": ["u", "velocity"]}, "monitor.1"),
    ({"monitor": ["lambdas"]}, "monitor.0"),                  # only with a lambda range
])
def test_input_dependent_errors_name_the_field(movie_path, change, field):
    assert field in fields_of(base(movie_path, **change))


@pytest.mark.parametrize("stop", [2**70, 10**11, 3 * 10**7])
def test_huge_frame_stop_is_a_spec_error_not_a_crash(movie_path, stop):
    # the stop was once expanded into a list before its error stopped the checks: overflow,
    # MemoryError or a gigabyte of ints
    assert fields_of(base(movie_path, **{"input.frames": [0, stop]})) == ["input.frames"]
    spec = JobSpec.model_validate(base(movie_path, **{"input.frames": [2, stop, 3]}))
    assert list(spec.frame_indices(SHAPE[0])) == list(range(2, SHAPE[0], 3))


def test_roi_shrinks_the_image_for_the_limits(movie_path):
    # maxshift 8 fits the 24-pixel x axis but not a 6-pixel ROI of it
    spec = base(movie_path, **{"params.maxshift": [4, 8]})
    validate_spec(spec)
    spec["input"]["roi"] = [[0, 32], [10, 16]]
    assert fields_of(spec) == ["params.maxshift.1"]


def test_monitor_names_come_from_the_algorithm(movie_path):
    auto = base(movie_path, **{"params.lambda": [1e-3, 1], "monitor": ["u", "lambdas", "warped"]})
    assert validate_spec(auto).monitor == ["u", "lambdas", "warped"]


def test_input_must_exist_and_be_readable(tmp_path, movie_path):
    assert fields_of(base(tmp_path / "absent.tif")) == ["input.path"]
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"no numpy header here")
    with pytest.raises(SpecError) as info:
        validate_spec(base(garbage))
    assert info.value.errors[0]["field"] == "input.path"
    assert "cannot be read" in info.value.errors[0]["problem"]
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((5, 7)))  # one spatial axis: not a registrable series
    assert fields_of(base(flat)) == ["input.path"]


def test_output_must_not_exist(movie_path, tmp_path):
    (tmp_path / "out.zarr").mkdir()
    assert fields_of(base(movie_path, **{"output.path": str(tmp_path / "out.zarr")})) == ["output.path"]
    validate_spec(base(movie_path, **{"output.path": str(tmp_path / "new.zarr")}))


def test_allowed_roots(movie_path, tmp_path):
    inside = [str(tmp_path)]
    validate_spec(base(movie_path), allowed_roots=inside)
    assert fields_of(base(movie_path), allowed_roots=[str(tmp_path / "sub")]) == ["input.path"]
    # '..' cannot climb out of a root: paths are compared after resolve()
    sneaky = tmp_path / "sub" / ".." / "movie.npy"
    assert fields_of(base(sneaky), allowed_roots=[str(tmp_path / "sub")]) == ["input.path"]
    outside = base(movie_path, **{"output.path": "/elsewhere/out.zarr"})
    assert fields_of(outside, allowed_roots=inside) == ["output.path"]


def test_symlink_out_of_a_root_is_rejected(movie_path, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.npy").symlink_to(movie_path)
    assert fields_of(base(root / "link.npy"), allowed_roots=[str(root)]) == ["input.path"]


@pytest.mark.parametrize("named", ["rec.imagine", "rec.cam"])
def test_an_imagine_file_linked_out_of_a_root_is_rejected(tmp_path, named):
    # the reader opens the header's sibling too: a .cam (or header) that is a link out of the
    # root would be read as pixels although the path named in the spec lies inside
    from blockreg.io.export import write_imagine

    frames = np.random.default_rng(1).integers(0, 500, size=SHAPE).astype(np.uint16)
    header, cam = write_imagine(tmp_path / "rec.imagine", iter(frames), shape=SHAPE, dtype="uint16")
    root = tmp_path / "root"
    root.mkdir()
    for real in (header, cam):
        (root / real.name).write_bytes(real.read_bytes())
    validate_spec(base(root / named), allowed_roots=[str(root)])  # a plain copy is fine
    other = "rec.cam" if named == "rec.imagine" else "rec.imagine"
    (root / other).unlink()
    (root / other).symlink_to(tmp_path / other)
    assert fields_of(base(root / named), allowed_roots=[str(root)]) == ["input.path"]


def test_json_round_trip_keeps_infinity(movie_path):
    spec = validate_spec(base(movie_path, **{"preprocess.sigma_hp": [math.inf, 5]}))
    text = json.dumps(spec.to_json(), allow_nan=False)  # strict JSON: no bare Infinity
    again = JobSpec.model_validate(json.loads(text))
    assert again == spec and again.preprocess.sigma_hp == [math.inf, 5]
    assert spec.to_json()["params"]["lambda"] == 0.01  # the public name, not the Python one


SPEC_TEXT = {
    ".json": '{"input": {"path": "PATH"}, "params": {"gridsize": [3, 3], "maxshift": [4, 4],'
             ' "lambda": [0.001, 1]}, "monitor": ["u"]}',
    ".toml": 'monitor = ["u"]\n[input]\npath = "PATH"\n[params]\ngridsize = [3, 3]\n'
             'maxshift = [4, 4]\nlambda = [0.001, 1]\n',
    ".yaml": 'input:\n  path: PATH\nparams:\n  gridsize: [3, 3]\n  maxshift: [4, 4]\n'
             '  lambda: [0.001, 1]\nmonitor: [u]\n',
}


@pytest.mark.parametrize("suffix", sorted(SPEC_TEXT))
def test_load_spec_file_formats_agree(tmp_path, movie_path, suffix):
    path = tmp_path / f"spec{suffix}"
    path.write_text(SPEC_TEXT[suffix].replace("PATH", str(movie_path)))
    spec = validate_spec(load_spec_file(path))
    assert spec == validate_spec({"input": {"path": str(movie_path)}, "monitor": ["u"],
                                  "params": {"gridsize": [3, 3], "maxshift": [4, 4],
                                             "lambda": [0.001, 1]}})


def test_load_spec_file_errors(tmp_path):
    with pytest.raises(ValueError, match="path: unknown spec format"):
        load_spec_file(tmp_path / "spec.ini")
    with pytest.raises(ValueError, match="path: cannot read"):
        load_spec_file(tmp_path / "absent.json")
    bad = tmp_path / "bad.toml"
    bad.write_text("input = [unclosed")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_spec_file(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_spec_file(listed)


@pytest.mark.parametrize("lam", [[0.001, 0.004], "Infinity", float("nan"), -1.0])
def test_lambda_the_algorithm_would_refuse_is_a_spec_error(lam):
    # These used to pass the schema and fail later inside the algorithm (HTTP 500, CLI traceback).
    data = {"input": {"path": "/nonexistent.npy"}, "algorithm": "apertures",
            "params": {"gridsize": [4, 4], "maxshift": [5, 5], "lambda": lam}}
    with pytest.raises(SpecError) as info:
        validate_spec(data, check_input=False)
    assert [e["field"] for e in info.value.errors] == ["params.lambda"]


def test_nan_bias_is_a_spec_error():
    data = {"input": {"path": "/nonexistent.npy"}, "algorithm": "apertures",
            "preprocess": {"bias": float("nan")},
            "params": {"gridsize": [4, 4], "maxshift": [5, 5], "lambda": 0.01}}
    with pytest.raises(SpecError) as info:
        validate_spec(data, check_input=False)
    assert [e["field"] for e in info.value.errors] == ["preprocess.bias"]
