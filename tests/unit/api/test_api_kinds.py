"""Two-stage (apertures_mismatch), rigid and warp jobs through the API on SQLite and a fake broker.

The fake broker records the messages; the test runs them as the Celery workers would (frame
batches through run_frames, series windows through run_window), so the whole flow of a
two-stage job runs here in seconds: frames, the dispatcher starting the series phase, one task per
window, the stitch, ``u`` in the store, and a warp job on the result.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from blockreg.celery_app import TASK_REGISTER_FRAMES, TASK_SOLVE_WINDOW
from blockreg.store import open_store

from helpers.api_app import spec_for

MISMATCH_PARAMS = {"gridsize": [3, 2], "maxshift": [3, 3], "lambda": 0.01, "lambda_t": 0.05,
                   "window": 8, "window_overlap": 4}


def _smooth_movie(path, nframes=12):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    from helpers.smooth_motion import make_smooth_movie

    movie = make_smooth_movie((24, 20), nframes, photons=800, seed=2, period=20)[0]
    np.save(path, movie)
    return movie


def run_everything(app, broker):
    """Dispatch rounds until nothing is sent, running each message as a worker would."""
    from blockreg.orchestrate.dispatch import dispatch_once
    from blockreg.orchestrate.frames import run_frames
    from blockreg.orchestrate.phases import run_window

    sessions = app.extensions["blockreg"].sessions
    for _ in range(100):
        with sessions() as session:
            sent = dispatch_once(session, broker,
                                 max_batches=app.config["MAX_BATCHES_PER_JOB"])
        if not sent:
            return
        for name, args, _ in broker.sent[-sent:]:
            if name == TASK_REGISTER_FRAMES:
                run_frames(args[0], args[1], worker="test-worker", sessions=sessions)
            else:
                assert name == TASK_SOLVE_WINDOW
                assert run_window(*args, sessions=sessions) in ("done", "skipped")
    raise AssertionError("the job never stopped sending messages")


@pytest.mark.parametrize("kind, change, field", [
    ("mismatch", {"window": 6, "window_overlap": 5}, "params.window_overlap"),
    ("mismatch", {"lambda_frames": [0, 99]}, "params.lambda_frames.1"),
    ("mismatch", {"lambda": [1, 0.1]}, "params.lambda"),
    ("mismatch", {"window": 1}, "params.window"),
    ("mismatch", {"gridsize": [30, 2]}, "params.gridsize.0"),
    ("rigid", {"maxshift": [2, 2, 2]}, "params.maxshift"),
    ("rigid", {"levels": 9}, "params.levels"),
    ("rigid", {"gridsize": [3]}, "params.gridsize"),
])
def test_bad_algorithm_params_are_422_naming_the_field(client, broker, movie_path, kind, change,
                                                       field):
    if kind == "mismatch":
        spec = spec_for(movie_path, algorithm="apertures_mismatch",
                        params={**MISMATCH_PARAMS, **change})
    else:
        spec = spec_for(movie_path, algorithm="rigid", params={"maxshift": [2, 2], **change})
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 422, response.json
    assert field in [e["field"] for e in response.json["errors"]], response.json
    assert client.get("/api/v1/jobs").json["total"] == 0 and broker.sent == []


def test_series_solve_needs_mmis_monitored(client, movie_path):
    spec = spec_for(movie_path, algorithm="apertures_mismatch", params=MISMATCH_PARAMS,
                    monitor=["Es", "cs", "Qs"])
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 422
    assert response.json["errors"] == [{"field": "monitor", "problem": "must include 'mmis': "
                                        "the series solve (params.lambda) reads it"}]


def test_two_stage_job_solves_the_series_in_window_tasks(app, client, broker, tmp_path):
    from blockreg.jobs import plan_job, run_inprocess
    from blockreg.reg.series import optimize_series_windowed

    path = tmp_path / "smooth.npy"
    _smooth_movie(path, nframes=16)
    spec = spec_for(path, algorithm="apertures_mismatch", params=MISMATCH_PARAMS)
    job_id = client.post("/api/v1/jobs", json=spec).json["id"]
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["phase"] == "optimize" and status["phase_total"] == 0
    run_everything(app, broker)
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "succeeded", status
    windows = [m for m in broker.sent if m[0] == TASK_SOLVE_WINDOW]
    assert sorted(m[1][1] for m in windows) == [0, 1, 2]  # 16 frames, windows of 8 sharing 4
    assert (status["phase"], status["phase_done"], status["phase_total"]) == ("done", 3, 3)
    store = open_store(status["output_path"])
    cs, Qs, mmis, u = (np.asarray(store[name][...]) for name in ("cs", "Qs", "mmis", "u"))
    nodes = plan_job(spec).nodes
    expected = optimize_series_windowed(cs, Qs, mmis, nodes, 0.01, 0.05, window=8, overlap=4)
    np.testing.assert_allclose(u, expected, rtol=0, atol=1e-9)
    assert store.attrs["blockreg"]["series"]["windows"] == [[0, 8], [4, 12], [8, 16]]
    # run_inprocess computes the same two stages
    inprocess = run_inprocess(spec)
    np.testing.assert_allclose(inprocess["u"], u, rtol=0, atol=1e-9)


def test_warp_job_by_job_id_matches_the_in_process_warp(app, client, broker, tmp_path):
    from blockreg.apply import apply_deformations

    path = tmp_path / "smooth.npy"
    movie = _smooth_movie(path, nframes=6)
    job_id = client.post("/api/v1/jobs", json=spec_for(path)).json["id"]
    run_everything(app, broker)
    for bad, field in (({"source": {"job": 999}}, "source.job"), ({"source": {}}, "source"),
                       ({"source": {"job": job_id}, "medfilt": 2}, "medfilt"),
                       ({"source": {"job": job_id}, "input": {"channel": 1}}, "input.channel"),
                       ({"source": {"job": job_id}, "dtype": "int8"}, "dtype")):
        response = client.post("/api/v1/jobs", json={"kind": "warp", **bad})
        assert response.status_code == 422, response.json
        assert field in [e["field"] for e in response.json["errors"]], response.json
    assert client.post("/api/v1/jobs", json={"kind": "wrap"}).json["errors"][0]["field"] == "kind"
    warp = client.post("/api/v1/jobs", json={"kind": "warp", "source": {"job": job_id},
                                             "dtype": "input"})
    assert warp.status_code == 201, warp.json
    run_everything(app, broker)
    status = client.get(f"/api/v1/jobs/{warp.json['id']}").json
    assert status["state"] == "succeeded" and status["frames_total"] == 6, status
    source = open_store(client.get(f"/api/v1/jobs/{job_id}").json["output_path"])
    nodes = tuple(np.asarray(n) for n in source.attrs["blockreg"]["nodes"])
    expected = apply_deformations(movie, np.asarray(source["u"][...]), nodes, dtype="input")
    got = np.asarray(open_store(status["output_path"])["registered"][...])
    assert got.dtype == np.uint16 and np.array_equal(got, expected)


def test_rigid_job_runs(app, client, broker, movie_path):
    response = client.post("/api/v1/jobs", json=spec_for(movie_path, algorithm="rigid",
                                                          params={"maxshift": [2, 2]}))
    assert response.status_code == 201, response.json
    run_everything(app, broker)
    status = client.get(f"/api/v1/jobs/{response.json['id']}").json
    assert status["state"] == "succeeded" and status["phase"] is None, status
    store = open_store(status["output_path"])
    assert store["tform"].shape == (12, 3, 3) and np.isfinite(store["u"][...]).all()


def test_optimize_job_on_an_existing_two_stage_store(app, client, broker, tmp_path):
    from blockreg.jobs import plan_job, run_inprocess
    from blockreg.reg.series import optimize_series_windowed
    from blockreg.seriesjob import SeriesSettings, choose_lambda

    path = tmp_path / "smooth.npy"
    _smooth_movie(path, nframes=16)
    fits_only = {k: v for k, v in MISMATCH_PARAMS.items() if k not in ("lambda", "lambda_t")}
    spec = spec_for(path, algorithm="apertures_mismatch", params=fits_only)
    first = client.post("/api/v1/jobs", json=spec).json["id"]
    run_everything(app, broker)
    status = client.get(f"/api/v1/jobs/{first}").json
    assert status["state"] == "succeeded" and status["phase"] is None  # no lambda: fits only
    assert "u" not in open_store(status["output_path"])
    for bad, field in (({"source": {"job": first}, "params": {"lambda": 0.01, "window": 8,
                                                              "window_overlap": 5}},
                        "params.window_overlap"),
                       ({"source": {"job": first}, "params": {}}, "params.lambda"),
                       ({"source": {"path": str(path)}, "params": {"lambda": 0.01}},
                        "source.path")):
        response = client.post("/api/v1/jobs", json={"kind": "optimize", **bad})
        assert response.status_code == 422, response.json
        assert field in [e["field"] for e in response.json["errors"]], response.json
    series = {"lambda": [1e-3, 1.0], "lambda_t": 0.05, "window": 8, "window_overlap": 4,
              "lambda_frames": [3, 12]}
    job = client.post("/api/v1/jobs", json={"kind": "optimize", "source": {"job": first},
                                            "params": series})
    assert job.status_code == 201, job.json
    run_everything(app, broker)
    status = client.get(f"/api/v1/jobs/{job.json['id']}").json
    assert status["state"] == "succeeded", status
    assert (status["phase"], status["phase_done"], status["phase_total"]) == ("done", 3, 3)
    source, out = open_store(client.get(f"/api/v1/jobs/{first}").json["output_path"]), \
        open_store(status["output_path"])
    cs, Qs, mmis = (np.asarray(source[name][...]) for name in ("cs", "Qs", "mmis"))
    nodes = plan_job(spec).nodes
    lam = choose_lambda(SeriesSettings((1e-3, 1.0), 0.05, 8, 4, (3, 12)), cs, Qs, mmis, nodes)
    assert out["lambda"][0] == lam and out.attrs["blockreg"]["series"]["lambda"] == lam
    expected = optimize_series_windowed(cs, Qs, mmis, nodes, lam, 0.05, window=8, overlap=4)
    np.testing.assert_allclose(out["u"][...], expected, rtol=0, atol=1e-9)
    assert out.attrs["blockreg"]["frames"] == list(range(16))
    first_store = client.get(f"/api/v1/jobs/{first}").json["output_path"]
    inprocess = run_inprocess({"kind": "optimize", "source": {"path": first_store},
                               "params": series})
    np.testing.assert_allclose(inprocess["u"], expected, rtol=0, atol=1e-9)
    # and it is a warp job's source like any other
    warp = client.post("/api/v1/jobs", json={"kind": "warp", "source": {"job": job.json["id"]}})
    assert warp.status_code == 201, warp.json
    run_everything(app, broker)
    assert client.get(f"/api/v1/jobs/{warp.json['id']}").json["state"] == "succeeded"


def test_auto_lambda_of_a_two_stage_job_runs_in_a_task(app, client, broker, tmp_path):
    from blockreg.jobs import plan_job
    from blockreg.seriesjob import SeriesSettings, choose_lambda

    path = tmp_path / "smooth.npy"
    _smooth_movie(path, nframes=16)
    params = {**MISMATCH_PARAMS, "lambda": [1e-3, 1.0], "lambda_frames": [2, 9]}
    spec = spec_for(path, algorithm="apertures_mismatch", params=params)
    job_id = client.post("/api/v1/jobs", json=spec).json["id"]
    run_everything(app, broker)
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "succeeded", status
    phase_messages = [m[1][1] for m in broker.sent if m[0] == TASK_SOLVE_WINDOW]
    assert phase_messages == [-1, 0, 1, 2]  # lambda first (on a worker), then the windows
    store = open_store(status["output_path"])
    cs, Qs, mmis = (np.asarray(store[name][...]) for name in ("cs", "Qs", "mmis"))
    lam = choose_lambda(SeriesSettings((1e-3, 1.0), 0.05, 8, 4, (2, 9)), cs, Qs, mmis,
                        plan_job(spec).nodes)
    assert store.attrs["blockreg"]["series"]["lambda"] == lam


def test_auto_lambda_t(app, client, broker, tmp_path):
    from blockreg.jobs import plan_job, run_inprocess
    from blockreg.seriesjob import choose_lambda_t

    path = tmp_path / "smooth.npy"
    _smooth_movie(path, nframes=16)
    params = {**MISMATCH_PARAMS, "lambda_t": [1e-3, 10.0]}
    spec = spec_for(path, algorithm="apertures_mismatch", params=params)
    bad = client.post("/api/v1/jobs", json={**spec, "monitor": ["cs", "Qs", "mmis"]})
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "monitor", bad.json
    job_id = client.post("/api/v1/jobs", json=spec).json["id"]
    run_everything(app, broker)
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "succeeded", status
    store = open_store(status["output_path"])
    Es, cs, Qs = (np.asarray(store[name][...]) for name in ("Es", "cs", "Qs"))
    lam_t = choose_lambda_t(Es, cs, Qs, plan_job(spec).nodes, 0.01, (1e-3, 10.0))
    assert store.attrs["blockreg"]["series"]["lambda_t"] == lam_t
    assert 1e-3 <= lam_t < 10.0
    np.testing.assert_allclose(run_inprocess(spec)["u"], store["u"][...], rtol=0, atol=1e-9)
