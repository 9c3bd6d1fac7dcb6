"""Chip wallets as a ledger: every grant, stake, return and refund is a row, and a wallet's
balance is the sum of its rows (kept alongside, in the same transaction, so that a stake
can be reserved with one conditional UPDATE that never lets it go below zero).

Every entry carries a request id unique per user: a replayed request finds its entry and
moves nothing twice, whether the replay comes from a client retry or from a restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from syncstream import Problem
from syncstream.ids import new_id
from syncstream.store import IntegrityError, Queries, Store

WELCOME = "welcome"


@dataclass(frozen=True)
class Entry:
    id: str
    amount: int
    kind: str
    replayed: bool  # the request id had been seen: nothing moved now


class Wallets:
    def __init__(self, store: Store, starting_chips: int, daily_topup: int) -> None:
        self.store = store
        self.starting_chips = starting_chips
        self.daily_topup = daily_topup

    async def balance(self, user_id: str) -> int:
        await self._open(user_id)
        return int(
            await self.store.fetchval(
                "SELECT balance FROM blackjack_wallets WHERE user_id = ?", user_id
            )
        )

    async def _open(self, user_id: str) -> None:
        """A first visit opens the wallet with the starting chips (once)."""
        if await self.store.fetchval("SELECT 1 FROM blackjack_wallets WHERE user_id = ?", user_id):
            return
        try:
            async with self.store.transaction() as tx:
                await tx.execute(
                    "INSERT INTO blackjack_wallets (user_id, balance, updated_at)"
                    " VALUES (?, 0, ?)",
                    user_id, time.time(),
                )  # fmt: skip
                await self._move(tx, user_id, self.starting_chips, "grant", WELCOME, None, None)
        except IntegrityError:
            pass  # opened concurrently by another request

    async def debit(
        self, user_id: str, amount: int, kind: str, request_id: str,
        table_id: str | None = None, round_id: str | None = None,
    ) -> Entry:  # fmt: skip
        """Take ``amount`` chips for a stake, or refuse with ``insufficient_funds``."""
        await self._open(user_id)
        return await self._once(user_id, -amount, kind, request_id, table_id, round_id)

    async def topup(self, user_id: str) -> Entry:
        """The daily top-up: once per UTC day."""
        await self._open(user_id)
        today = datetime.now(UTC).date().isoformat()
        entry = await self._once(user_id, self.daily_topup, "topup", f"topup:{today}")
        if entry.replayed:
            tomorrow = datetime.combine(
                datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC
            )
            raise Problem(
                409, "already_topped_up", "one top-up a day",
                next_topup=tomorrow.isoformat(),
            )  # fmt: skip
        return entry

    async def _once(
        self, user_id: str, amount: int, kind: str, request_id: str,
        table_id: str | None = None, round_id: str | None = None,
    ) -> Entry:  # fmt: skip
        existing = await self._entry(self.store, user_id, request_id)
        if existing is not None:
            return existing
        try:
            async with self.store.transaction() as tx:
                return await self._move(tx, user_id, amount, kind, request_id, table_id, round_id)
        except IntegrityError:  # the same request, concurrently: it moved the chips once
            replay = await self._entry(self.store, user_id, request_id)
            if replay is None:
                raise
            return replay

    async def credit_in(
        self, tx: Queries, user_id: str, amount: int, kind: str, request_id: str,
        table_id: str | None, round_id: str | None,
    ) -> Entry:  # fmt: skip
        """Credit inside the caller's transaction (a settlement pays every seat at once)."""
        existing = await self._entry(tx, user_id, request_id)
        if existing is not None:
            return existing
        return await self._move(tx, user_id, amount, kind, request_id, table_id, round_id)

    @staticmethod
    async def _entry(q: Queries, user_id: str, request_id: str) -> Entry | None:
        row = await q.fetchone(
            "SELECT id, amount, kind FROM blackjack_ledger WHERE user_id = ? AND request_id = ?",
            user_id, request_id,
        )  # fmt: skip
        return None if row is None else Entry(row["id"], row["amount"], row["kind"], True)

    @staticmethod
    async def _move(
        tx: Queries, user_id: str, amount: int, kind: str, request_id: str,
        table_id: str | None, round_id: str | None,
    ) -> Entry:  # fmt: skip
        now = time.time()
        changed = await tx.execute(
            "UPDATE blackjack_wallets SET balance = balance + ?, updated_at = ?"
            " WHERE user_id = ? AND balance + ? >= 0",
            amount, now, user_id, amount,
        )  # fmt: skip
        if not changed:
            raise Problem(409, "insufficient_funds", f"{-amount} chips needed; top up or bet less")
        entry_id = new_id()
        await tx.execute(
            "INSERT INTO blackjack_ledger (id, user_id, amount, kind, table_id, round_id,"
            " request_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            entry_id, user_id, amount, kind, table_id, round_id, request_id, now,
        )  # fmt: skip
        return Entry(entry_id, amount, kind, False)

    async def ledger(self, user_id: str, limit: int, before: float | None) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT id, amount, kind, table_id, round_id, request_id, created_at"
            " FROM blackjack_ledger WHERE user_id = ? AND created_at < ?"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            user_id, before if before is not None else float("inf"), limit,
        )  # fmt: skip
        return rows

    async def audit(self, user_id: str) -> tuple[int, int]:
        """(balance, sum of the ledger): equal unless something is very wrong."""
        balance = await self.balance(user_id)
        total = await self.store.fetchval(
            "SELECT COALESCE(SUM(amount), 0) FROM blackjack_ledger WHERE user_id = ?", user_id
        )
        return balance, int(total)
