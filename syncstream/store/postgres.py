"""PostgreSQL backend (asyncpg pool) for several nodes; ``?`` placeholders become ``$n``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import asyncpg

from .base import Dialect, Migration, Queries, Row
from .errors import StoreError, translated
from .migrations import migrate, owner_lock_key
from .sql import numbered_placeholders

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _rowcount(status: str) -> int:
    """'UPDATE 3' -> 3, 'INSERT 0 1' -> 1, 'CREATE TABLE' -> 0."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Statements:
    """Statements on a pool (one connection per call) or on one connection (a transaction)."""

    def __init__(self, target: asyncpg.Pool | asyncpg.Connection) -> None:
        self._target = target

    async def execute(self, sql: str, *args: Any) -> int:
        with _translated_errors():
            return _rowcount(await self._target.execute(numbered_placeholders(sql), *args))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        with _translated_errors():
            await self._target.executemany(numbered_placeholders(sql), args)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        with _translated_errors():
            rows = await self._target.fetch(numbered_placeholders(sql), *args)
        return [dict(r) for r in rows]

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        with _translated_errors():
            row = await self._target.fetchrow(numbered_placeholders(sql), *args)
        return dict(row) if row is not None else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with _translated_errors():
            return await self._target.fetchval(numbered_placeholders(sql), *args)


def _translated_errors() -> AbstractContextManager[None]:
    return translated(
        (asyncpg.IntegrityConstraintViolationError,),
        (asyncpg.PostgresError, asyncpg.InterfaceError),
    )


async def _advisory_lock(tx: Queries, owner: str) -> None:
    await tx.execute("SELECT pg_advisory_xact_lock(?)", owner_lock_key(owner))


class PostgresStore(_Statements):
    """A connection pool; statements outside transactions may run on any connection."""

    dialect: Dialect = "postgres"

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pool = pool

    @classmethod
    async def open(cls, url: str, schema: str = "", pool_size: int = 10) -> PostgresStore:
        settings: dict[str, str] = {}
        if schema:
            if not SCHEMA_NAME.match(schema):
                raise StoreError(f"invalid schema name {schema!r}")
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            except asyncpg.UniqueViolationError:
                pass  # another node created it at the same moment
            finally:
                await conn.close()
            settings["search_path"] = schema
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=pool_size, server_settings=settings
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _Statements(conn)

    async def write_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        async with self.transaction() as tx:
            return [await tx.execute(sql, *args) for sql, args in statements]

    async def migrate(self, owner: str, migrations: Sequence[Migration]) -> list[int]:
        return await migrate(self, owner, migrations, lock=_advisory_lock)

    async def close(self) -> None:
        await self._pool.close()
