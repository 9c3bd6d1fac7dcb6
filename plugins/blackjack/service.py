"""Live tables on this node: every step is checked by the table, paid through the wallet,
applied, and published on ``blackjack:<table id>`` (the table as anyone may see it, with a
sequence number from the realtime gateway). Timers close the betting window, the insurance
offer and each turn (the hand stands).

Money and crashes: a round's row is written before its first stake, every stake is a ledger
entry carrying the round id, and a settlement (every seat's return, the hands, the round's
status) is one transaction. On start, a round still ``open`` had its stakes refunded — each
exactly once, by request id — and the shoes in use are retired, their seeds revealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from syncstream.sdk import Absence, Auth, EventBus, Gateway, Problem, Store, User, new_id

from .cards import is_blackjack
from .config import Config
from .rules import Rules
from .shoe import Shoe
from .table import Table
from .wallet import Statement, Wallets, movement

log = structlog.get_logger(__name__)

REMEMBERED = 128  # answers a table keeps for retries (a few rounds; bounded memory)


def topic(table_id: str) -> str:
    return f"blackjack:{table_id}"


@dataclass
class LiveTable:
    table: Table
    shoe_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # (user id, request id) -> the answer it got: a retry gets the same answer again.
    # A request id is the user's: two players choosing the same one are two requests.
    answers: OrderedDict[tuple[str, str], dict[str, Any]] = field(default_factory=OrderedDict)
    timer: asyncio.Task[None] | None = None
    client_seed_stored: bool = False  # the shoe's row has the client seed of its shuffle
    timer_token: tuple[Any, ...] = ()
    deadline: float | None = None  # wall clock, for clients' countdowns


class BlackjackService:
    def __init__(
        self, store: Store, auth: Auth, bus: EventBus, gateway: Gateway, config: Config
    ) -> None:
        self.store, self.auth, self.bus, self.gateway = store, auth, bus, gateway
        self.config = config
        self.wallets = Wallets(store, config.starting_chips, config.daily_topup)
        self.tables: dict[str, LiveTable] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.absence = Absence(gateway, config.seat_grace_seconds)

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._refund_open_rounds()
        await self.store.execute(
            "UPDATE blackjack_shoes SET retired_at = ? WHERE retired_at IS NULL", time.time()
        )
        for row in await self.store.fetchall(
            "SELECT id, name, rules FROM blackjack_tables WHERE closed_at IS NULL"
        ):
            rules = Rules(**json.loads(row["rules"]))
            self.tables[row["id"]] = await self._open_table(row["id"], row["name"], rules)
        self._sweeper = asyncio.get_running_loop().create_task(
            self.absence.patrol(self._seated, self._free_seats)
        )

    async def figures(self) -> dict[str, float]:
        seated = sum(len(live.table.seats) for live in self.tables.values())
        return {"tables": len(self.tables), "seated": seated}

    async def user_facts(self, user_id: str) -> dict[str, Any]:
        hands = await self.store.fetchval(
            "SELECT COUNT(*) FROM blackjack_ledger WHERE user_id = ? AND kind = 'bet'", user_id
        )
        return {"balance": await self.wallets.balance(user_id), "bets": int(hands)}

    async def close(self) -> None:
        tasks = [live.timer for live in self.tables.values()] + [self._sweeper]
        for task in tasks:
            if task is not None:
                task.cancel()

    def _seated(self) -> list[tuple[str, list[str]]]:
        return [
            (topic(t.table.id), [s.user_id for s in t.table.seats.values()])
            for t in self.tables.values()
            if t.table.seats
        ]

    async def _free_seats(self, table_topic: str, gone: list[str]) -> None:
        """Players who left (neither watching the table nor acting for
        ``seat_grace_seconds``) lose their seats, unless chips are in play."""
        live = self.live(table_topic.split(":", 1)[1])
        async with live.lock:
            for user_id in gone:
                with contextlib.suppress(Problem):  # still in play: offered again next time
                    live.table.leave(user_id)
                    self.absence.forget(table_topic, user_id)
            await self._publish(live)

    async def _refund_open_rounds(self) -> None:
        for round_row in await self.store.fetchall(
            "SELECT id, table_id FROM blackjack_rounds WHERE status = 'open'"
        ):
            round_id = round_row["id"]
            stakes = await self.store.fetchall(
                "SELECT id, user_id, amount FROM blackjack_ledger"
                " WHERE round_id = ? AND amount < 0",
                round_id,
            )
            statements: list[Statement] = []
            for stake in stakes:  # each refund's request id names its stake: once only
                statements += movement(
                    stake["user_id"], -stake["amount"], "refund", f"refund:{stake['id']}",
                    round_row["table_id"], round_id,
                )[1]  # fmt: skip
            statements.append((
                "UPDATE blackjack_rounds SET status = 'refunded', ended_at = ? WHERE id = ?",
                (time.time(), round_id),
            ))  # fmt: skip
            await self.store.write_batch(statements)
            log.warning("blackjack.round_refunded", round=round_id, stakes=len(stakes))

    async def _open_table(self, table_id: str, name: str, rules: Rules) -> LiveTable:
        shoe = Shoe(rules.decks, rules.penetration)
        shoe_id = await self._store_shoe(table_id, shoe)
        return LiveTable(Table(table_id, name, rules, shoe), shoe_id)

    async def _store_shoe(self, table_id: str, shoe: Shoe) -> str:
        shoe_id = new_id()
        await self.store.execute(
            "INSERT INTO blackjack_shoes (id, table_id, commitment, seed, decks, dealt,"
            " created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
            shoe_id, table_id, shoe.commitment, shoe.seed.hex(), shoe.decks, time.time(),
        )  # fmt: skip
        return shoe_id

    # -- tables -----------------------------------------------------------------------------

    async def create_table(self, user: User, name: str, rules: Rules) -> dict[str, Any]:
        table_id = new_id()
        await self.store.execute(
            "INSERT INTO blackjack_tables (id, name, rules, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            table_id, name, json.dumps(asdict(rules)), user.id, time.time(),
        )  # fmt: skip
        live = self.tables[table_id] = await self._open_table(table_id, name, rules)
        await self.bus.fire("blackjack.table_created", {"table_id": table_id, "name": name})
        return self.view(live)

    def live(self, table_id: str) -> LiveTable:
        live = self.tables.get(table_id)
        if live is None:
            raise Problem(404, "table_not_found", "no such table")
        return live

    def view(self, live: LiveTable) -> dict[str, Any]:
        view = live.table.view()
        view["shoe"]["id"] = live.shoe_id
        view["rules"] = asdict(live.table.rules)
        view["deadline"] = live.deadline
        return view

    async def sit(self, user: User, table_id: str, seat: int | None) -> dict[str, Any]:
        live = self.live(table_id)
        async with live.lock:
            await self.wallets.open(user.id)  # a first visit gets the starting chips
            live.table.sit(user.id, user.username, seat)
            self.absence.seen(topic(table_id), user.id)
            return await self._publish(live)

    async def leave(self, user: User, table_id: str) -> dict[str, Any]:
        live = self.live(table_id)
        async with live.lock:
            live.table.leave(user.id)
            return await self._publish(live)

    async def sit_out(self, user: User, table_id: str, out: bool) -> dict[str, Any]:
        live = self.live(table_id)
        async with live.lock:
            live.table.sit_out(user.id, out)
            return await self._publish(live)

    # -- the round --------------------------------------------------------------------------

    async def step(
        self, user: User, table_id: str, step: str, request_id: str, amount: int = 0,
        take: bool = False, client_seed: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A bet, an insurance answer or a hand's action, paid for before it is applied.

        A request id is the user's own: one they used before changes nothing again and gets
        the answer it got the first time (while the table remembers it, else — a stake found
        in the ledger — the table as it is now)."""
        live = self.live(table_id)
        async with live.lock:
            table = live.table
            self.absence.seen(topic(table_id), user.id)
            key = (user.id, request_id)
            if key in live.answers:
                return {**live.answers[key], "replayed": True}
            cost = table.cost_of(user.id, step, amount)
            if step == "insurance" and not take:
                cost = 0
            # The ledger's own ids ("welcome", "topup:…", "return:<round>:<seat>", …) are
            # out of a client's reach: a step's id is kept apart under its own prefix.
            ledger_id = f"step:{request_id}"
            opens_round = step == "bet" and table.phase in ("idle", "settled")
            if opens_round:
                if await self.wallets.entry(self.store, user.id, ledger_id) is not None:
                    return {**self.view(live), "replayed": True}  # a retry of a past bet
                await self._begin_round(live)
            try:
                entry = await self.wallets.debit(
                    user.id, cost, step, ledger_id, table.id, table.round_id
                ) if cost else None  # fmt: skip
            except Problem:
                if opens_round:  # the round never had a stake: it did not happen
                    await self._abandon_round(live)
                raise
            if entry is not None and entry.replayed:  # an earlier request's retry
                return {**self.view(live), "replayed": True}
            if step == "bet":
                table.place_bet(user.id, amount, client_seed)
                if table.everyone_bet:
                    table.deal()
            elif step == "insurance":
                table.take_insurance(user.id, take)
            else:
                table.act(user.id, step)
            answer = live.answers[key] = await self._after_change(live)
            while len(live.answers) > REMEMBERED:
                live.answers.popitem(last=False)
            return answer

    async def _begin_round(self, live: LiveTable) -> None:
        """The first bet opens a round: its row exists before any stake names it."""
        table = live.table
        table.begin_round()
        await self.store.execute(
            "INSERT INTO blackjack_rounds (id, table_id, shoe_id, status, started_at)"
            " VALUES (?, ?, ?, 'open', ?)",
            table.round_id, table.id, live.shoe_id, time.time(),
        )  # fmt: skip

    async def _abandon_round(self, live: LiveTable) -> None:
        live.table.phase = "idle"
        await self.store.execute(
            "UPDATE blackjack_rounds SET status = 'abandoned', ended_at = ? WHERE id = ?",
            time.time(), live.table.round_id,
        )  # fmt: skip

    async def _after_change(self, live: LiveTable) -> dict[str, Any]:
        shoe = live.table.shoe
        if shoe.client_seed is not None and not live.client_seed_stored:  # its first deal
            await self.store.execute(
                "UPDATE blackjack_shoes SET client_seed = ? WHERE id = ?",
                shoe.client_seed, live.shoe_id,
            )  # fmt: skip
            live.client_seed_stored = True
        if live.table.phase == "settled":
            await self._settle(live)
        self._arm_timer(live)
        return await self._publish(live)

    @staticmethod
    def _waiting_on(table: Table) -> tuple[Any, ...]:
        """What the round waits on: the betting window and the insurance offer run once per
        round; a turn's clock starts again with every action."""
        acted = len(table.actions) if table.phase == "playing" else None
        return (table.round_id, table.phase, table.turn, acted)

    def _arm_timer(self, live: LiveTable) -> None:
        """One timer per table, for whatever the round waits on now."""
        token = self._waiting_on(live.table)
        if live.timer is not None and not live.timer.done() and live.timer_token == token:
            return  # the same window, still running
        if live.timer is not None and live.timer is not asyncio.current_task():
            live.timer.cancel()
        live.timer, live.deadline, live.timer_token = None, None, token
        seconds = {
            "betting": self.config.betting_seconds,
            "insurance": self.config.insurance_seconds,
            "playing": self.config.turn_seconds,
        }.get(live.table.phase)
        if seconds is None:
            return
        live.deadline = time.time() + seconds
        live.timer = asyncio.get_running_loop().create_task(self._expire(live, seconds, token))

    async def _expire(self, live: LiveTable, seconds: float, token: tuple[Any, ...]) -> None:
        await asyncio.sleep(seconds)
        async with live.lock:
            table = live.table
            if token != self._waiting_on(table):
                return  # something happened meanwhile
            try:
                if table.phase == "betting":
                    table.deal()
                elif table.phase == "insurance":
                    table.close_insurance()
                else:
                    table.stand_on_timeout()
                await self._after_change(live)
            except Exception:
                log.exception("blackjack.timer_failed", table=table.id)

    async def _settle(self, live: LiveTable) -> None:
        """Pay every seat, store the hands and close the round, in one transaction (a
        second settlement of the round would collide with the first's request ids)."""
        table, now = live.table, time.time()
        statements: list[Statement] = []
        for seat_no, amount in table.returns().items():
            statements += movement(
                table.seats[seat_no].user_id, amount, "return",
                f"return:{table.round_id}:{seat_no}", table.id, table.round_id,
            )[1]  # fmt: skip
        dealt = ("UPDATE blackjack_shoes SET dealt = ? WHERE id = ?",
                 (table.shoe.position, live.shoe_id))  # fmt: skip
        await self.store.write_batch([*statements, *self._round_rows(table, now), dealt])
        big = self.config.big_win
        for seat in table.seats.values():
            net = sum(h.net or 0 for h in seat.hands) + (seat.insurance_net or 0)
            if seat.hands and net >= big:
                await self.bus.fire(
                    "blackjack.big_win",
                    {"table_id": table.id, "round_id": table.round_id, "user_id": seat.user_id,
                     "username": seat.username, "net": net},
                )  # fmt: skip
        await self.bus.fire(
            "blackjack.round_settled",
            {"table_id": table.id, "round_id": table.round_id, "dealer": table.dealer},
        )
        if table.shoe.needs_shuffle:
            await self._new_shoe(live)

    @staticmethod
    def _round_rows(table: Table, now: float) -> list[Statement]:
        seats = {str(n): s.view() for n, s in table.seats.items() if s.hands}
        rows: list[Statement] = [(
            "UPDATE blackjack_rounds SET status = 'settled', dealer = ?, seats = ?,"
            " actions = ?, ended_at = ? WHERE id = ?",
            (json.dumps(table.dealer), json.dumps(seats), json.dumps(table.actions), now,
             table.round_id),
        )]  # fmt: skip
        for seat_no, seat in table.seats.items():
            for index, hand in enumerate(seat.hands):
                net = hand.net or 0
                outcome = (
                    "surrender" if hand.surrendered
                    else "blackjack" if net > 0 and is_blackjack(hand.cards, hand.from_split)
                    else "win" if net > 0 else "push" if net == 0 else "loss"
                )  # fmt: skip
                rows.append((
                    "INSERT INTO blackjack_hands (round_id, seat, hand, user_id, cards, bet,"
                    " net, outcome, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (table.round_id, seat_no, index, seat.user_id, " ".join(hand.cards),
                     hand.bet, net, outcome, now),
                ))  # fmt: skip
        return rows

    async def _new_shoe(self, live: LiveTable) -> None:
        """The cut card came out: retire the shoe (revealing its seed) and bring a new one."""
        old = live.table.shoe
        await self.store.execute(
            "UPDATE blackjack_shoes SET retired_at = ? WHERE id = ?", time.time(), live.shoe_id
        )
        await self.gateway.publish(
            topic(live.table.id),
            {"type": "shoe_retired", "shoe_id": live.shoe_id, **old.reveal()},
        )
        rules = live.table.rules
        live.table.shoe = Shoe(rules.decks, rules.penetration)
        live.shoe_id = await self._store_shoe(live.table.id, live.table.shoe)
        live.client_seed_stored = False

    async def _publish(self, live: LiveTable) -> dict[str, Any]:
        view = self.view(live)
        await self.gateway.publish(topic(live.table.id), {"type": "state", **view})
        return view
