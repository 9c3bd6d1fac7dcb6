"""The ``/ws`` wire format: every frame the gateway reads or writes is defined here.

Frames are JSON text ``{"op", "id"?, "topic"?, "data"?}``. Topics are ``<namespace>:<name>``.

Client ops: ``subscribe`` (with optional ``data.since`` + ``data.epoch`` to resume),
``unsubscribe``, ``publish``, ``presence``, ``ping``.

Server frames:

- ``hello`` (``data``: client id, node, user, heartbeat), first on every socket;
- ``reply`` to a request's ``id`` (with its ``topic`` and ``data``), ``pong`` to a ping,
  ``error`` with a stable ``code`` and ``detail`` (and the request's ``id``);
- ``event``: a publication, ``{"op":"event","topic":T,"seq":N,"epoch":E,"data":D}``, or for
  ephemeral ones (typing, presence changes) that get no seq and no history,
  ``{"op":"event","topic":T,"ephemeral":true,"data":D}``;
- ``resync``: ``{"op":"resync","topic":T,"data":{"seq":N,"epoch":E,"recovered":false}}`` when
  the node may have missed publications (see :mod:`.engine`);
- ``unsubscribe``: ``{"op":"unsubscribe","topic":T,"data":{"reason":R}}`` when the server
  ends a subscription (access revoked; see :mod:`.revocation`).

A publication is serialised to JSON once (by the engine, around the caller's encoded data)
and framed once here; every subscribed socket then gets the same bytes with a plain
``transport.write`` — no per-socket encoding, no per-socket coroutine. Server-to-client
frames are never masked (RFC 6455 §5.1).
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

from .. import jsoncodec
from ..api import dumps
from ..bus import Event
from ..errors import Problem

TOPIC_RE = re.compile(r"^([a-z][a-z0-9_-]{0,31}):([A-Za-z0-9_.:@*~=+-]{1,200})$")

# Close codes (4000-4999 are for applications).
CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_SLOW_CONSUMER = 4008
CLOSE_RATE_LIMITED = 4029


def read_frame(text: str) -> dict[str, Any]:
    """A client's frame; a 400 :class:`Problem` (``invalid_json``, ``invalid_frame``) if it
    is not an object with a string ``op``."""
    try:
        frame = jsoncodec.loads(text)
    except json.JSONDecodeError:
        raise Problem(400, "invalid_json", "the frame is not valid JSON") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("op"), str):
        raise Problem(400, "invalid_frame", "frames are objects with an 'op'")
    return frame


def text_frame(payload: str) -> bytes:
    """One unfragmented, unmasked, uncompressed WebSocket text frame."""
    data = payload.encode()
    size = len(data)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + data


def server_frame(op: str, **fields: Any) -> bytes:
    """A server frame for one socket (``hello``, ``reply``, ``error``, ``pong``,
    ``unsubscribe``)."""
    return text_frame(dumps({"op": op, **fields}))


def event_frame(topic_json: str, seq: int, epoch: str, data_json: str) -> str:
    """A publication's frame, built by concatenation around already-encoded JSON (the Redis
    engine's publishing script builds the same in Lua)."""
    return f'{{"op":"event","topic":{topic_json},"seq":{seq},"epoch":"{epoch}","data":{data_json}}}'


def ephemeral_frame(topic_json: str, data_json: str) -> str:
    return f'{{"op":"event","topic":{topic_json},"ephemeral":true,"data":{data_json}}}'


def resync_frame(topic_json: str, seq: int, epoch: str) -> str:
    """Told to a topic's subscribers when the node may have missed publications."""
    return (
        f'{{"op":"resync","topic":{topic_json},'
        f'"data":{{"seq":{seq},"epoch":"{epoch}","recovered":false}}}}'
    )


def bus_event_frame(topic: str, seq: int, event: Event) -> bytes:
    """A bus event as an ``event`` on a ``bus:<pattern>`` topic (its seq counts per socket)."""
    data = {"type": event.type, "data": event.data, "origin": event.origin, "time": event.time}
    return text_frame(dumps({"op": "event", "topic": topic, "seq": seq, "data": data}))
