"""Opaque, time-ordered identifiers (UUIDv7 as 32 hex chars) and secure random tokens."""

from __future__ import annotations

import os
import secrets
import threading
import time

_RAND_BITS = 74
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def new_id() -> str:
    """A UUIDv7: 48-bit millisecond timestamp + 74 random bits.

    Ids made by one process are strictly increasing, even within one millisecond (the random
    part then grows by a random step, RFC 9562 §6.2 method 2), so they sort by creation.
    """
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            rand = int.from_bytes(os.urandom(10), "big") >> (80 - _RAND_BITS)
        else:
            ms = _last_ms
            rand = _last_rand + 1 + secrets.randbits(24)
            if rand >> _RAND_BITS:  # the random part overflowed: borrow the next millisecond
                ms, rand = ms + 1, int.from_bytes(os.urandom(10), "big") >> (80 - _RAND_BITS + 1)
        _last_ms, _last_rand = ms, rand
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 62) << 64  # rand_a: the top 12 random bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & ((1 << 62) - 1)  # rand_b: the low 62 bits
    return f"{value:032x}"


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """A URL-safe secret such as an API token or a stream key, prefixed so leaks are greppable."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
