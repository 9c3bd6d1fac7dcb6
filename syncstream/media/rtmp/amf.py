"""AMF0, the value encoding of RTMP commands and metadata (only what RTMP uses)."""

from __future__ import annotations

import struct
from typing import Any

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED, ECMA_ARRAY, OBJECT_END = 0, 1, 2, 3, 5, 6, 8, 9
STRICT_ARRAY, DATE, LONG_STRING = 10, 11, 12


class AmfError(ValueError):
    """Malformed AMF0 data."""


def decode_all(data: bytes) -> list[Any]:
    """Every AMF0 value in a command or data message."""
    values, pos = [], 0
    while pos < len(data):
        value, pos = _decode(data, pos)
        values.append(value)
    return values


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    try:
        marker = data[pos]
        pos += 1
        if marker == NUMBER:
            return struct.unpack_from(">d", data, pos)[0], pos + 8
        if marker == BOOLEAN:
            return data[pos] != 0, pos + 1
        if marker in (STRING, LONG_STRING):
            width = 2 if marker == STRING else 4
            size = int.from_bytes(data[pos : pos + width], "big")
            return _text(data, pos + width, size)
        if marker in (NULL, UNDEFINED):
            return None, pos
        if marker == ECMA_ARRAY:
            return _decode_properties(data, pos + 4)
        if marker == OBJECT:
            return _decode_properties(data, pos)
        if marker == STRICT_ARRAY:
            count = struct.unpack_from(">I", data, pos)[0]
            pos += 4
            items = []
            for _ in range(count):
                item, pos = _decode(data, pos)
                items.append(item)
            return items, pos
        if marker == DATE:
            return struct.unpack_from(">d", data, pos)[0], pos + 10
    except (IndexError, struct.error) as exc:
        raise AmfError("truncated AMF0 value") from exc
    raise AmfError(f"unsupported AMF0 marker {marker}")


def _decode_properties(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while True:
        if pos + 3 > len(data):
            raise AmfError("unterminated AMF0 object")
        size = struct.unpack_from(">H", data, pos)[0]
        if size == 0 and data[pos + 2] == OBJECT_END:
            return result, pos + 3
        key, pos = _text(data, pos + 2, size)
        result[key], pos = _decode(data, pos)


def _text(data: bytes, start: int, size: int) -> tuple[str, int]:
    end = start + size
    if end > len(data):
        raise AmfError("truncated AMF0 string")
    return data[start:end].decode("utf-8", "replace"), end


def encode(*values: Any) -> bytes:
    return b"".join(_encode(v) for v in values)


def _encode(value: Any) -> bytes:
    if value is None:
        return bytes([NULL])
    if isinstance(value, bool):
        return bytes([BOOLEAN, int(value)])
    if isinstance(value, int | float):
        return bytes([NUMBER]) + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        return bytes([STRING]) + struct.pack(">H", len(raw)) + raw
    if isinstance(value, dict):
        body = b"".join(
            struct.pack(">H", len(k.encode())) + k.encode() + _encode(v) for k, v in value.items()
        )
        return bytes([OBJECT]) + body + b"\x00\x00" + bytes([OBJECT_END])
    if isinstance(value, list):
        return bytes([STRICT_ARRAY]) + struct.pack(">I", len(value)) + b"".join(map(_encode, value))
    raise TypeError(f"cannot encode {type(value).__name__} as AMF0")
