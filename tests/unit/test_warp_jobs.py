"""Warp specs in process: ``blockreg warp --local``, run_inprocess, the subset workflow, checks."""
from __future__ import annotations

import io

import numpy as np
import pytest

from blockreg.apply import apply_deformations, deformations_for_frames, warp_frame
from blockreg.jobs import run_inprocess
from blockreg.jobspec import SpecError, validate_spec
from blockreg.store import open_store

from helpers.smooth_motion import make_smooth_movie

# the setting of test_apply's subset test (a slowly moving sample, period 96 frames)
REGISTER = {"fixed_index": 8, "preprocess": {"bias": 100},
            "params": {"gridsize": [3, 3], "maxshift": [6, 6], "lambda": 1e-3}}


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warp")
    movie = make_smooth_movie((64, 64), 17, period=96.0, max_translation=3.0, max_local=1.0,
                              photons=2000, seed=4)[0]
    np.save(folder / "movie.npy", movie)
    out = folder / "all.zarr"
    run_inprocess({"input": {"path": str(folder / "movie.npy")}, **REGISTER}, out=out)
    return folder, movie, out


def test_blockreg_warp_local_equals_apply_deformations(registered, tmp_path):
    from blockreg_services.cli import main

    folder, movie, store = registered
    out = tmp_path / "w.zarr"
    assert main(["warp", "--local", "--source", str(store), "--out", str(out), "--dtype",
                 "input", "--medfilt", "3"]) == 0
    source = open_store(store)
    nodes = tuple(np.asarray(n) for n in source.attrs["blockreg"]["nodes"])
    expected = apply_deformations(movie, np.asarray(source["u"][...]), nodes, medfilt=3,
                                  dtype="input")
    got = open_store(out)["registered"][...]
    assert got.dtype == np.uint16 and np.array_equal(got, expected)


def test_blockreg_warp_usage_errors_exit_2(registered, tmp_path, capsys):
    from blockreg_services.cli import main

    _, _, store = registered
    assert main(["warp", "--local", "--out", str(tmp_path / "x.zarr")]) == 2
    assert "exactly one of --job ID and --source STORE" in capsys.readouterr().err
    assert main(["warp", "--local", "--source", str(tmp_path / "none.zarr"), "--out",
                 str(tmp_path / "x.zarr")]) == 2
    assert "source.path" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: an even median window
        main(["warp", "--local", "--source", str(store), "--medfilt", "2"])
    assert info.value.code == 2


def test_warp_spec_checks_name_the_field(registered, tmp_path):
    folder, _, store = registered
    np.save(folder / "small.npy", np.zeros((17, 16, 16), np.uint16))
    np.save(folder / "short.npy", np.zeros((5, 64, 64), np.uint16))
    source = {"path": str(store)}
    for spec, field in (({"source": {"job": 3}}, "source.job"),
                        ({"source": source, "input": {"path": str(folder / "small.npy")}},
                         "input.path"),
                        ({"source": source, "input": {"path": str(folder / "short.npy")}},
                         "input.path"),
                        ({"source": {"path": str(store)}, "output": {"path": str(store)}},
                         "output.path"),
                        ({"source": {"path": str(folder / "movie.npy")}}, "source.path")):
        with pytest.raises(SpecError) as info:
            validate_spec({"kind": "warp", **spec})
        assert field in [e["field"] for e in info.value.errors], info.value.errors


def test_subset_workflow_is_within_0p1_px_of_registering_all(registered, tmp_path):
    folder, movie, all_store = registered
    subset = tmp_path / "subset.zarr"
    run_inprocess({"input": {"path": str(folder / "movie.npy"), "register_every": 4}, **REGISTER},
                  out=subset)
    source = open_store(subset)
    assert source.attrs["blockreg"]["frames"] == [0, 4, 8, 12, 16]
    out = tmp_path / "w.zarr"
    warped = run_inprocess({"kind": "warp", "source": {"path": str(subset)}, "tinterpolate": True},
                           out=out)["registered"]
    assert warped.shape == (17, 64, 64)
    assert open_store(out).attrs["blockreg"]["frames"] == list(range(17))
    us = deformations_for_frames(np.asarray(source["u"][...]), 17, tindex=[0, 4, 8, 12, 16])
    nodes = tuple(np.asarray(n) for n in source.attrs["blockreg"]["nodes"])
    for t in (1, 6, 11):
        assert np.array_equal(warped[t], warp_frame(movie[t], us[t], nodes), equal_nan=True)
    every = np.asarray(open_store(all_store)["u"][...])
    interpolated = [t for t in range(17) if t % 4]
    diff = us[interpolated] - every[interpolated]
    # RMS over the interpolated frames and nodes (measured 0.078 px).  Single nodes differ by up
    # to 0.5 px: registering every frame alone against a noisy fixed *frame* (a job's fixed image,
    # unlike test_apply's clean one) jitters that much from frame to frame
    assert np.sqrt(np.mean(diff**2)) < 0.1


def test_progress_line_shows_the_series_windows():
    from blockreg_services.cli import ProgressBar

    stream = io.StringIO()
    ProgressBar(stream)({"id": 4, "state": "running", "frames_total": 8, "frames_done": 8,
                         "phase": "optimize", "phase_done": 2, "phase_total": 5})
    assert "8/8 frames" in stream.getvalue() and "series 2/5 windows" in stream.getvalue()


def test_the_examples_of_docs_jobspec_are_valid_specs():
    import json
    import re
    from pathlib import Path

    from blockreg.jobspec import JobSpec

    text = (Path(__file__).resolve().parents[2] / "docs" / "jobspec.md").read_text()
    specs = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    specs = [s for s in specs if "input" in s or "kind" in s]  # not the error bodies
    kinds = {(s.get("kind", "register"), s.get("algorithm", "apertures")) for s in specs}
    assert {("register", "apertures_mismatch"), ("register", "rigid"), ("warp", "apertures"),
            ("optimize", "apertures")} <= kinds
    for spec in specs:
        JobSpec.model_validate(spec)  # the document's shape (no files here)


def test_submit_makes_a_warp_specs_source_path_absolute(tmp_path):
    from blockreg_services.cli import absolute_paths

    spec = absolute_paths({"kind": "warp", "source": {"path": "runs/job-1.zarr"},
                           "input": {"channel": 1}}, tmp_path)
    assert spec["source"]["path"] == str(tmp_path / "runs" / "job-1.zarr")
    assert spec["input"] == {"channel": 1}


def test_in_process_warp_writes_each_shard_once(registered, tmp_path, monkeypatch):
    import blockreg.store as store

    _, _, source = registered
    writes = []
    write_frames = store.write_frames

    def counting(group, start, results):
        writes.append((start, len(results["registered"])))
        return write_frames(group, start, results)

    monkeypatch.setattr(store, "write_frames", counting)
    monkeypatch.setattr(store, "write_frame", lambda *a, **k: writes.append("frame"))
    out = tmp_path / "w.zarr"
    warped = run_inprocess({"kind": "warp", "source": {"path": str(source)}}, out=out)["registered"]
    stored = open_store(out)
    shard = stored.attrs["blockreg"]["shard_frames"]
    assert sorted(writes) == [(s, min(shard, 17 - s)) for s in range(0, 17, shard)]
    assert np.array_equal(stored["registered"][...], warped, equal_nan=True)
