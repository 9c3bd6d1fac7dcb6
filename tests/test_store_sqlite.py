"""What only the SQLite store does: commits on the loop, the WAL kept short by its checkpointer."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncstream.store import IntegrityError
from syncstream.store import sqlite as sqlite_store
from syncstream.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SqliteStore]:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 0.05)
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    await store.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, blob TEXT NOT NULL)")
    yield store
    await store.close()


async def test_the_wal_starts_over_while_writes_never_stop(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Without the checkpoint under the lock, a passive checkpoint racing endless writes
    never completes and the WAL grows by every commit."""
    row = "x" * 3000  # a page per commit
    started = time.monotonic()
    commits = 0
    while commits < 3000 or time.monotonic() - started < 0.5:  # ten checkpoints or more
        await store.write_batch([("INSERT INTO items (blob) VALUES (?)", (row,))])
        commits += 1
        if commits % 50 == 0:
            await asyncio.sleep(0)  # let the checkpointer in now and then, as a server does
    # Frames in the WAL since it last started over (every commit appends at least one).
    probe = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    _, frames, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    probe.close()
    assert frames < commits / 2
    assert await store.fetchval("SELECT count(*) FROM items") == commits


async def test_a_write_lock_held_elsewhere_waits_off_the_loop(
    store: SqliteStore, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (say, the CLI) is writing
    other.execute("INSERT INTO items (blob) VALUES ('other')")
    write = asyncio.create_task(
        store.write_batch([("INSERT INTO items (blob) VALUES (?)", ("ours",))])
    )
    ticks = 0
    started = time.monotonic()
    while time.monotonic() - started < 0.3:  # the loop keeps running meanwhile
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks >= 20 and not write.done()
    other.execute("COMMIT")
    await asyncio.wait_for(write, 5)
    rows = await store.fetchall("SELECT blob FROM items ORDER BY id")
    assert [r["blob"] for r in rows] == ["other", "ours"]
    other.close()


async def test_a_failing_batch_leaves_nothing_behind(store: SqliteStore) -> None:
    await store.write_batch([("INSERT INTO items (id, blob) VALUES (1, 'a')", ())])
    with pytest.raises(IntegrityError):
        await store.write_batch(
            [
                ("INSERT INTO items (id, blob) VALUES (2, 'b')", ()),
                ("INSERT INTO items (id, blob) VALUES (1, 'again')", ()),
            ]
        )
    assert await store.fetchval("SELECT count(*) FROM items") == 1
    await store.write_batch([("INSERT INTO items (id, blob) VALUES (2, 'b')", ())])
    assert await store.fetchval("SELECT count(*) FROM items") == 2
