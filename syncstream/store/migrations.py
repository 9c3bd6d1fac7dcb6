"""Versioned, per-owner schema migrations shared by both backends.

``migrations[i]`` is version ``i + 1`` of its owner's schema. Each step runs in its own
transaction together with its row in ``schema_migrations``, so a step is applied entirely or
not at all, and a failing step leaves the earlier ones in place.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from .base import Dialect, Migration, Queries
from .errors import StoreError
from .sql import split_statements

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    owner TEXT NOT NULL,
    version BIGINT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (owner, version)
)
"""


class _Migratable(Protocol):
    dialect: Dialect

    async def execute(self, sql: str, *args: object) -> int: ...

    def transaction(self) -> AbstractAsyncContextManager[Queries]: ...


def owner_lock_key(owner: str) -> int:
    """A stable signed 64-bit key for PostgreSQL advisory locks."""
    return int.from_bytes(hashlib.sha256(owner.encode()).digest()[:8], "big", signed=True)


async def run_step(tx: Queries, dialect: Dialect, step: Migration) -> None:
    if not (isinstance(step, str) or callable(step)):
        if dialect not in step:
            raise StoreError(f"the migration step has no SQL for {dialect}")
        step = step[dialect]
    if callable(step):
        await step(tx)
        return
    for statement in split_statements(step):
        await tx.execute(statement)


async def migrate(
    store: _Migratable,
    owner: str,
    migrations: Sequence[Migration],
    lock: Callable[[Queries, str], Awaitable[None]] | None = None,
) -> list[int]:
    """Apply the missing versions of ``owner``'s schema; see the module docstring."""
    async with store.transaction() as tx:  # nodes starting together must not race here
        if lock is not None:
            await lock(tx, "schema_migrations")
        await tx.execute(BOOKKEEPING)
    applied: list[int] = []
    for version, step in enumerate(migrations, start=1):
        async with store.transaction() as tx:
            if lock is not None:
                await lock(tx, owner)
            done = await tx.fetchval(
                "SELECT 1 FROM schema_migrations WHERE owner = ? AND version = ?", owner, version
            )
            if done:
                continue
            try:
                await run_step(tx, store.dialect, step)
            except Exception as exc:
                raise StoreError(f"migration {owner} v{version} failed: {exc}") from exc
            await tx.execute(
                "INSERT INTO schema_migrations (owner, version, applied_at) VALUES (?, ?, ?)",
                owner,
                version,
                time.time(),
            )
            applied.append(version)
    return applied
