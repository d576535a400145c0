"""The algorithm registry: registering, replacing and unregistering, and what it drives."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from blockreg.jobspec import JobSpec, SpecError, validate_spec
from blockreg.registry import (AlgorithmEntry, UnknownAlgorithm, algorithm_names, get_algorithm,
                               register_algorithm, registered, unregister_algorithm)

from helpers import service_fakes as fakes

TESTS = Path(__file__).resolve().parents[1]


def test_builtin_apertures_is_registered():
    assert algorithm_names()[0] == "apertures"
    entry = get_algorithm("apertures")
    assert {"u", "mismatch", "lambdas"} <= set(entry.variables)
    with pytest.raises(UnknownAlgorithm, match="'demons'.*'apertures'"):
        get_algorithm("demons")


def test_registered_adds_then_removes():
    assert "mean-shift" not in algorithm_names()
    with registered(fakes.MEAN_SHIFT) as entry:
        assert get_algorithm("mean-shift") is entry
        with pytest.raises(ValueError, match="already registered"):
            register_algorithm(AlgorithmEntry("mean-shift", entry.params, entry.build, entry.nodes))
    assert "mean-shift" not in algorithm_names()
    with pytest.raises(KeyError):
        unregister_algorithm("mean-shift")


def test_registered_can_replace_and_restores_the_original():
    original = get_algorithm("apertures")
    stand_in = AlgorithmEntry("apertures", fakes.MeanShiftParams, fakes.MEAN_SHIFT.build,
                              fakes.MEAN_SHIFT.nodes)
    with registered(stand_in):
        spec = JobSpec.model_validate({"input": {"path": "/x.npy"}, "params": {"gridsize": [2, 2]}})
        assert type(spec.params) is fakes.MeanShiftParams
    assert get_algorithm("apertures") is original
    with pytest.raises(SpecError) as info:  # the stand-in's params are no longer valid
        validate_spec({"input": {"path": "/x.npy"}, "params": {"gridsize": [2, 2]}},
                      check_input=False)
    assert {e["field"] for e in info.value.errors} == {"params.maxshift", "params.lambda"}


def test_spec_of_a_registered_algorithm_validates_pickles_and_round_trips(tmp_path):
    movie = tmp_path / "m.npy"
    fakes.make_movie(movie, shape=(4, 10, 12))
    data = {"input": {"path": str(movie)}, "algorithm": "mean-shift",
            "params": {"gridsize": [2, 3]}, "monitor": ["u", "warped"]}
    with pytest.raises(SpecError) as info:
        validate_spec(data)
    assert [e["field"] for e in info.value.errors] == ["algorithm"]
    with registered(fakes.MEAN_SHIFT):
        spec = validate_spec(data)
        assert type(spec).__name__ == "MeanShiftJob" and isinstance(spec, JobSpec)
        assert pickle.loads(pickle.dumps(spec)) == spec
        assert JobSpec.model_validate(json.loads(json.dumps(spec.to_json()))) == spec
        assert JobSpec.model_validate_json(spec.model_dump_json(by_alias=True)) == spec
        # the toy's own rules (ParameterError) come back as params.<field>
        for gridsize, field in (([2, 30], "params.gridsize.1"), ([2], "params.gridsize")):
            with pytest.raises(SpecError) as info:
                validate_spec({**data, "params": {"gridsize": gridsize}})
            assert [e["field"] for e in info.value.errors] == [field]
        with pytest.raises(SpecError) as info:  # its monitored names are its own
            validate_spec({**data, "monitor": ["u", "lambda"]})
        assert [e["field"] for e in info.value.errors] == ["monitor.1"]
        with pytest.raises(SpecError) as info:  # and its params model is strict
            validate_spec({**data, "params": {"gridsize": [2, 3], "lambda": 1}})
        assert [e["field"] for e in info.value.errors] == ["params.lambda"]


def test_default_monitor_is_the_algorithms():
    import dataclasses

    only_u = dataclasses.replace(fakes.MEAN_SHIFT, default_monitor=("u",))
    data = {"input": {"path": "/x.npy"}, "algorithm": "mean-shift", "params": {"gridsize": [2, 2]}}
    with registered(only_u):
        assert JobSpec.model_validate(data).monitor == ["u"]
    with registered(fakes.MEAN_SHIFT):
        assert JobSpec.model_validate(data).monitor == ["u", "mismatch"]


def test_json_schema_has_one_variant_per_algorithm():
    alone = JobSpec.model_json_schema()  # the same shape with one algorithm as with several
    assert alone["discriminator"]["mapping"] == {
        "apertures": "#/$defs/AperturesJob", "apertures_mismatch": "#/$defs/AperturesMismatchJob",
        "rigid": "#/$defs/RigidJob"}
    assert alone["$defs"]["AperturesJob"]["properties"]["algorithm"]["const"] == "apertures"
    with registered(fakes.MEAN_SHIFT):
        schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schema["discriminator"]["propertyName"] == "algorithm"
    assert set(schema["discriminator"]["mapping"]) == {"apertures", "apertures_mismatch", "rigid",
                                                       "mean-shift"}
    defs = schema["$defs"]
    assert defs["MeanShiftJob"]["properties"]["params"] == {
        "$ref": "#/components/schemas/MeanShiftParams", "description": "Parameters of 'mean-shift'."}
    assert "lambda" in defs["AperturesParams"]["properties"]
    # what the schema accepts is what the models accept (a spec without "algorithm" is apertures)
    jsonschema = pytest.importorskip("jsonschema")
    check = jsonschema.Draft202012Validator({**schema, "components": {"schemas": defs}})
    check.validate({"input": {"path": "/x.npy"},
                    "params": {"gridsize": [2, 2], "maxshift": [1, 1], "lambda": 1}})
    check.validate({"input": {"path": "/x.npy"}, "algorithm": "mean-shift",
                    "params": {"gridsize": [2, 2]}})
    with pytest.raises(jsonschema.ValidationError):
        check.validate({"input": {"path": "/x.npy"}, "params": {"gridsize": [2, 2]}})


def test_extra_modules_come_from_the_setting(tmp_path):
    # what worker processes do: BLOCKREG_ALGORITHM_MODULES names modules that register algorithms
    (tmp_path / "my_plugin.py").write_text(
        "from blockreg.registry import register_algorithm\n"
        "from helpers.service_fakes import MEAN_SHIFT\n"
        "register_algorithm(MEAN_SHIFT)\n")
    code = "from blockreg.registry import algorithm_names; print(','.join(algorithm_names()))"
    env = {"PYTHONPATH": f"{tmp_path}:{TESTS}", "BLOCKREG_ALGORITHM_MODULES": "my_plugin",
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "apertures,apertures_mismatch,rigid,mean-shift", out.stderr
    env["BLOCKREG_ALGORITHM_MODULES"] = "no_such_plugin"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "BLOCKREG_ALGORITHM_MODULES: cannot import 'no_such_plugin'" in out.stderr


def test_algorithms_import_no_pydantic():
    # the layer rule: the params models live in blockreg.jobkinds, not in the algorithms
    code = ("import sys, blockreg.algorithms.apertures, blockreg.algorithms.base; "
            "print(sorted({'pydantic', 'flask', 'celery', 'sqlalchemy', 'zarr'} & "
            "{m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
