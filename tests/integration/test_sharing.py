"""A server a lab shares (issue 8), on real parts: PostgreSQL, Redis, the dispatcher, the
coordinator with authentication and a data root, and two Celery worker processes.

- Fairness: user A submits a long job, then user B a short one; B's job finishes while A's still
  runs, within a bound (the broker holds few messages, and a free place goes to the user with the
  fewest waiting).
- A symlink swapped to an outside file right after the submit: the workers never read the
  outside file (the job fails, or reads the original file).
- Tokens: a user sees their own jobs only; no token is a 401.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from blockreg import Client, users
from blockreg.client import ApiError

from helpers import service_fakes as fakes
from helpers.services import fresh_postgres_database

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
# A's 400 frames go out in messages of 25 (one output shard each, 2.5 s of work): without fair
# sharing, B's messages would wait behind all of A's queued ones (about 14 x 2.5 s / 2 workers =
# 17 s); with at most 2 messages waiting in the broker, B's first one runs after about two of A's
# messages. B's 4 frames cost 0.4 s of work.
SHORT_JOB_BOUND_S = 12.0
LONG_FRAMES = 400  # 400 x 0.1 s over two workers: at least 20 s


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The stack with --auth and one data root, and the tokens of alice, bob and an admin."""
    from blockreg.db import make_engine, session_factory
    from blockreg_services.embedded import EmbeddedStack

    home = tmp_path_factory.mktemp("lab")
    root = home / "data"
    env = {"BLOCKREG_AUTH": "true", "BLOCKREG_DATA_ROOTS": str(root),
           # the broker cap and the round-robin make it fair here, not the per-user frame limit
           "BLOCKREG_MAX_QUEUED_BATCHES": "2", "BLOCKREG_USER_MAX_FRAMES_IN_FLIGHT": "100000",
           "BLOCKREG_ALGORITHM_MODULES": "helpers.toy_algorithm,helpers.slow_algorithm",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    with fresh_postgres_database() as url:
        stack = EmbeddedStack(home, port=0, workers=2, database_url=url, env=env,
                              stop_timeout=20)
        with stack:
            engine = make_engine(url)
            with session_factory(engine)() as session:
                tokens = {name: users.add_user(session, name, admin=name == "admin")[1]
                          for name in ("alice", "bob", "admin")}
            engine.dispose()
            yield stack, root, tokens


def client_of(lab, who):
    stack, _, tokens = lab
    return Client(stack.url, token=tokens[who])


def spec(path, algorithm="mean-shift", **more):
    return {"input": {"path": str(path)}, "algorithm": algorithm, "fixed_index": 0,
            "preprocess": {"bias": 100}, "params": {"gridsize": [2, 2]},
            "monitor": ["u", "mismatch"], **more}


def test_tokens_and_ownership_on_the_real_stack(lab):
    stack, root, _ = lab
    (root / "own").mkdir(parents=True, exist_ok=True)
    fakes.make_movie(root / "own" / "m.npy", shape=(3, 20, 16))
    alice, bob = client_of(lab, "alice"), client_of(lab, "bob")
    job = alice.submit(spec(root / "own" / "m.npy"))
    with pytest.raises(ApiError) as info:
        Client(stack.url, token="brk_wrong").jobs()
    assert info.value.status == 401
    with pytest.raises(ApiError) as info:
        bob.status(job)
    assert info.value.status == 404
    assert job not in [j["id"] for j in bob.jobs()]
    assert job in [j["id"] for j in client_of(lab, "admin").jobs()]
    assert alice.wait(job, timeout=120)["state"] == "succeeded"


def test_a_short_job_finishes_while_a_long_one_runs(lab):
    _, root, _ = lab
    folder = root / "fair"
    folder.mkdir(parents=True, exist_ok=True)
    fakes.make_movie(folder / "long.npy", shape=(LONG_FRAMES, 20, 16), seed=1)
    fakes.make_movie(folder / "short.npy", shape=(4, 20, 16), seed=2)
    alice, bob = client_of(lab, "alice"), client_of(lab, "bob")
    long_job = alice.submit(spec(folder / "long.npy", "slow-mean-shift"))
    deadline = time.monotonic() + 60
    while alice.status(long_job)["frames_done"] < 4:  # A holds both workers
        assert time.monotonic() < deadline, alice.status(long_job)
        time.sleep(0.2)
    submitted = time.monotonic()
    short_job = bob.submit(spec(folder / "short.npy", "slow-mean-shift"))
    status = bob.wait(short_job, timeout=SHORT_JOB_BOUND_S, poll=0.2)
    took = time.monotonic() - submitted
    assert status["state"] == "succeeded", status
    long_status = alice.status(long_job)
    assert long_status["state"] == "running", long_status
    assert long_status["frames_done"] < LONG_FRAMES
    assert took < SHORT_JOB_BOUND_S
    alice.cancel(long_job)


def test_a_link_swapped_after_submit_never_reads_the_outside_file(lab, tmp_path):
    _, root, _ = lab
    folder = root / "swap"
    folder.mkdir(parents=True, exist_ok=True)
    movie = fakes.make_movie(folder / "movie.npy", shape=(6, 20, 16), seed=3)
    (folder / "link.npy").symlink_to(folder / "movie.npy")
    secret = np.full((6, 20, 16), 60000, dtype=np.uint16)  # u would be about 240 if read
    np.save(tmp_path / "secret.npy", secret)
    alice = client_of(lab, "alice")
    job = alice.submit(spec(folder / "link.npy", fixed_index=2))
    # right after the submit: both the link and the file it resolved to now lead outside
    for path in (folder / "link.npy", folder / "movie.npy"):
        path.unlink()
        path.symlink_to(tmp_path / "secret.npy")
    status = alice.wait(job, timeout=120)
    assert status["spec"]["input"]["path"] == str((folder / "movie.npy"))
    if status["state"] == "failed":  # refused before opening
        frames = alice.frames(job, limit=10)
        assert all("not inside a data root" in (f["error"] or "") for f in frames
                   if f["state"] == "failed"), frames
    else:  # the workers had it open already: the original file's values
        assert status["state"] == "succeeded", status
        u = alice.results(job)["u"][...]
        for t in range(6):
            np.testing.assert_allclose(
                u[t], fakes.expected_u(movie, t, 2, [[0, 20], [0, 16]], [2, 2], 100), rtol=1e-6)
