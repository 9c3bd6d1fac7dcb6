"""SQLite backend (aiosqlite): one connection in WAL mode, serialised by an asyncio lock.

Statements run on aiosqlite's thread, except :meth:`SqliteStore.write_batch`: a small batch
commits right on the event loop (the seam :mod:`syncstream.runtime.sqlite_inline`). No commit
pays for a checkpoint: the connection's auto-checkpoint is off and :class:`_Checkpointer` copies the
WAL back into the database every second, mostly from a thread of its own.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from ..runtime import sqlite_inline
from ..runtime.seams import SEAMS
from .base import Dialect, Migration, Queries, Row
from .errors import translated
from .migrations import migrate

CHECKPOINT_EVERY = 1.0  # seconds
CHECKPOINT_NICE = 19
PATIENCE = 4  # checkpoint periods a niced bulk copy may take before the copy under the lock
BULK_PASSES = 3  # bulk copies at most per checkpoint, while frames are left behind
UNLOCKED_WAL_FRAMES = 4096  # a WAL this long (16 MB of 4-KB pages) gets the locked copy
BUSY_TIMEOUT_MS = 10_000

log = structlog.get_logger(__name__)


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


class _Checkpointer:
    """Keeps the WAL short without making a commit wait for a checkpoint.

    Every second, a passive checkpoint from a thread and connection of its own, niced, copies
    the bulk of the WAL while writers go on. Frames written meanwhile are then copied under
    the store's lock by the store's connection: with no writer running, that checkpoint
    completes, so the next commit starts the WAL over instead of appending to it forever.
    Writers wait for that copy (3-14 ms at 2,000 chess moves/s, mostly the database file's
    fsync, every second: the moves' round-trip tail), so it is only made when the bulk
    copy, run up to ``BULK_PASSES`` times, still leaves frames behind, or when the WAL has
    grown past ``UNLOCKED_WAL_FRAMES``. A bulk copy that catches up has completed the
    checkpoint itself and the next commit starts the WAL over — unless a commit came in
    between (it only restarts from a transaction begun while the WAL was fully copied), as
    under endless writes: then the WAL grows, and the locked copy bounds it."""

    def __init__(self, path: Path, conn: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._path = path
        self._conn = conn
        self._lock = lock
        self._bulk: sqlite3.Connection | None = None
        self._bulk_work: asyncio.Future[int | None] | None = None
        self._thread = ThreadPoolExecutor(1, "sqlite-checkpoint", initializer=self._open_bulk)
        self._thread.submit(int)  # start the thread (and open its connection) now
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _open_bulk(self) -> None:
        _lower_priority()
        self._bulk = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)

    def _copy_bulk(self) -> int | None:
        """Copy what the WAL holds; returns its length in frames if nothing was left (no
        frame written meanwhile), else None."""
        assert self._bulk is not None
        busy, frames, copied = self._bulk.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames) if not busy and frames == copied >= 0 else None

    async def _copy_bulk_until_done(self) -> bool:
        """Bulk copies (up to ``BULK_PASSES``); True once one has left nothing behind and
        the WAL is short enough to wait for the next commit to start it over."""
        loop = asyncio.get_running_loop()
        for _ in range(BULK_PASSES):
            bulk = self._bulk_work = loop.run_in_executor(self._thread, self._copy_bulk)
            try:
                frames = await asyncio.wait_for(asyncio.shield(bulk), CHECKPOINT_EVERY * PATIENCE)
            except TimeoutError:
                # Starved: the event loop keeps the CPU busy and the niced thread gets
                # almost none. Stop it; the copy under the lock does it all, or the WAL
                # would grow for as long as the load lasts.
                await self._interrupt(bulk)
                return False
            if frames is not None:  # all copied: another pass would find nothing to do
                return frames <= UNLOCKED_WAL_FRAMES
        return False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            try:
                if await self._copy_bulk_until_done():
                    continue
                async with self._lock:
                    await self._conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # e.g. another process holds a lock: next time
                log.warning("sqlite_checkpoint_failed", error=str(exc))

    async def stop(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        if self._bulk_work is not None:  # a bulk copy may still run (starved): end it
            await self._interrupt(self._bulk_work)
        if self._bulk is not None:  # never interrupted while it closes: that would race
            await asyncio.get_running_loop().run_in_executor(self._thread, self._bulk.close)
        self._thread.shutdown()

    async def _interrupt(self, work: asyncio.Future[int | None]) -> None:
        """Interrupt the bulk copy until ``work`` (that copy, queued on the thread) is done:
        an interrupt only stops a statement already running, and it may start just after."""
        assert self._bulk is not None
        while not work.done():
            self._bulk.interrupt()
            with suppress(TimeoutError, sqlite3.OperationalError):
                await asyncio.wait_for(asyncio.shield(work), 0.01)
        with suppress(sqlite3.OperationalError):  # "interrupted"
            work.result()


def _lower_priority() -> None:
    """Nice this thread (on Linux a thread has a nice value of its own): copying megabytes
    of WAL then only takes CPU time the event loop's thread leaves free."""
    with suppress(AttributeError, OSError):  # not Linux, or not allowed: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECKPOINT_NICE)


class SqliteStore:
    """The embedded default. Statements are serialised; a transaction holds the connection.

    Every use of the connection holds ``_lock``, so :meth:`write_batch` may use it from the
    event loop's thread while aiosqlite's thread is idle."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path, *, inline_writes: bool) -> None:
        self._conn = conn
        self._inline = SEAMS.record("sqlite_inline_writes", inline_writes, sqlite_inline.problem())
        self._lock = asyncio.Lock()
        self._statements = _Statements(conn)
        self._checkpointer = _Checkpointer(path, conn, self._lock)

    @classmethod
    async def open(cls, path: Path, *, inline_writes: bool = True) -> SqliteStore:
        """The store in ``path``; ``inline_writes``: the seam for :meth:`write_batch`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = _dict_row  # type: ignore[assignment]
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            "PRAGMA wal_autocheckpoint=0",
        ):
            await conn.execute(pragma)
        return cls(conn, path, inline_writes=inline_writes)

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

    async def write_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """BEGIN IMMEDIATE, every statement, COMMIT — on the event loop's thread, unless
        another process holds the write lock: then on aiosqlite's thread, which may wait."""
        async with self._lock:
            if not self._inline:
                return await self._batch_through_aiosqlite(statements)
            conn = sqlite_inline.sqlite_connection(self._conn)
            with _translated_errors():
                conn.execute("PRAGMA busy_timeout=0")
                try:
                    return _run_batch(conn, statements)
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                        raise
                finally:
                    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                return await sqlite_inline.on_connection_thread(
                    self._conn, _run_batch, conn, statements
                )

    async def _batch_through_aiosqlite(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[int]:
        """The same transaction through aiosqlite's public API (a thread hop a statement)."""
        await self._statements.execute("BEGIN IMMEDIATE")
        try:
            counts = [await self._statements.execute(sql, *args) for sql, args in statements]
        except BaseException:
            await self._statements.execute("ROLLBACK")
            raise
        await self._statements.execute("COMMIT")
        return counts

    async def migrate(self, owner: str, migrations: Sequence[Migration]) -> list[int]:
        return await migrate(self, owner, migrations)

    async def close(self) -> None:
        await self._checkpointer.stop()
        await self._conn.close()  # the last connection out checkpoints and removes the WAL


def _run_batch(
    conn: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any]]]
) -> list[int]:
    """One transaction; BEGIN IMMEDIATE fails with SQLITE_BUSY before anything is written."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        counts = [max(conn.execute(sql, args).rowcount, 0) for sql, args in statements]
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return counts
