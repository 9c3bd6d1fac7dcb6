"""SQLite backend (aiosqlite): one connection in WAL mode, serialised by an asyncio lock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from .base import Dialect, Migration, Queries, Row
from .errors import translated
from .migrations import migrate


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


def _translated_errors() -> AbstractContextManager[None]:
    return translated((sqlite3.IntegrityError,), (sqlite3.Error,))


class _Statements:
    """Statements on the connection; the caller holds the lock."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        with _translated_errors():
            cursor = await self._conn.execute(sql, args)
        return max(cursor.rowcount, 0)  # the cursor is left to the GC: one thread hop, not two

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        with _translated_errors():
            await self._conn.executemany(sql, args)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        with _translated_errors():
            rows = await self._conn.execute_fetchall(sql, args)  # one hop to the thread
        return list(rows)  # type: ignore[arg-type]  # rows are dicts (row factory)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchone(sql, *args)
        return next(iter(row.values())) if row else None


class SqliteStore:
    """The embedded default. Statements are serialised; a transaction holds the connection."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._statements = _Statements(conn)

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = _dict_row  # type: ignore[assignment]
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=10000",
        ):
            await conn.execute(pragma)
        return cls(conn)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._statements.execute(sql, *args)

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        async with self._lock:
            await self._statements.executemany(sql, args)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        async with self._lock:
            return await self._statements.fetchall(sql, *args)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        async with self._lock:
            return await self._statements.fetchone(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._lock:
            return await self._statements.fetchval(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises. Other callers wait."""
        async with self._lock:
            await self._statements.execute("BEGIN IMMEDIATE")
            try:
                yield self._statements
            except BaseException:
                await self._statements.execute("ROLLBACK")
                raise
            await self._statements.execute("COMMIT")

    async def write_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """BEGIN IMMEDIATE, every statement, COMMIT: one trip to the connection's thread."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    conn.execute(sql, args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        async with self._lock:
            with _translated_errors():
                # aiosqlite has no public "run this on your thread"; _execute is what all
                # of its own methods use.
                await self._conn._execute(run, self._conn._conn)  # type: ignore[no-untyped-call]

    async def migrate(self, owner: str, migrations: Sequence[Migration]) -> list[int]:
        return await migrate(self, owner, migrations)

    async def close(self) -> None:
        await self._conn.close()
