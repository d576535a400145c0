"""A plugin algorithm through the real parts: coordinator and Celery workers import it by setting.

The session's service runs with ``BLOCKREG_ALGORITHM_MODULES=helpers.toy_algorithm``
(tests/integration/conftest.py), as a lab would deploy its own algorithm package: a job naming
``"mean-shift"`` is validated by the coordinator and computed by the workers, and its ``u`` is
the value computed directly from the movie.
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import service_fakes as fakes

pytestmark = pytest.mark.integration


def test_plugin_algorithm_runs_on_real_workers(service, client):
    folder = service.data_dir / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    movie = fakes.make_movie(folder / "toy.npy", shape=(6, 20, 16), seed=4)
    spec = {"input": {"path": str(folder / "toy.npy")}, "algorithm": "mean-shift",
            "fixed_index": 2, "preprocess": {"bias": 100}, "params": {"gridsize": [2, 2]},
            "monitor": ["u", "mismatch"]}
    status = client.wait(client.submit(spec), timeout=120)
    assert status["state"] == "succeeded", status
    u = client.results(status["id"])["u"][...]
    for t in range(6):
        np.testing.assert_allclose(u[t], fakes.expected_u(movie, t, 2, [[0, 20], [0, 16]], [2, 2], 100),
                                   rtol=1e-6)
