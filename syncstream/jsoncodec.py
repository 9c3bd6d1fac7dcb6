"""JSON in and out for the whole server: orjson, several times faster than the standard
library's encoder, which showed in every broadcast, reply and bus event. What orjson refuses
(integers beyond 64 bits) goes through the standard library, so nothing changes meaning."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

# Keys that are not strings become strings, and datetimes and dataclasses are left to
# ``default`` — as the standard library does.
_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def dumps(value: Any, *, lenient: bool = False) -> str:
    """Compact JSON text, UTF-8 characters unescaped. Raises TypeError for what JSON cannot
    hold, unless ``lenient``: then such a value is written as its ``str()``."""
    default = str if lenient else None
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: maybe only orjson's limits
        return _stdlib_dumps(value, default)


def dumpb(value: Any, *, lenient: bool = False) -> bytes:
    """:func:`dumps` as UTF-8 bytes, for bodies sent as they are (no text round trip)."""
    default = str if lenient else None
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS)
    except TypeError:
        return _stdlib_dumps(value, default).encode()


def _stdlib_dumps(value: Any, default: Callable[[Any], Any] | None) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default)


def loads(text: str | bytes) -> Any:
    """Parse JSON; raises ``json.JSONDecodeError`` (a ValueError) if it is not JSON."""
    return orjson.loads(text)
