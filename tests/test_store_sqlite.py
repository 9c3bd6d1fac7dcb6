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


@pytest.fixture(params=[True, False], ids=["inline-writes", "aiosqlite-api"])
async def store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[SqliteStore]:
    """The store with the inline-commit seam (``runtime.sqlite_inline_writes``) and without."""
    # Checkpoints this often leave a few hundred commits between two WAL restarts at most,
    # however the test's writes and the checkpointer's turns happen to interleave.
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 0.01)
    monkeypatch.setattr(sqlite_store, "UNLOCKED_WAL_FRAMES", 200)  # as if 16 MB were 800 KB
    store = await SqliteStore.open(tmp_path / "db.sqlite", inline_writes=request.param)
    await store.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, blob TEXT NOT NULL)")
    yield store
    await store.close()


def wal_restarts(tmp_path: Path) -> int:
    """How often the WAL has started over: the checkpoint sequence number in its header
    (bytes 12-15, big-endian), which SQLite increments on every restart."""
    with (tmp_path / "db.sqlite-wal").open("rb") as wal:
        header = wal.read(16)
    return int.from_bytes(header[12:16], "big") if len(header) == 16 else 0


async def write_until_restarts(
    store: SqliteStore, tmp_path: Path, restarts: int, deadline: float = 120.0
) -> int:
    """Commit a page at a time without pause (yielding now and then, as a server does) until
    the WAL has started over ``restarts`` times, or ``deadline`` seconds passed; returns how
    often it started over. A condition, not a duration: a loaded machine only takes longer."""
    row = "x" * 3000  # a page per commit
    started = time.monotonic()
    commits = 0
    first = wal_restarts(tmp_path)
    while wal_restarts(tmp_path) - first < restarts and time.monotonic() - started < deadline:
        for _ in range(50):
            await store.write_batch([("INSERT INTO items (blob) VALUES (?)", (row,))])
            commits += 1
        await asyncio.sleep(0)  # let the checkpointer in now and then, as a server does
    assert await store.fetchval("SELECT count(*) FROM items") == commits
    return wal_restarts(tmp_path) - first


async def test_the_wal_starts_over_while_writes_never_stop(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Without the checkpoint under the lock, a passive checkpoint racing endless writes
    never completes and the WAL grows by every commit: it would never start over."""
    assert await write_until_restarts(store, tmp_path, restarts=10) >= 10


async def test_a_starved_checkpointer_does_not_let_the_wal_grow(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy loop leaves the niced checkpoint thread no CPU: here its copy never ends (an
    endless query stands for it). It is interrupted and the copy under the lock goes on."""
    endless = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    )

    def starved(self: sqlite_store._Checkpointer) -> None:
        assert self._bulk is not None
        self._bulk.execute(endless).fetchall()

    monkeypatch.setattr(sqlite_store._Checkpointer, "_copy_bulk", starved)
    monkeypatch.setattr(sqlite_store, "PATIENCE", 1)  # give up on it after one period
    assert await write_until_restarts(store, tmp_path, restarts=5) >= 5


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
