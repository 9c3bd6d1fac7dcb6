"""Blackjack end to end: tables, rounds over HTTP and the WebSocket, spectators, the wallet's
ledger, refusals, timers, a restart mid-round and the provably fair shoe."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from .support import Client, running

FAST = {
    "plugins.blackjack.betting_seconds": 0.4,
    "plugins.blackjack.insurance_seconds": 0.4,
    "plugins.blackjack.turn_seconds": 0.4,
}
_ids = itertools.count()
T = TypeVar("T")


async def until(probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    """What ``probe`` gives once it gives something other than None (polled, with a
    deadline generous enough for a loaded machine)."""
    deadline = time.monotonic() + timeout
    while (got := await probe()) is None:
        assert time.monotonic() < deadline, f"nothing after {timeout} s"
        await asyncio.sleep(0.05)
    return got


def rid() -> str:
    return f"req-{next(_ids)}"


async def table(c: Client, token: str, **rules: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "high rollers"}
    if rules:
        body["rules"] = rules
    status, created, _ = await c.call("POST", "/api/blackjack/tables", token, json=body)
    assert status == 201, created
    return dict(created)


async def post(c: Client, token: str, table_id: str, what: str, **body: Any) -> tuple[int, Any]:
    status, answer, _ = await c.call(
        "POST", f"/api/blackjack/tables/{table_id}/{what}", token, json=body
    )
    return status, answer


async def play_out(c: Client, table_id: str, tokens: dict[str, str]) -> dict[str, Any]:
    """Decline insurance and stand on every hand until the round is settled."""
    any_token = next(iter(tokens.values()))
    while True:
        _, t, _ = await c.call("GET", f"/api/blackjack/tables/{table_id}", any_token)
        if t["phase"] == "insurance":
            for seat in t["seats"].values():
                if seat["hands"] and seat["insurance"] is None:
                    status, body = await post(
                        c, tokens[seat["user_id"]], table_id, "insurance", take=False,
                        request_id=rid(),
                    )  # fmt: skip
                    assert status == 200, body
        elif t["phase"] == "playing":
            seat = t["seats"][str(t["turn"]["seat"])]
            status, body = await post(
                c, tokens[seat["user_id"]], table_id, "act", action="stand", request_id=rid()
            )
            assert status == 200, body
        else:
            return dict(t)


async def me(c: Client, token: str) -> str:
    _, user, _ = await c.call("GET", "/api/auth/me", token)
    return str(user["id"])


async def balance(c: Client, token: str) -> int:
    """The wallet's balance, checked against the sum of its ledger."""
    _, wallet, _ = await c.call("GET", "/api/blackjack/wallet", token)
    _, ledger, _ = await c.call("GET", "/api/blackjack/wallet/ledger?limit=500", token)
    assert sum(e["amount"] for e in ledger["entries"]) == wallet["balance"]
    return int(wallet["balance"])


async def test_a_round_over_http_and_websocket_with_a_spectator(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob, carol = [await c.register(n) for n in ("alice", "bob", "carol")]
        tokens = {await me(c, alice): alice, await me(c, bob): bob}
        t = await table(c, alice)
        tid = t["id"]
        assert t["phase"] == "idle" and len(t["shoe"]["commitment"]) == 64
        watcher = await c.ws(carol)
        assert (await watcher.request("subscribe", f"blackjack:{tid}"))["op"] == "reply"
        assert (await post(c, alice, tid, "sit", seat=2))[0] == 200
        status, problem = await post(c, bob, tid, "sit", seat=2)
        assert status == 409 and problem["code"] == "seat_taken"
        assert (await post(c, bob, tid, "sit"))[0] == 200
        status, state = await post(c, alice, tid, "bet", amount=100, request_id="a-1")
        assert status == 200 and state["phase"] == "betting" and state["deadline"]
        bet_only = {"actions": ["bet"], "costs": {}, "bet": {"min": 10, "max": 1000}}
        assert state["allowed"] == {"0": bet_only}  # bob's to bet; alice has
        sock = await c.ws(bob)
        reply = await sock.request("publish", f"blackjack:{tid}", {"bet": 50, "request_id": "b-1"})
        assert reply["op"] == "reply", reply
        dealt = reply["data"]["state"]
        assert dealt["phase"] in ("insurance", "playing", "settled")
        if dealt["phase"] != "settled":  # the hole card is not shown before its time
            assert dealt["dealer"]["cards"][1] == "??" and dealt["dealer"]["total"] is None
        final = await play_out(c, tid, tokens)
        assert final["phase"] == "settled" and "??" not in final["dealer"]["cards"]
        hole = final["dealer"]["cards"][1]
        events = []  # up to the state that settled the round, however late it comes
        while not events or (events[-1]["data"]["type"], events[-1]["data"].get("phase")) != (
            "state",
            "settled",
        ):
            events += await watcher.events(1, timeout=30)
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        states = [e["data"] for e in events if e["data"]["type"] == "state"]
        assert states[-1]["phase"] == "settled"
        for s in states[:-1]:
            if s["phase"] != "settled":
                assert s["dealer"]["cards"][1:2] in ([], ["??"]), "the hole card leaked"
            if s["phase"] == "playing":  # the seat whose turn it is, and what it may do
                assert list(s["allowed"]) == [str(s["turn"]["seat"])]
                assert {"hit", "stand"} <= set(s["allowed"][str(s["turn"]["seat"])]["actions"])
        assert any(s["dealer"]["cards"][:2] == [final["dealer"]["cards"][0], hole]
                   for s in states)  # fmt: skip
        # Chips: each player got back exactly what the table says.
        for token, staked, seat in ((alice, 100, "2"), (bob, 50, "0")):
            hands = final["seats"][seat]["hands"]
            back = sum(h["bet"] + h["net"] for h in hands)
            assert await balance(c, token) == 1000 - staked + back
        _, stats, _ = await c.call("GET", "/api/blackjack/stats", alice)
        assert stats["hands"] == 1 and stats["wagered"] == 100
        _, history, _ = await c.call("GET", f"/api/blackjack/rounds?table_id={tid}", carol)
        (last,) = history["rounds"]
        assert last["status"] == "settled" and last["dealer"] == final["dealer"]["cards"]
        assert [a["action"] for a in last["actions"]][:2] == ["bet", "bet"]
        await watcher.ws.close()
        await sock.ws.close()


async def test_refusals_replays_and_races_leave_balances_exact(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.blackjack.starting_chips": 300}) as c:
        alice, bob, eve = [await c.register(n) for n in ("alice", "bob", "eve")]
        tokens = {await me(c, alice): alice, await me(c, bob): bob}
        tid = (await table(c, alice, min_bet=10, max_bet=500))["id"]
        status, problem = await post(c, eve, tid, "bet", amount=50, request_id=rid())
        assert status == 403 and problem["code"] == "not_seated"
        for token in (alice, bob):
            assert (await post(c, token, tid, "sit"))[0] == 200
        for amount, code in ((5, "bet_out_of_limits"), (501, "bet_out_of_limits"),
                             (400, "insufficient_funds")):  # fmt: skip
            status, problem = await post(c, alice, tid, "bet", amount=amount, request_id=rid())
            assert problem["code"] == code and status in (409, 422), problem
        assert await balance(c, alice) == 300
        _, t, _ = await c.call("GET", f"/api/blackjack/tables/{tid}", alice)
        assert t["phase"] == "idle", "a refused first bet opens no round"
        # Two devices bet at once with different request ids: one bet stands.
        results = await asyncio.gather(
            post(c, alice, tid, "bet", amount=100, request_id="dev-1"),
            post(c, alice, tid, "bet", amount=100, request_id="dev-2"),
        )
        assert sorted(s for s, _ in results) == [200, 409]
        assert await balance(c, alice) == 200
        # A replayed request moves nothing again.
        status, state = await post(c, alice, tid, "bet", amount=100, request_id="dev-1")
        assert status == 200 and state["replayed"] is True
        assert await balance(c, alice) == 200
        status, state = await post(c, bob, tid, "bet", amount=290, request_id=rid())
        assert status == 200 and state["phase"] != "betting"  # everyone bet: dealt at once
        status, problem = await post(c, alice, tid, "bet", amount=10, request_id=rid())
        if state["phase"] != "settled":  # (a dealer blackjack ends the round at once)
            assert status == 409 and problem["code"] in ("betting_closed", "already_bet")
        if state["phase"] == "playing":
            turn_seat = state["seats"][str(state["turn"]["seat"])]
            waiting = alice if turn_seat["user_id"] != tokens_key(tokens, alice) else bob
            status, problem = await post(c, waiting, tid, "act", action="hit", request_id=rid())
            assert status == 409 and problem["code"] == "not_your_turn"
            if turn_seat["user_id"] == tokens_key(tokens, bob):  # 10 chips left: no double
                status, problem = await post(c, bob, tid, "act", action="double", request_id=rid())
                assert status == 409
                assert problem["code"] in ("insufficient_funds", "cannot_double")
        for body in ({"action": "fold", "request_id": rid()}, {"action": "hit"}, {}):
            status, problem = await post(c, alice, tid, "act", **body)
            assert status == 422 and problem["code"]
        status, problem = await post(c, alice, tid, "leave")
        assert status == 409 and problem["code"] == "in_round"
        settled = await play_out(c, tid, tokens)
        if settled["phase"] == "settled":  # (not when alice's bet above opened a new round)
            status, again = await post(c, alice, tid, "bet", amount=100, request_id="dev-1")
            assert status == 200 and again["replayed"] is True  # a retry after the round
            assert again["phase"] == "betting" and again["round_id"] == settled["round_id"]
        for token in (alice, bob):
            await balance(c, token)  # ledger and balance agree
        status, problem = await post(c, alice, "f" * 32, "bet", amount=10, request_id=rid())
        assert status == 404 and problem["code"] == "table_not_found"


async def test_request_ids_are_each_users_own(tmp_path: Path) -> None:
    """Two players choosing the same request ids place two bets and make two moves; a
    player's own retry gets its first answer back; ids the ledger uses itself ("welcome",
    "return:<round>:<seat>") are out of a client's reach."""
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        tokens = {await me(c, alice): alice, await me(c, bob): bob}
        tid = (await table(c, alice))["id"]
        for token in (alice, bob):
            assert (await post(c, token, tid, "sit"))[0] == 200
        status, first = await post(c, alice, tid, "bet", amount=100, request_id="same")
        assert status == 200 and "replayed" not in first and first["phase"] == "betting"
        status, state = await post(c, bob, tid, "bet", amount=40, request_id="same")
        assert status == 200 and "replayed" not in state, "bob's bet is not alice's"
        assert state["phase"] != "betting" and state["seats"]["1"]["hands"][0]["bet"] == 40
        assert await balance(c, bob) == 960
        status, again = await post(c, alice, tid, "bet", amount=100, request_id="same")
        assert status == 200 and again == {**first, "replayed": True}  # her first answer
        assert await balance(c, alice) == 900
        while True:  # both answer insurance and stand with the same ids
            _, t, _ = await c.call("GET", f"/api/blackjack/tables/{tid}", alice)
            if t["phase"] == "insurance":
                seat = next(s for s in t["seats"].values() if s["insurance"] is None)
                what, body = "insurance", {"take": False, "request_id": "same-ins"}
            elif t["phase"] == "playing":
                seat = t["seats"][str(t["turn"]["seat"])]
                what, body = "act", {"action": "stand", "request_id": "same-act"}
            else:
                break
            status, answer = await post(c, tokens[seat["user_id"]], tid, what, **body)
            assert status == 200 and "replayed" not in answer, answer
        assert t["phase"] == "settled"
        for token, seat, staked in ((alice, "0", 100), (bob, "1", 40)):
            back = sum(h["bet"] + h["net"] for h in t["seats"][seat]["hands"])
            assert await balance(c, token) == 1000 - staked + back
        # The ledger's own ids: a bet named "welcome" is a bet like any other.
        before = await balance(c, bob)
        status, state = await post(c, bob, tid, "bet", amount=10, request_id="welcome")
        assert status == 200 and "replayed" not in state and await balance(c, bob) == before - 10


async def test_a_step_cannot_take_the_id_of_the_rounds_return(tmp_path: Path) -> None:
    """A double named like the settlement's return entry would have made the settlement
    collide with it: no seat paid, the round stuck."""
    async with running(tmp_path) as c:
        alice = await c.register("alice")
        tokens = {await me(c, alice): alice}
        tid = (await table(c, alice, insurance=False))["id"]
        assert (await post(c, alice, tid, "sit"))[0] == 200
        paid = 0
        for _ in range(40):  # until a doubled hand gets chips back
            status, state = await post(c, alice, tid, "bet", amount=10, request_id=rid())
            assert status == 200, state
            if state["phase"] != "playing":
                await play_out(c, tid, tokens)
                continue
            trap = f"return:{state['round_id']}:0"
            status, state = await post(c, alice, tid, "act", action="double", request_id=trap)
            assert status == 200 and state["phase"] == "settled", state
            paid = sum(h["bet"] + h["net"] for h in state["seats"]["0"]["hands"])
            if paid:
                break
        assert paid
        _, ledger, _ = await c.call("GET", "/api/blackjack/wallet/ledger", alice)
        assert (ledger["entries"][0]["kind"], ledger["entries"][0]["amount"]) == ("return", paid)
        await balance(c, alice)


async def test_anyone_may_watch_without_signing_in(tmp_path: Path) -> None:
    """Tables, their state, settled rounds and shoes are public reads; wallets, ledgers,
    statistics and every step need a token; ``public_reads: false`` closes the reads."""
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        tokens = {await me(c, alice): alice, await me(c, bob): bob}
        t = await table(c, alice, insurance=False)
        tid = t["id"]
        for token in (alice, bob):
            assert (await post(c, token, tid, "sit"))[0] == 200
        await post(c, alice, tid, "bet", amount=10, request_id=rid())
        status, state = await post(c, bob, tid, "bet", amount=10, request_id=rid())
        assert status == 200, state
        status, listed, _ = await c.call("GET", "/api/blackjack/tables")
        assert status == 200 and [x["id"] for x in listed["tables"]] == [tid]
        status, seen, _ = await c.call("GET", f"/api/blackjack/tables/{tid}")
        assert status == 200 and seen["seats"] == state["seats"]
        if seen["phase"] == "playing":  # the hole card stays hidden from anyone
            assert seen["dealer"] == {"cards": [state["dealer"]["cards"][0], "??"], "total": None}
        assert "balance" not in str(seen)
        await play_out(c, tid, tokens)
        status, rounds, _ = await c.call("GET", f"/api/blackjack/rounds?table_id={tid}")
        assert status == 200 and len(rounds["rounds"]) == 1
        status, shoe, _ = await c.call("GET", f"/api/blackjack/shoes/{t['shoe']['id']}")
        assert status == 200 and "seed" not in shoe  # not before the shoe is retired
        private = ("/wallet", "/wallet/ledger", "/stats", "/users/alice/stats")
        for path in private:
            status, problem, _ = await c.call("GET", f"/api/blackjack{path}")
            assert status == 401 and problem["code"] == "unauthorized", path
        status, problem = await post(c, "", tid, "sit")
        assert status == 401
    async with running(tmp_path, **{"plugins.blackjack.public_reads": False}) as c:
        for path in ("/tables", f"/tables/{tid}", "/rounds", f"/shoes/{t['shoe']['id']}"):
            status, problem, _ = await c.call("GET", f"/api/blackjack{path}")
            assert status == 401 and problem["code"] == "unauthorized", path
        status, listed, _ = await c.call("GET", "/api/blackjack/tables", await c.login("bob"))
        assert status == 200 and [x["id"] for x in listed["tables"]] == [tid]


def tokens_key(tokens: dict[str, str], token: str) -> str:
    return next(user_id for user_id, t in tokens.items() if t == token)


async def test_timers_deal_and_stand_for_absent_players(tmp_path: Path) -> None:
    async with running(tmp_path, **FAST) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        tid = (await table(c, alice, insurance=False))["id"]
        for token in (alice, bob):
            assert (await post(c, token, tid, "sit"))[0] == 200
        status, state = await post(c, alice, tid, "bet", amount=20, request_id=rid())
        assert status == 200 and state["phase"] == "betting"  # bob has not bet: the window runs

        async def settled() -> dict[str, Any] | None:
            _, state, _ = await c.call("GET", f"/api/blackjack/tables/{tid}", bob)
            return dict(state) if state["phase"] == "settled" else None

        state = await until(settled)  # the window closed, the hand stood: all by the timers
        assert state["seats"]["1"]["hands"] == []  # bob sat the round out

        async def stored() -> list[dict[str, Any]] | None:  # the settlement's commit follows
            _, history, _ = await c.call("GET", f"/api/blackjack/rounds?table_id={tid}", bob)
            return list(history["rounds"]) or None

        actions = (await until(stored))[0]["actions"]
        hands = state["seats"]["0"]["hands"]
        blackjacks = [state["dealer"], *hands]
        if not any(h["total"] == 21 and len(h["cards"]) == 2 for h in blackjacks):
            assert {"seat": 0, "hand": 0, "action": "stand", "timeout": True} in actions


async def test_a_restart_mid_round_refunds_each_stake_once(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        tid = (await table(c, alice))["id"]
        for token in (alice, bob):
            assert (await post(c, token, tid, "sit"))[0] == 200
        assert (await post(c, alice, tid, "bet", amount=200, request_id=rid()))[0] == 200
        assert await balance(c, alice) == 800
    for _ in range(2):  # restarted twice: refunded once
        async with running(tmp_path) as c:
            alice = await c.login("alice")
            assert await balance(c, alice) == 1000
            _, ledger, _ = await c.call("GET", "/api/blackjack/wallet/ledger", alice)
            assert [e["kind"] for e in ledger["entries"]] == ["refund", "bet", "grant"]
            _, t, _ = await c.call("GET", f"/api/blackjack/tables/{tid}", alice)
            assert t["phase"] == "idle" and t["seats"] == {}  # the table reopened empty


async def test_the_shoe_is_provably_fair(tmp_path: Path) -> None:
    async with running(tmp_path) as c:  # (one player: each bet deals at once)
        alice = await c.register("alice")
        tokens = {await me(c, alice): alice}
        t = await table(c, alice, decks=1, penetration=0.25, insurance=False)
        tid, shoe_id, commitment = t["id"], t["shoe"]["id"], t["shoe"]["commitment"]
        status, shoe, _ = await c.call("GET", f"/api/blackjack/shoes/{shoe_id}", alice)
        assert status == 200 and "seed" not in shoe and shoe["commitment"] == commitment
        watcher = await c.ws(alice)
        await watcher.request("subscribe", f"blackjack:{tid}")
        assert (await post(c, alice, tid, "sit"))[0] == 200
        dealt: list[str] = []
        retired: dict[str, Any] | None = None
        for _ in range(20):
            status, state = await post(c, alice, tid, "bet", amount=10, request_id=rid())
            assert status == 200, state
            final = await play_out(c, tid, tokens)
            hands = final["seats"]["0"]["hands"]
            if not dealt:  # deal order: player, dealer, player, dealer (hole), then draws
                dealt = [hands[0]["cards"][0], final["dealer"]["cards"][0],
                         hands[0]["cards"][1], final["dealer"]["cards"][1]]  # fmt: skip
            if final["shoe"]["id"] != shoe_id:
                break
        status, shoe, _ = await c.call("GET", f"/api/blackjack/shoes/{shoe_id}", alice)
        assert shoe["retired_at"] and len(shoe["seed"]) == 64
        assert shoe["order"][:4] == dealt
        status, check, _ = await c.call(
            "POST", "/api/blackjack/verify",
            json={"seed": shoe["seed"], "commitment": commitment, "decks": 1},
        )  # fmt: skip
        assert status == 200 and check["order"] == shoe["order"]
        status, problem, _ = await c.call(
            "POST", "/api/blackjack/verify",
            json={"seed": "0" * 64, "commitment": commitment, "decks": 1},
        )  # fmt: skip
        assert status == 422 and problem["code"] == "seed_mismatch"
        while retired is None:  # the table announced the seed when it retired the shoe
            (event,) = await watcher.events(1, timeout=30)
            if event["data"]["type"] == "shoe_retired":
                retired = event["data"]
        assert retired["seed"] == shoe["seed"] and retired["shoe_id"] == shoe_id
        await watcher.ws.close()


async def test_daily_topup_once_a_day(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = await c.register("alice")
        status, body, _ = await c.call("POST", "/api/blackjack/wallet/topup", alice)
        assert status == 200 and body == {"credited": 1000, "balance": 2000}
        status, problem, _ = await c.call("POST", "/api/blackjack/wallet/topup", alice)
        assert status == 409 and problem["code"] == "already_topped_up"
        assert problem["next_topup"].endswith("T00:00:00+00:00")
        assert await balance(c, alice) == 2000


async def test_a_seat_outlives_a_disconnection_for_the_grace_period(tmp_path: Path) -> None:
    grace = 0.8
    async with running(tmp_path, **{"plugins.blackjack.seat_grace_seconds": grace}) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        tid = (await table(c, alice))["id"]
        sock = await c.ws(alice)
        await sock.request("subscribe", f"blackjack:{tid}")
        assert (await post(c, alice, tid, "sit"))[0] == 200
        bob_sat = time.monotonic()  # his last sign of life comes after this
        assert (await post(c, bob, tid, "sit"))[0] == 200

        def seated_when(names: list[str]) -> Callable[[], Awaitable[float | None]]:
            async def probe() -> float | None:
                _, t, _ = await c.call("GET", f"/api/blackjack/tables/{tid}", alice)
                now = time.monotonic()  # seen after the seats changed, whenever that was
                return now if [s["username"] for s in t["seats"].values()] == names else None

            return probe

        # Bob (not watching) loses his seat, never before the grace ran out; alice, who
        # watches, keeps hers.
        assert await until(seated_when(["alice"])) - bob_sat >= grace
        await sock.ws.close()
        gone = time.monotonic()
        # Her presence was last seen at most a patrol (a quarter of the grace) before.
        assert await until(seated_when([])) - gone >= grace * 0.75


async def test_big_wins_reach_the_bus_for_the_dashboard(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.blackjack.big_win": 1}) as c:
        assert c.server is not None and c.server.core is not None
        wins: list[dict[str, Any]] = []
        c.server.core.bus.listen("blackjack.big_win", lambda event: wins.append(event.data))
        alice = await c.register("alice")
        tokens = {await me(c, alice): alice}
        tid = (await table(c, alice))["id"]
        assert (await post(c, alice, tid, "sit"))[0] == 200
        won = 0
        for _ in range(40):
            assert (await post(c, alice, tid, "bet", amount=10, request_id=rid()))[0] == 200
            final = await play_out(c, tid, tokens)
            net = sum(h["net"] for h in final["seats"]["0"]["hands"])
            won += net > 0
            if won >= 2:
                break

        async def all_fired() -> bool | None:
            return True if len(wins) >= won else None

        await until(all_fired)
        assert len(wins) == won >= 1
        assert {w["username"] for w in wins} == {"alice"} and all(w["net"] >= 1 for w in wins)


async def test_doubling_or_splitting_without_the_chips_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        bob = await c.register("bob")
        tokens = {await me(c, bob): bob}
        tid = (await table(c, bob, min_bet=1, max_bet=10**6, insurance=False))["id"]
        assert (await post(c, bob, tid, "sit"))[0] == 200
        for _ in range(10):  # until a deal leaves the hand to play (no blackjack either side)
            before = await balance(c, bob)
            status, state = await post(
                c, bob, tid, "bet", amount=before * 7 // 10, request_id=rid()
            )
            assert status == 200, state
            if state["phase"] == "playing":
                break
            await play_out(c, tid, tokens)
        assert state["phase"] == "playing"
        left = await balance(c, bob)
        hand = state["seats"]["0"]["hands"][0]
        for action, codes in (("double", {"insufficient_funds"}),
                              ("split", {"insufficient_funds", "cannot_split"})):  # fmt: skip
            status, problem = await post(c, bob, tid, "act", action=action, request_id=rid())
            assert status == 409 and problem["code"] in codes, problem
            if action == "split" and hand["cards"][0][0] != hand["cards"][1][0]:
                assert problem["code"] in ("cannot_split", "insufficient_funds")
        _, now, _ = await c.call("GET", f"/api/blackjack/tables/{tid}", bob)
        assert now["seats"]["0"]["hands"] == [hand] and await balance(c, bob) == left
        await play_out(c, tid, tokens)
