"""Identifiers: UUIDv7 layout and strict ordering within one process."""

from __future__ import annotations

import os
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


def test_a_forked_child_does_not_reuse_the_parents_random_bytes() -> None:
    new_id()  # the pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    mine = new_id()
    assert child[13:] != mine[13:]  # the random parts differ (the first 12 digits are time)
