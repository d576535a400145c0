"""A second algorithm, added in the test through the registry alone, runs end to end in the API."""
from __future__ import annotations

import math

import numpy as np
from pydantic import Field, PositiveInt

from blockreg.algorithms.base import Algorithm, ArrayDecl
from blockreg.errors import ParameterError
from blockreg.jobspec import SpecModel
from blockreg.reg.deformation import nodes_for_shape
from blockreg.registry import AlgorithmEntry, registered
from blockreg.store import open_store

from helpers import service_fakes as fakes
from helpers.api_app import run_all


class Brightness(Algorithm):
    """``mean`` = scale x the mean of the preprocessed frame; ``u`` = that value at every node."""

    def __init__(self, fixed, nodes, preprocess, scale):
        if not math.isfinite(scale) or scale == 0:  # the algorithm owns its rule
            raise ParameterError("scale", f"must be finite and non-zero, got {scale}")
        self.nodes, self.preprocess, self.scale = nodes, preprocess, scale

    def declare(self):
        grid = tuple(len(n) for n in self.nodes)
        return {"u": ArrayDecl(grid + (len(grid),), "float64"), "mean": ArrayDecl((), "float64")}

    def run_frame(self, frame, t, wanted):
        value = self.scale * float(np.mean(self.preprocess(frame), dtype=np.float64))
        out = {"u": np.full(self.declare()["u"].shape, value), "mean": value}
        return {name: out[name] for name in self.check_wanted(wanted)}

    def describe(self):
        return {"algorithm": "brightness", "scale": self.scale}


class BrightnessParams(SpecModel):
    gridsize: list[PositiveInt] = Field(min_length=2, max_length=2)
    scale: float = Field(1.0, description="Factor applied to the mean.")


BRIGHTNESS = AlgorithmEntry(
    name="brightness", params=BrightnessParams,
    build=lambda p, fixed, nodes, preprocess: Brightness(fixed, nodes, preprocess, p.scale),
    nodes=lambda p, shape: nodes_for_shape(shape, p.gridsize),
    variables={"u": "scale x mean at every node", "mean": "scale x mean of the frame"},
    summary="test algorithm")


def test_an_algorithm_registered_in_a_test_runs_through_the_api(app, client, broker, movie_path):
    spec = {"input": {"path": str(movie_path), "frames": [0, 6]}, "algorithm": "brightness",
            "preprocess": {"bias": 100}, "params": {"gridsize": [2, 2], "scale": 2.0},
            "monitor": ["u", "mean"]}
    refused = client.post("/api/v1/jobs", json=spec)  # not registered (yet)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json["errors"]] == ["algorithm"]

    with registered(BRIGHTNESS):
        doc = client.get("/api/v1/openapi.json").json
        assert "brightness" in doc["components"]["schemas"]["JobSpec"]["discriminator"]["mapping"]
        assert "scale" in doc["components"]["schemas"]["BrightnessParams"]["properties"]
        bad = client.post("/api/v1/jobs", json={**spec, "params": {"gridsize": [2, 2], "scale": 0}})
        assert bad.status_code == 422
        assert bad.json["errors"] == [{"field": "params.scale",
                                       "problem": "must be finite and non-zero, got 0.0"}]

        created = client.post("/api/v1/jobs", json=spec)
        assert created.status_code == 201, created.json
        run_all(app, broker)
        job = client.get(f"/api/v1/jobs/{created.json['id']}").json
        assert job["state"] == "succeeded" and job["frames_done"] == 6
        assert job["spec"]["algorithm"] == "brightness" and job["spec"]["params"]["scale"] == 2.0
        store = open_store(job["output_path"])
        expected = [2.0 * fakes.shot_noise_flattened(np.load(movie_path)[t], 100).mean(
            dtype=np.float64) for t in range(6)]
        np.testing.assert_allclose(store["mean"][...], expected, rtol=1e-6)
        np.testing.assert_allclose(store["u"][...], np.broadcast_to(
            np.asarray(expected)[:, None, None, None], (6, 2, 2, 2)), rtol=1e-6)
        frames = client.get(f"/api/v1/jobs/{created.json['id']}/frames").json["frames"]
        np.testing.assert_allclose([f["scalars"]["mean"] for f in frames], expected, rtol=1e-6)
