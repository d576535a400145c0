"""Limits on what one request may ask of the coordinator: body size and JSON nesting depth.

A body over ``MAX_BODY_BYTES`` is refused with 413 before it is read; a JSON document nested
deeper than ``MAX_JSON_DEPTH`` (100,000 ``[`` would exhaust Python's recursion limit in the
parser, a 500) is malformed JSON, a 400. A job spec is a few kilobytes nested five deep.
"""
from __future__ import annotations

import re

from flask.json.provider import DefaultJSONProvider

__all__ = ["MAX_BODY_BYTES", "MAX_JSON_DEPTH", "json_depth", "LimitedJSONProvider", "install"]

MAX_BODY_BYTES = 1 << 20
MAX_JSON_DEPTH = 32

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (strings skipped)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class LimitedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, refusing (as malformed, ValueError) documents nested too deeply."""

    def loads(self, s, **kwargs):
        if json_depth(s) > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        return super().loads(s, **kwargs)


def install(app) -> None:
    """Apply the limits to ``app`` (called by the app factory)."""
    app.json = LimitedJSONProvider(app)
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
