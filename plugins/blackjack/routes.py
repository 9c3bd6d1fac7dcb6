"""The blackjack API under ``/api/blackjack``: tables, seats, the round's steps, the wallet,
history, statistics and the provably fair shoe's verification."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Audit, AuthLevel, Call, Problem, ScopedApi

from .config import RulesIn
from .rules import Rules
from .service import BlackjackService
from .shoe import CLIENT_SEED, verify

TABLE = "/tables/{table_id:[0-9a-f]{32}}"
REQUEST_ID = Field(min_length=1, max_length=64, description="Unique per step: retries are safe")


class TableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    rules: RulesIn | None = Field(None, description="The server's default rules if left out")


class SeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seat: int | None = Field(None, ge=0, le=6, description="Any free seat if left out")


class SitOutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out: bool = True


class BetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int = Field(ge=1)
    request_id: str = REQUEST_ID
    client_seed: str | None = Field(
        None, pattern=CLIENT_SEED, description="Mixed into the shuffle of a new shoe's first deal"
    )


class InsuranceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    take: bool
    request_id: str = REQUEST_ID


class ActIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["hit", "stand", "double", "split", "surrender"]
    request_id: str = REQUEST_ID


class LedgerQuery(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    before: float | None = Field(None, description="created_at of the last entry you have")


class RoundsQuery(BaseModel):
    table_id: str | None = Field(None, pattern="^[0-9a-f]{32}$")
    limit: int = Field(20, ge=1, le=200)
    before: float | None = None


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: str = Field(pattern="^[0-9a-f]{64}$")
    commitment: str = Field(pattern="^[0-9a-f]{64}$")
    decks: int = Field(ge=1, le=8)
    dealt: int = Field(0, ge=0, le=10_000, description="Cards dealt (0: the first shuffle)")
    client_seed: str = Field("", max_length=1000, description="The shoe's, as it revealed it")


class AdjustIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int = Field(ge=-1_000_000_000, le=1_000_000_000, description="Chips; not 0")
    reason: str = Field(min_length=1, max_length=200)
    request_id: str = REQUEST_ID


def register(api: ScopedApi, service: BlackjackService, audit: Audit) -> None:
    store, wallets = service.store, service.wallets
    # What a spectator sees (tables, settled rounds, shoes) is public unless the operator
    # asks for sign-in; wallets, ledgers and statistics stay with signed-in users.
    read: AuthLevel = "public" if service.config.public_reads else "user"

    @api.route("POST", "/tables", body=TableIn, status=201)
    async def create_table(call: Call[TableIn]) -> dict[str, Any]:
        """Open a table with the default rules or your own."""
        rules_in = call.body.rules or service.config.rules
        if rules_in.min_bet > rules_in.max_bet:
            raise Problem(422, "invalid_rules", "min_bet is above max_bet")
        return await service.create_table(call.user, call.body.name, Rules(**rules_in.model_dump()))

    @api.route("GET", "/tables", auth=read)
    async def list_tables(call: Call[None]) -> dict[str, Any]:
        """Open tables with their rules, phase and seats taken."""
        return {
            "tables": [
                {
                    "id": t.table.id,
                    "name": t.table.name,
                    "phase": t.table.phase,
                    "seats_taken": len(t.table.seats),
                    "min_bet": t.table.rules.min_bet,
                    "max_bet": t.table.rules.max_bet,
                    "decks": t.table.rules.decks,
                }
                for t in service.tables.values()
            ]
        }

    @api.route("GET", TABLE, auth=read)
    async def get_table(call: Call[None]) -> dict[str, Any]:
        """The table as anyone may see it (the hole card hidden until it is turned)."""
        return service.view(service.live(call.param("table_id")))

    @api.route("POST", TABLE + "/sit", body=SeatIn)
    async def sit(call: Call[SeatIn]) -> dict[str, Any]:
        """Take a seat (seven per table; anyone else watches)."""
        return await service.sit(call.user, call.param("table_id"), call.body.seat)

    @api.route("POST", TABLE + "/leave")
    async def leave(call: Call[None]) -> dict[str, Any]:
        """Give up your seat (not while your hands are in play)."""
        return await service.leave(call.user, call.param("table_id"))

    @api.route("POST", TABLE + "/sit-out", body=SitOutIn)
    async def sit_out(call: Call[SitOutIn]) -> dict[str, Any]:
        """Keep your seat but skip rounds (or come back with ``out: false``)."""
        return await service.sit_out(call.user, call.param("table_id"), call.body.out)

    @api.route("POST", TABLE + "/bet", body=BetIn)
    async def bet(call: Call[BetIn]) -> dict[str, Any]:
        """Bet on the coming deal; the first bet opens the betting window."""
        b = call.body
        return await service.step(
            call.user, call.param("table_id"), "bet", b.request_id, b.amount,
            client_seed=b.client_seed,
        )  # fmt: skip

    @api.route("POST", TABLE + "/insurance", body=InsuranceIn)
    async def insurance(call: Call[InsuranceIn]) -> dict[str, Any]:
        """Take (half your bet) or decline insurance against the dealer's ace."""
        return await service.step(
            call.user, call.param("table_id"), "insurance", call.body.request_id,
            take=call.body.take,
        )  # fmt: skip

    @api.route("POST", TABLE + "/act", body=ActIn)
    async def act(call: Call[ActIn]) -> dict[str, Any]:
        """Hit, stand, double, split or surrender the hand whose turn it is."""
        return await service.step(
            call.user, call.param("table_id"), call.body.action, call.body.request_id
        )

    @api.route("GET", "/wallet")
    async def wallet(call: Call[None]) -> dict[str, Any]:
        """Your chips (a first visit opens the wallet with the starting chips)."""
        return {"balance": await wallets.balance(call.user.id), "daily_topup": wallets.daily_topup}

    @api.route("POST", "/wallet/topup")
    async def topup(call: Call[None]) -> dict[str, Any]:
        """Claim the daily top-up (once per UTC day)."""
        entry = await wallets.topup(call.user.id)
        return {"credited": entry.amount, "balance": await wallets.balance(call.user.id)}

    @api.route("POST", "/wallets/{user_id:[0-9a-f]{32}}/adjust", body=AdjustIn, auth="admin")
    async def adjust(call: Call[AdjustIn]) -> dict[str, Any]:
        """Credit or debit a user's chips (admin; audited with the reason). Your retry with
        the same request id answers the first entry again (``replayed``)."""
        body, user_id = call.body, call.param("user_id")
        if body.amount == 0:
            raise Problem(422, "zero_adjustment", "adjust by a number of chips other than 0")
        user = await service.auth.get_user(user_id)
        entry = await wallets.adjust(user.id, body.amount, call.user.id, body.request_id)
        if not entry.replayed:  # a retry was audited the first time
            await audit.record(
                "blackjack.chips_adjusted", actor_id=call.user.id, target=user.id, ip=call.ip,
                amount=body.amount, reason=body.reason,
            )  # fmt: skip
        return {
            "entry": entry.id,
            "amount": entry.amount,
            "balance": await wallets.balance(user.id),
            "replayed": entry.replayed,
        }

    @api.route("GET", "/wallet/ledger", query=LedgerQuery)
    async def ledger(call: Call[None]) -> dict[str, Any]:
        """Your ledger, newest first: grants, stakes, returns, refunds, top-ups."""
        q: LedgerQuery = call.query
        return {"entries": await wallets.ledger(call.user.id, q.limit, q.before)}

    @api.route("GET", "/rounds", query=RoundsQuery, auth=read)
    async def rounds(call: Call[None]) -> dict[str, Any]:
        """Settled rounds, newest first (optionally of one table)."""
        q: RoundsQuery = call.query
        sql = (
            "SELECT id, table_id, shoe_id, status, dealer, seats, actions, started_at, ended_at"
            " FROM blackjack_rounds WHERE status <> 'open' AND started_at < ?"
        )
        args: list[Any] = [q.before if q.before is not None else float("inf")]
        if q.table_id:
            sql += " AND table_id = ?"
            args.append(q.table_id)
        rows = await store.fetchall(sql + " ORDER BY started_at DESC LIMIT ?", *args, q.limit)
        for row in rows:
            for key in ("dealer", "seats", "actions"):
                row[key] = json.loads(row[key]) if row[key] else None
        return {"rounds": rows}

    @api.route("GET", "/stats")
    async def my_stats(call: Call[None]) -> dict[str, Any]:
        """Your hands, wins, losses, pushes, blackjacks, net and biggest win."""
        return await stats_of(call.user.id)

    @api.route("GET", "/users/{username}/stats")
    async def user_stats(call: Call[None]) -> dict[str, Any]:
        """Another player's statistics."""
        user = await service.auth.find_user(call.param("username"))
        if user is None:
            raise Problem(404, "user_not_found", "no such user")
        return await stats_of(user.id)

    async def stats_of(user_id: str) -> dict[str, Any]:
        row = await store.fetchone(
            "SELECT COUNT(*) AS hands, COALESCE(SUM(net), 0) AS net,"
            " COALESCE(SUM(bet), 0) AS wagered, COALESCE(MAX(net), 0) AS biggest_win,"
            " SUM(CASE WHEN outcome IN ('win', 'blackjack') THEN 1 ELSE 0 END) AS wins,"
            " SUM(CASE WHEN outcome = 'blackjack' THEN 1 ELSE 0 END) AS blackjacks,"
            " SUM(CASE WHEN outcome = 'push' THEN 1 ELSE 0 END) AS pushes,"
            " SUM(CASE WHEN outcome IN ('loss', 'surrender') THEN 1 ELSE 0 END) AS losses"
            " FROM blackjack_hands WHERE user_id = ?",
            user_id,
        )
        assert row is not None
        return {"user_id": user_id, **{k: int(v or 0) for k, v in row.items()}}

    @api.route("GET", "/shoes/{shoe_id:[0-9a-f]{32}}", auth=read)
    async def shoe(call: Call[None]) -> dict[str, Any]:
        """A shoe's commitment and the cards its settled rounds dealt (``dealt``); once
        retired, its seed and card order too (the whole first shuffle, and the shuffles
        after it up to ``dealt`` if a round outran it)."""
        row = await store.fetchone(
            "SELECT id, table_id, commitment, seed, client_seed, decks, dealt, created_at,"
            " retired_at FROM blackjack_shoes WHERE id = ?",
            call.param("shoe_id"),
        )
        if row is None:
            raise Problem(404, "shoe_not_found", "no such shoe")
        if row["retired_at"] is None:
            row.pop("seed")  # never before the shoe is done
            return row
        count = max(row["dealt"] or 0, 52 * row["decks"])
        order = verify(
            row["seed"], row["commitment"], row["decks"], count, row["client_seed"] or ""
        )
        return {**row, "order": order}

    @api.route("POST", "/verify", body=VerifyIn, auth="public")
    async def verify_shoe(call: Call[VerifyIn]) -> dict[str, Any]:
        """Check a revealed seed against its commitment and get the order it deals."""
        b = call.body
        try:
            order = verify(b.seed, b.commitment, b.decks, b.dealt, b.client_seed)
        except ValueError:
            raise Problem(422, "seed_mismatch", "sha256(seed) is not the commitment") from None
        return {"valid": True, "order": order}
