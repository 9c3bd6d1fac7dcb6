"""WebSocket wire helpers: server text frames built once and written to many sockets.

A broadcast is serialised to JSON once (by the broker) and framed once here; every subscribed
socket then gets the same bytes with a plain ``transport.write`` — no per-socket encoding,
no per-socket coroutine. Server-to-client frames are never masked (RFC 6455 §5.1).
"""

from __future__ import annotations

import struct

# Close codes (4000-4999 are for applications).
CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_SLOW_CONSUMER = 4008
CLOSE_RATE_LIMITED = 4029


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
