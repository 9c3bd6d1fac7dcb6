"""The server's JSON codec keeps the standard library's meaning where orjson differs."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

import pytest

from syncstream import jsoncodec


@dataclass
class Point:
    x: int


def test_same_text_as_the_standard_library_for_plain_values() -> None:
    value = {"a": [1, 2.5, None, True], "é": "ü → ok", 3: "int key", "nested": {"k": []}}
    assert jsoncodec.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert jsoncodec.loads(jsoncodec.dumps(value))["3"] == "int key"


def test_strict_refuses_what_json_cannot_hold_and_lenient_writes_its_str() -> None:
    when = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
    for value in (when, Point(1), {1, 2}):
        with pytest.raises(TypeError):
            jsoncodec.dumps({"v": value})
    assert jsoncodec.dumps({"at": when}, lenient=True) == '{"at":"2026-11-30 12:00:00+00:00"}'
    assert jsoncodec.dumps(Point(1), lenient=True) == '"Point(x=1)"'


def test_integers_beyond_64_bits_and_malformed_text() -> None:
    assert jsoncodec.dumps({"n": 2**70}) == '{"n":1180591620717411303424}'
    for bad in ("{", "[1,]", b"\xff"):
        with pytest.raises(json.JSONDecodeError):
            jsoncodec.loads(bad)
