"""The store: SQLite by default, PostgreSQL for several nodes, one interface for both."""

from __future__ import annotations

from pathlib import Path

from .base import Dialect, Migration, Queries, Row, Store
from .errors import IntegrityError, StoreError
from .group_commit import GroupCommit, WriteInterrupted
from .postgres import PostgresStore
from .sqlite import SqliteStore


async def open_store(
    url: str,
    *,
    sqlite_path: Path,
    schema: str = "",
    pool_size: int = 10,
    sqlite_inline_writes: bool = True,
) -> Store:
    """Empty ``url``: SQLite at ``sqlite_path``; ``postgresql://...``: PostgreSQL."""
    if not url:
        return await SqliteStore.open(sqlite_path, inline_writes=sqlite_inline_writes)
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresStore.open(url, schema, pool_size)
    raise StoreError(f"unsupported store url {url.split('://')[0]!r}: use postgresql:// or empty")


__all__ = [
    "Dialect",
    "GroupCommit",
    "IntegrityError",
    "Migration",
    "PostgresStore",
    "Queries",
    "Row",
    "SqliteStore",
    "Store",
    "StoreError",
    "WriteInterrupted",
    "open_store",
]
