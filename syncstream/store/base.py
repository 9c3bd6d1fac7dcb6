"""The small database interface every plugin uses, whatever the backend.

SQL is written once with ``?`` placeholders; the PostgreSQL backend rewrites them to ``$n``.
Write portable SQL (TEXT, BIGINT, DOUBLE PRECISION, ``ON CONFLICT``, ``RETURNING``); where a
statement must differ, a migration may give one text per dialect. Rows come back as dicts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]
Row = dict[str, Any]


class Queries(Protocol):
    """Statements on the store or inside one transaction."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the number of rows changed."""

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each argument tuple."""

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        """All rows of a query as dicts."""

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        """The first row, or None."""

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None."""


# A migration step: portable SQL (may hold several statements separated by ';'), an async
# function given the transaction, or one of those per dialect.
MigrationStep = str | Callable[[Queries], Awaitable[None]]
Migration = MigrationStep | Mapping[Dialect, MigrationStep]


class Store(Queries, Protocol):
    """A database: statements, transactions, per-owner migrations."""

    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[Queries]:
        """All statements on the yielded object commit together or not at all."""

    async def write_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run ``(sql, args)`` statements in one transaction, as cheaply as the backend can
        (SQLite: committed on the event loop). For hot write paths. Returns each
        statement's number of rows changed."""

    async def migrate(self, owner: str, migrations: Sequence[Migration]) -> list[int]:
        """Apply ``migrations[i]`` as version ``i + 1`` for ``owner`` where not yet applied.

        Idempotent and safe when several nodes start at once. Returns the versions applied now.
        """

    async def close(self) -> None:
        """Release connections."""
