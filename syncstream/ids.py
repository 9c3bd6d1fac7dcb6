"""Opaque, time-ordered identifiers (UUIDv7 as 32 hex chars) and secure random tokens."""

from __future__ import annotations

import os
import secrets
import threading
import time

_RAND_BITS = 74
_POOL_BYTES = 4096  # os.urandom is a system call: read it in bulk, ~400 ids per call
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_pool = b""
_pool_at = 0


def _forget_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)  # a child must not reuse the parent's bytes


def _random(nbits: int) -> int:
    """``nbits`` from the operating system's CSPRNG (caller holds ``_lock``)."""
    global _pool, _pool_at
    nbytes = (nbits + 7) // 8
    if _pool_at + nbytes > len(_pool):
        _pool, _pool_at = os.urandom(_POOL_BYTES), 0
    chunk = _pool[_pool_at : _pool_at + nbytes]
    _pool_at += nbytes
    return int.from_bytes(chunk, "big") >> (nbytes * 8 - nbits)


def new_id() -> str:
    """A UUIDv7: 48-bit millisecond timestamp + 74 random bits.

    Ids made by one process are strictly increasing, even within one millisecond (the random
    part then grows by a random step, RFC 9562 §6.2 method 2), so they sort by creation.
    """
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            rand = _random(_RAND_BITS)
        else:
            ms = _last_ms
            rand = _last_rand + 1 + _random(24)
            if rand >> _RAND_BITS:  # the random part overflowed: borrow the next millisecond
                ms, rand = ms + 1, _random(_RAND_BITS - 1)
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
