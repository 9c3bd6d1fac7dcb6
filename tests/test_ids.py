"""Identifiers: UUIDv7 layout and strict ordering within one process."""

from __future__ import annotations

import time
import uuid

from syncstream.ids import new_id, new_secret


def test_ids_are_uuid7_and_strictly_increasing() -> None:
    ids = [new_id() for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    ms = int(ids[-1][:12], 16)
    assert abs(ms - time.time() * 1000) < 5_000


def test_secrets_are_prefixed_and_random() -> None:
    a, b = new_secret("sst"), new_secret("sst")
    assert a.startswith("sst_") and a != b and len(a) > 40
