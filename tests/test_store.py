"""The store interface, identical on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from syncstream.store import (
    GroupCommit,
    IntegrityError,
    Queries,
    Store,
    StoreError,
    WriteInterrupted,
    open_store,
)
from syncstream.store.sql import numbered_placeholders, split_statements

from .support import database

StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture
async def store_factory(backend: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens stores on one database (several instances = several nodes)."""
    opened: list[Store] = []
    async with database(backend) as (url, schema):

        async def factory() -> Store:
            store = await open_store(url, sqlite_path=tmp_path / "db.sqlite", schema=schema)
            opened.append(store)
            return store

        yield factory
        for store in opened:
            await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    s = await store_factory()
    await s.migrate("t", ["CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL, note TEXT)"])
    return s


def test_scanner_splits_and_numbers_outside_literals() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT 'a;b'); -- c;d\nINSERT INTO a VALUES ('?'); /* ; */ ;"
    assert split_statements(script) == [
        "CREATE TABLE a (x TEXT DEFAULT 'a;b')",
        "-- c;d\nINSERT INTO a VALUES ('?')",
    ]
    sql = "SELECT '?', \"q?\" FROM t WHERE a = ? AND b = 'it''s ?' AND c = ? -- ?"
    assert numbered_placeholders(sql) == (
        "SELECT '?', \"q?\" FROM t WHERE a = $1 AND b = 'it''s ?' AND c = $2 -- ?"
    )


async def test_crud_and_rowcounts(store: Store) -> None:
    assert await store.execute("INSERT INTO items (id, n) VALUES (?, ?)", "a", 1) == 1
    await store.executemany("INSERT INTO items (id, n) VALUES (?, ?)", [("b", 2), ("c", 3)])
    assert await store.fetchval("SELECT COUNT(*) FROM items") == 3
    assert await store.fetchone("SELECT id, n, note FROM items WHERE id = ?", "b") == {
        "id": "b",
        "n": 2,
        "note": None,
    }
    assert await store.fetchone("SELECT id FROM items WHERE id = ?", "zz") is None
    assert await store.fetchval("SELECT id FROM items WHERE id = ?", "zz") is None
    assert await store.execute("UPDATE items SET n = n + 10 WHERE n >= ?", 2) == 2
    rows = await store.fetchall("SELECT id, n FROM items ORDER BY id")
    assert rows == [{"id": "a", "n": 1}, {"id": "b", "n": 12}, {"id": "c", "n": 13}]
    assert await store.execute("DELETE FROM items WHERE id = ?", "nope") == 0
    await store.execute("INSERT INTO items (id, n, note) VALUES (?, ?, ?)", "q", 0, "what?")
    assert await store.fetchval("SELECT note FROM items WHERE note = 'what?'") == "what?"


async def test_returning_and_on_conflict(store: Store) -> None:
    row = await store.fetchone("INSERT INTO items (id, n) VALUES (?, ?) RETURNING id, n", "a", 5)
    assert row == {"id": "a", "n": 5}
    changed = await store.execute(
        "INSERT INTO items (id, n) VALUES (?, ?) ON CONFLICT (id) DO NOTHING", "a", 9
    )
    assert changed == 0
    await store.execute(
        "INSERT INTO items (id, n) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET n = excluded.n",
        "a",
        9,
    )
    assert await store.fetchval("SELECT n FROM items WHERE id = ?", "a") == 9


async def test_integrity_errors_have_one_type(store: Store) -> None:
    await store.execute("INSERT INTO items (id, n) VALUES (?, ?)", "a", 1)
    with pytest.raises(IntegrityError):
        await store.execute("INSERT INTO items (id, n) VALUES (?, ?)", "a", 2)
    with pytest.raises(IntegrityError):
        await store.execute("INSERT INTO items (id, n) VALUES (?, ?)", "b", None)
    with pytest.raises(StoreError):
        await store.execute("SELECT * FROM no_such_table")


async def test_transactions_commit_or_roll_back(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "a", 1)
        await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "b", 2)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "c", 3)
            raise RuntimeError("abort")
    with pytest.raises(IntegrityError):
        async with store.transaction() as tx:
            await tx.execute("UPDATE items SET n = 100")
            await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "a", 1)
    assert await store.fetchall("SELECT id, n FROM items ORDER BY id") == [
        {"id": "a", "n": 1},
        {"id": "b", "n": 2},
    ]


async def test_write_batches_commit_or_roll_back_as_one(store: Store) -> None:
    counts = await store.write_batch(
        [
            ("INSERT INTO items (id, n) VALUES (?, ?)", ("a", 1)),
            ("INSERT INTO items (id, n) VALUES (?, ?)", ("b", 2)),
            ("UPDATE items SET note = ? WHERE id = ?", ("x", "a")),
            ("UPDATE items SET note = ? WHERE id = ?", ("y", "nobody")),
        ]
    )
    assert counts == [1, 1, 1, 0]
    with pytest.raises(IntegrityError):
        await store.write_batch(
            [
                ("UPDATE items SET n = 100", ()),
                ("INSERT INTO items (id, n) VALUES (?, ?)", ("a", 9)),
            ]
        )
    assert await store.fetchall("SELECT id, n, note FROM items ORDER BY id") == [
        {"id": "a", "n": 1, "note": "x"},
        {"id": "b", "n": 2, "note": None},
    ]


async def test_concurrent_statements_do_not_see_half_a_transaction(store: Store) -> None:
    seen: list[int] = []
    inside = asyncio.Event()

    async def writer() -> None:
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "a", 1)
            inside.set()
            await asyncio.sleep(0.05)
            await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "b", 2)

    async def reader() -> None:
        await inside.wait()
        seen.append(await store.fetchval("SELECT COUNT(*) FROM items"))

    await asyncio.gather(writer(), reader())
    assert seen[0] in (0, 2)


async def test_migrations_are_versioned_and_idempotent(store_factory: StoreFactory) -> None:
    store = await store_factory()
    calls: list[str] = []

    async def step3(tx: Queries) -> None:
        calls.append("step3")
        await tx.execute("INSERT INTO m (id) VALUES (?)", "from-callable")

    steps = [
        "CREATE TABLE m (id TEXT PRIMARY KEY); INSERT INTO m (id) VALUES ('a;b')",
        {
            "sqlite": "INSERT INTO m (id) VALUES ('lite')",
            "postgres": "INSERT INTO m (id) VALUES ('pg')",
        },
        step3,
    ]
    assert await store.migrate("owner", steps) == [1, 2, 3]
    assert await store.migrate("owner", steps) == []
    assert calls == ["step3"]
    ids = {r["id"] for r in await store.fetchall("SELECT id FROM m")}
    assert ids == {"a;b", "from-callable", "lite" if store.dialect == "sqlite" else "pg"}
    assert await store.migrate("other", ["CREATE TABLE m2 (x TEXT)"]) == [1]
    assert await store.migrate("owner", [*steps, "ALTER TABLE m ADD COLUMN extra TEXT"]) == [4]


async def test_failing_migration_names_owner_and_version(store_factory: StoreFactory) -> None:
    store = await store_factory()
    steps = ["CREATE TABLE f (x TEXT)", "CREATE TABLE (broken", "CREATE TABLE g (y TEXT)"]
    with pytest.raises(StoreError, match=r"migration plug v2 failed"):
        await store.migrate("plug", steps)
    assert await store.fetchval("SELECT COUNT(*) FROM f") == 0  # v1 stayed applied
    versions = await store.fetchall(
        "SELECT version FROM schema_migrations WHERE owner = ? ORDER BY version", "plug"
    )
    assert versions == [{"version": 1}]


async def test_concurrent_migrations_apply_each_version_once(store_factory: StoreFactory) -> None:
    first = await store_factory()
    second = await store_factory()
    steps = [
        "CREATE TABLE c (id TEXT PRIMARY KEY)",
        "INSERT INTO c (id) VALUES ('once')",
        "ALTER TABLE c ADD COLUMN z TEXT",
    ]
    results = await asyncio.gather(first.migrate("race", steps), second.migrate("race", steps))
    assert sorted(results[0] + results[1]) == [1, 2, 3]
    assert await first.fetchval("SELECT COUNT(*) FROM c") == 1


async def test_unknown_store_url(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported store url 'mysql'"):
        await open_store("mysql://x", sqlite_path=tmp_path / "x.db")


async def test_group_commit_shares_transactions_and_acknowledges_after_commit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes made together share commits; each returns once its rows are committed."""
    batches: list[int] = []
    write_batch = store.write_batch

    async def counted(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        batches.append(len(statements))
        return await write_batch(statements)

    monkeypatch.setattr(store, "write_batch", counted)
    commits = GroupCommit(store)

    async def one(n: int) -> None:
        await commits.write([("INSERT INTO items (id, n) VALUES (?, ?)", (f"g{n}", n))])
        row = await store.fetchone("SELECT n FROM items WHERE id = ?", f"g{n}")
        assert row is not None and row["n"] == n  # committed before write() returned

    await asyncio.gather(*(one(n) for n in range(200)))
    assert sum(batches) == 200
    assert len(batches) < 200 / 4, batches  # shared: a few commits, not one per write
    assert await store.fetchval("SELECT count(*) FROM items") == 200


async def test_group_commit_fails_every_write_of_a_failing_batch(store: Store) -> None:
    commits = GroupCommit(store)
    await commits.write([("INSERT INTO items (id, n) VALUES ('dup', 1)", ())])
    results = await asyncio.gather(
        commits.write([("INSERT INTO items (id, n) VALUES ('fine', 2)", ())]),
        commits.write([("INSERT INTO items (id, n) VALUES ('dup', 3)", ())]),
        return_exceptions=True,
    )
    assert all(isinstance(r, IntegrityError) for r in results), results
    assert await store.fetchval("SELECT count(*) FROM items") == 1  # nothing half-written
    await commits.write([("INSERT INTO items (id, n) VALUES ('after', 4)", ())])  # goes on


async def test_group_commit_survives_a_cancelled_writer(store: Store) -> None:
    """The caller whose task commits is cancelled: the writes queued behind its batch are
    still committed by a task of their own, and its batch's callers learn the outcome."""
    commits = GroupCommit(store)
    first = asyncio.create_task(commits.write([("INSERT INTO items (id, n) VALUES ('a', 1)", ())]))
    others = [
        asyncio.create_task(
            commits.write([("INSERT INTO items (id, n) VALUES (?, ?)", (f"b{n}", n))])
        )
        for n in range(5)
    ]
    await asyncio.sleep(0)
    first.cancel()
    outcomes = await asyncio.gather(*others, return_exceptions=True)
    assert all(o is None or isinstance(o, WriteInterrupted) for o in outcomes), outcomes
    await commits.write(lambda: [("INSERT INTO items (id, n) VALUES ('c', 9)", ())])
    ids = {r["id"] for r in await store.fetchall("SELECT id FROM items")}
    assert "c" in ids
    assert {f"b{n}" for n, o in enumerate(outcomes) if o is None} <= ids
