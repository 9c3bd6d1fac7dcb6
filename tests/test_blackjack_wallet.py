"""The chip ledger on SQLite and PostgreSQL: concurrent stakes never overdraw, replays move
nothing twice, and the balance is always the sum of the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugins.blackjack.schema import MIGRATIONS
from plugins.blackjack.wallet import Wallets, movement
from syncstream.sdk import Problem
from syncstream.store import IntegrityError, Store, open_store

from .support import database


@pytest.fixture
async def stores(backend: str, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database: two nodes, or two connections racing."""
    async with database(backend) as (url, schema):
        a = await open_store(url, sqlite_path=tmp_path / "db.sqlite", schema=schema)
        b = await open_store(url, sqlite_path=tmp_path / "db.sqlite", schema=schema)
        await a.migrate("blackjack", MIGRATIONS)
        yield a, b
        await a.close()
        await b.close()


async def audit(wallets: Wallets, user_id: str) -> int:
    balance, total = await wallets.audit(user_id)
    assert balance == total
    return balance


async def test_concurrent_stakes_never_overdraw(stores: tuple[Store, Store]) -> None:
    one, two = Wallets(stores[0], 1000, 500), Wallets(stores[1], 1000, 500)
    assert await audit(one, "u1") == 1000
    results = await asyncio.gather(
        *(
            (one if n % 2 else two).debit("u1", 150, "bet", f"r{n}", "t", "round")
            for n in range(12)
        ),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Problem)]
    assert len(results) - len(refused) == 6  # 6 x 150 = 900 of the 1000
    assert {p.code for p in refused} == {"insufficient_funds"}
    assert await audit(one, "u1") == 100


async def test_a_replayed_request_moves_nothing_twice(stores: tuple[Store, Store]) -> None:
    one, two = Wallets(stores[0], 1000, 500), Wallets(stores[1], 1000, 500)
    first, *again = await asyncio.gather(
        one.debit("u1", 300, "bet", "same"), two.debit("u1", 300, "bet", "same"),
        one.debit("u1", 300, "bet", "same"),
    )  # fmt: skip
    entries = {first.id, *(e.id for e in again)}
    assert len(entries) == 1 and [first.replayed, *(e.replayed for e in again)].count(False) == 1
    assert await audit(two, "u1") == 700
    # A settlement retried after a crash collides with the first one's request id.
    _, pay = movement("u1", 600, "return", "return:round:0", "t", "round")
    assert await stores[0].write_batch(pay) == [1, 1]
    with pytest.raises(IntegrityError):
        await stores[1].write_batch(movement("u1", 600, "return", "return:round:0")[1])
    replay = await two.entry(stores[1], "u1", "return:round:0")
    assert replay is not None and replay.amount == 600
    assert await audit(one, "u1") == 1300


async def test_the_daily_topup_is_once_a_day(stores: tuple[Store, Store]) -> None:
    one = Wallets(stores[0], 0, 250)
    assert (await one.topup("u1")).amount == 250
    with pytest.raises(Problem) as refused:
        await Wallets(stores[1], 0, 250).topup("u1")
    assert refused.value.code == "already_topped_up"
    assert await audit(one, "u1") == 250
