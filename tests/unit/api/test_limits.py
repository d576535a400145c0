"""Hand-made bad requests each get a 4xx, quickly: a huge body, JSON nested 100,000 deep."""
from __future__ import annotations

import time

from blockreg_services.coordinator.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH, json_depth


def test_json_depth_skips_strings():
    assert json_depth('{"a": [1, {"b": "[[[{{{"}]}') == 3
    assert json_depth(b"[]") == 1
    assert json_depth("3") == 0


def test_deeply_nested_json_is_a_400_not_a_500(client):
    started = time.perf_counter()
    response = client.post("/api/v1/jobs", data="[" * 100_000,
                           content_type="application/json")
    assert response.status_code == 400, response.json
    assert response.json["errors"][0]["field"] == "body"
    nested = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    assert client.post("/api/v1/jobs", data=nested,
                       content_type="application/json").status_code == 400
    assert time.perf_counter() - started < 2.0


def test_a_body_over_the_limit_is_a_413(client):
    body = '{"name": "' + "x" * MAX_BODY_BYTES + '"}'
    response = client.post("/api/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 413
    assert "message" in response.json
