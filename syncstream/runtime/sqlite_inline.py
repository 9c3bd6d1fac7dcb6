"""Small SQLite write batches committed on the event loop's thread.

A WAL commit without fsync (``synchronous=NORMAL``) costs ~0.1 ms, less than aiosqlite's
hand-off to its thread and back under load, so :meth:`SqliteStore.write_batch` runs a batch
right on the sqlite3 connection aiosqlite holds — unless another process holds the write
lock: then the batch goes to aiosqlite's thread, where waiting does not stall the loop.
aiosqlite has no public accessor for its sqlite3 connection, nor a public "run this on your
thread"; ``_conn`` and ``_execute`` are what its own methods use. Off
(``runtime.sqlite_inline_writes: false``) or on an aiosqlite where they changed, the store
uses aiosqlite's public ``execute`` for each statement of the batch instead.
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from .versions import outside

CHECKED = ((0, 20), (0, 23))  # the aiosqlite releases this was written and tested against
T = TypeVar("T")


def problem() -> str | None:
    """Why the seam cannot be used with the installed aiosqlite (None: it can)."""
    if reason := outside("aiosqlite", *CHECKED):
        return reason
    if not isinstance(inspect.getattr_static(aiosqlite.Connection, "_conn", None), property):
        return "aiosqlite.Connection._conn is no longer a property"
    if not inspect.iscoroutinefunction(getattr(aiosqlite.Connection, "_execute", None)):
        return "aiosqlite.Connection._execute is no longer a coroutine function"
    return None


def sqlite_connection(conn: aiosqlite.Connection) -> sqlite3.Connection:
    """The sqlite3 connection behind ``conn`` (opened with ``check_same_thread=False``; use it
    only while aiosqlite's thread is idle)."""
    raw: sqlite3.Connection = conn._conn
    return raw


async def on_connection_thread(conn: aiosqlite.Connection, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on aiosqlite's own thread, in line with its other statements."""
    result: T = await conn._execute(call, *args)  # type: ignore[no-untyped-call]
    return result
