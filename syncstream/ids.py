"""Opaque, time-ordered identifiers (UUIDv7 as 32 hex chars) and secure random tokens."""

from __future__ import annotations

import os
import secrets
import time


def new_id() -> str:
    """A UUIDv7: 48-bit millisecond timestamp + 74 random bits, so ids sort by creation time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b (62 bits)
    return f"{value:032x}"


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """A URL-safe secret such as an API token or a stream key, prefixed so leaks are greppable."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
