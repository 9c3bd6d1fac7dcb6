"""Chip wallets as a ledger: every grant, stake, return and refund is a row, and a wallet's
balance is the sum of its rows (kept alongside, in the same transaction, so that a stake
can be checked against it in the statement that writes it; a CHECK keeps it at zero or
above whatever races).

Every entry carries a request id unique per user: a replayed request finds its entry and
moves nothing twice, whether the replay comes from a client retry or from a restart.
Chips move through :func:`movement` statements run by ``Store.write_batch`` — one commit,
on SQLite right on the event loop — alone (a stake, a top-up) or with a settlement's other
rows (every seat's return, the hands, the round).
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from syncstream.sdk import IntegrityError, Problem, Queries, Store, new_id

WELCOME = "welcome"
Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Entry:
    id: str
    amount: int
    kind: str
    replayed: bool  # the request id had been seen: nothing moved now


def movement(
    user_id: str, amount: int, kind: str, request_id: str,
    table_id: str | None = None, round_id: str | None = None,
) -> tuple[str, list[Statement]]:  # fmt: skip
    """(entry id, statements) moving ``amount`` chips: the entry is written only if the
    balance allows it, and the balance moves only if the entry was written. The first
    statement's row count says whether it was (0: not enough chips)."""
    entry_id, now = new_id(), time.time()
    return entry_id, [
        (
            "INSERT INTO blackjack_ledger (id, user_id, amount, kind, table_id, round_id,"
            " request_id, created_at) SELECT ?, ?, CAST(? AS BIGINT), ?, ?, ?, ?,"
            " CAST(? AS DOUBLE PRECISION) FROM blackjack_wallets"
            " WHERE user_id = ? AND balance + CAST(? AS BIGINT) >= 0",
            (entry_id, user_id, amount, kind, table_id, round_id, request_id, now, user_id,
             amount),
        ),
        (
            "UPDATE blackjack_wallets SET balance = balance + CAST(? AS BIGINT),"
            " updated_at = ? WHERE user_id = ?"
            " AND EXISTS (SELECT 1 FROM blackjack_ledger WHERE id = ?)",
            (amount, now, user_id, entry_id),
        ),
    ]  # fmt: skip


def _insufficient(amount: int) -> Problem:
    return Problem(409, "insufficient_funds", f"{-amount} chips needed; top up or bet less")


class Wallets:
    def __init__(self, store: Store, starting_chips: int, daily_topup: int) -> None:
        self.store = store
        self.starting_chips = starting_chips
        self.daily_topup = daily_topup
        self._opened: set[str] = set()  # wallets known to exist: no query to check

    async def balance(self, user_id: str) -> int:
        await self.open(user_id)
        return int(
            await self.store.fetchval(
                "SELECT balance FROM blackjack_wallets WHERE user_id = ?", user_id
            )
        )

    async def open(self, user_id: str) -> None:
        """A first visit opens the wallet with the starting chips (once)."""
        if user_id in self._opened:
            return
        if not await self.store.fetchval(
            "SELECT 1 FROM blackjack_wallets WHERE user_id = ?", user_id
        ):
            _, grant = movement(user_id, self.starting_chips, "grant", WELCOME)
            create = (
                "INSERT INTO blackjack_wallets (user_id, balance, updated_at) VALUES (?, 0, ?)",
                (user_id, time.time()),
            )
            with suppress(IntegrityError):  # opened concurrently by another request
                await self.store.write_batch([create, *grant])
        self._opened.add(user_id)

    async def debit(
        self, user_id: str, amount: int, kind: str, request_id: str,
        table_id: str | None = None, round_id: str | None = None,
    ) -> Entry:  # fmt: skip
        """Take ``amount`` chips for a stake, or refuse with ``insufficient_funds``."""
        return await self._once(user_id, -amount, kind, request_id, table_id, round_id)

    async def topup(self, user_id: str) -> Entry:
        """The daily top-up: once per UTC day."""
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

    async def adjust(self, user_id: str, amount: int, actor_id: str, request_id: str) -> Entry:
        """An operator's correction (credit, or debit down to zero at most). The request id
        is the operator's own: their retry moves nothing twice and finds the first entry
        (``replayed``); another operator's same id is another request."""
        entry = await self._once(user_id, amount, "adjustment", f"admin:{actor_id}:{request_id}")
        if entry.replayed and entry.amount != amount:
            raise Problem(
                409, "request_id_reused", "you used that request id for another adjustment"
            )
        return entry

    async def _once(
        self, user_id: str, amount: int, kind: str, request_id: str,
        table_id: str | None = None, round_id: str | None = None,
    ) -> Entry:  # fmt: skip
        await self.open(user_id)
        entry_id, statements = movement(user_id, amount, kind, request_id, table_id, round_id)
        try:
            written, _ = await self.store.write_batch(statements)
        except IntegrityError:
            # The same request id (a replay, maybe concurrent) — or, on PostgreSQL, a stake
            # racing another past the balance, stopped by the CHECK on it.
            replay = await self.entry(self.store, user_id, request_id)
            if replay is None:
                raise _insufficient(amount) from None
            return replay
        if not written:
            raise _insufficient(amount)
        return Entry(entry_id, amount, kind, False)

    @staticmethod
    async def entry(q: Queries, user_id: str, request_id: str) -> Entry | None:
        """The entry a request id made, if any."""
        row = await q.fetchone(
            "SELECT id, amount, kind FROM blackjack_ledger WHERE user_id = ? AND request_id = ?",
            user_id, request_id,
        )  # fmt: skip
        return None if row is None else Entry(row["id"], row["amount"], row["kind"], True)

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
