"""A job's store through the service: one message per shard, one file per shard per array, every
frame there (issue 9).  The 2,000-frame count of files is tests/unit/test_store_layout.py's (the
in-process runner: the same store, without 4,000 database commits)."""
from __future__ import annotations

import numpy as np

from helpers import service_fakes as fakes
from helpers.api_app import run_all, toy_spec_for


def _chunk_files(array_folder):
    return [p for p in (array_folder / "c").rglob("*") if p.is_file()]


def test_one_message_and_one_file_per_shard(app, client, broker, tmp_path):
    from blockreg.store import member, open_store

    n = 160  # shards of min(64, ceil(160 / 16)) = 10 frames
    movie = fakes.make_movie(tmp_path / "long.npy", shape=(n, 16, 16), seed=5)
    spec = toy_spec_for(tmp_path / "long.npy", fixed_index=0, params={"gridsize": [2, 2]},
                        monitor=["u", "mismatch", "warped"])
    job_id = client.post("/api/v1/jobs", json=spec).json["id"]
    run_all(app, broker)
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["state"] == "succeeded", status

    # one message per shard, each shard sent once
    batches = [frames for _, (job, frames), _ in broker.sent if job == job_id]
    assert len(batches) == n // 10
    assert all(b == list(range(b[0], b[0] + 10)) and b[0] % 10 == 0 for b in batches)

    path = tmp_path / "data" / "results" / f"job-{job_id}.zarr"
    store = open_store(status["output_path"])
    assert store.attrs["blockreg"]["shard_frames"] == 10
    for folder in (path / "warped" / "0", path / "u", path / "mismatch"):
        assert len(_chunk_files(folder)) == n // 10, folder
    # nothing lost on the way: every frame holds its own value
    expected = fakes.shot_noise_flattened(movie, 100)
    np.testing.assert_array_equal(member(store, "warped")[...], expected)
    u = store["u"][...]
    means = (expected - expected[0]).reshape(n, -1).mean(axis=1)
    np.testing.assert_allclose(u[:, 0, 0, 0], means, rtol=1e-5, atol=1e-6)
