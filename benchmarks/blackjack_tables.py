"""Blackjack tables under load: many tables of bot players over the WebSocket.

Every bot has a socket of its own, subscribes to its table's topic and, whenever a state
event says it may, publishes its next step right away: a bet, "no insurance", or the basic
strategy's action (double and split when the table allows them), after ``--think`` seconds
(0: as fast as the server answers, which measures its capacity). The round trip is publish
-> reply (the step was checked, paid through the wallet's ledger, applied and broadcast).
Prints p50/p99/max round trip, steps/s, rounds/s, rounds per server CPU second.

    python -m benchmarks.blackjack_tables --tables 20 --players 3 --seconds 10 --pin
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp

from plugins.blackjack.rules import Rules
from plugins.blackjack.strategy import decide

from .harness import (
    CpuWindow,
    LagSampler,
    add_common_args,
    cpus,
    create_admin,
    login,
    percentile,
    pin_self,
    register,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    write_config,
)

RULES = Rules()  # the server's default rules: the bots' strategy assumes them
_request_ids = itertools.count()


class Bot:
    """One player: reacts to its table's state events with the step it owes."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, user_id: str, seated: dict[str, Any]
    ) -> None:
        self.ws, self.user_id, self.seated = ws, user_id, seated
        self.think = 0.0  # seconds a bot waits before each step
        self.topic = f"blackjack:{seated['id']}"
        self.rtts: list[float] = []
        self.errors = 0
        self.pending: dict[int, float] = {}  # request frame id -> sent at
        self.rounds: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def step_for(self, state: dict[str, Any]) -> dict[str, Any] | None:
        seat = next((s for s in state["seats"].values() if s["user_id"] == self.user_id), None)
        if seat is None:
            return None
        phase = state["phase"]
        if phase in ("idle", "settled") or (phase == "betting" and not seat["bet"]):
            if phase == "settled":
                self.rounds.add(state["round_id"])
            return {"bet": RULES.min_bet}
        if phase == "insurance" and seat["hands"] and seat["insurance"] is None:
            return {"insurance": False}
        turn = state["turn"]
        if phase == "playing" and turn and state["seats"][str(turn["seat"])] is seat:
            hand = seat["hands"][turn["hand"]]
            can_split = len(seat["hands"]) < RULES.max_hands
            action = decide(hand["cards"], state["dealer"]["cards"][0], RULES, can_split,
                            hand["from_split"])  # fmt: skip
            if action == "split" and hand["from_split"] and hand["cards"][0][0] == "A":
                action = "stand"
            return {"action": action}
        return None

    async def react(self, state: dict[str, Any]) -> None:
        if self.pending:
            return  # one step in flight at a time
        step = self.step_for(state)
        if step is None:
            return
        frame_id = next(_request_ids)
        self.pending[frame_id] = time.perf_counter()
        if self.think:
            self.pending[frame_id] = float("inf")  # thinking: no other step meanwhile
            await asyncio.sleep(self.think)
            self.pending[frame_id] = time.perf_counter()
        await self.ws.send_str(json.dumps({
            "op": "publish", "id": frame_id, "topic": self.topic,
            "data": {**step, "request_id": f"r{frame_id}"},
        }))  # fmt: skip

    def spawn(self, step: Any) -> None:
        """React without holding up the socket's reader (a bot may be thinking)."""
        task = asyncio.get_running_loop().create_task(step)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, deadline: float, warmup_until: float) -> None:
        await self.ws.send_str(json.dumps({"op": "subscribe", "id": -1, "topic": self.topic}))
        async for msg in self.ws:
            frame = json.loads(msg.data)
            if frame.get("id") in self.pending:
                sent = self.pending.pop(frame["id"])
                if frame["op"] == "reply":
                    if sent >= warmup_until:
                        self.rtts.append((time.perf_counter() - sent) * 1000)
                    self.spawn(self.react(frame["data"]["state"]))
                else:
                    self.errors += frame.get("code") not in (
                        "betting_closed",
                        "already_bet",
                        "not_playing",
                        "not_your_turn",
                    )
            elif frame.get("op") == "event" and frame["data"].get("type") == "state":
                self.spawn(self.react(frame["data"]))
            elif frame.get("op") == "reply" and frame.get("id") == -1:  # subscribed
                self.spawn(self.react(self.seated))  # the table as the bot sat down
            if time.perf_counter() >= deadline:
                return


async def run_tables(args: argparse.Namespace) -> dict[str, Any]:
    with temp_dir() as tmp:
        config = write_config(
            tmp,
            # A bot that saw a round end late misses the next deal: a short window.
            "plugins: {blackjack: {starting_chips: 100000000, betting_seconds: 0.5}}\n",
        )
        create_admin(config)
        node = start_node(config, cpus=cpus(args, "server"))
        try:
            await login(node.url)
            # No pool limit: every bot's socket holds a connection for the whole run.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                bots = await seat_bots(session, node.url, args)
                start = time.perf_counter()
                deadline = start + args.warmup + args.seconds
                with CpuWindow([node.proc.pid]) as cpu, LagSampler([node.url]) as lag:
                    await asyncio.wait(
                        [asyncio.create_task(b.run(deadline, start + args.warmup)) for b in bots],
                        timeout=args.warmup + args.seconds + 1,  # a quiet table ends its bots
                    )
                for bot in bots:
                    await bot.ws.close()
            rtts = sorted(r for b in bots for r in b.rtts)
            rounds = len({r for b in bots for r in b.rounds})
            return {
                "tables": args.tables, "players": args.players, "steps": len(rtts),
                "errors": sum(b.errors for b in bots),
                "steps_per_s": len(rtts) / args.seconds, "rounds": rounds,
                "rtt_p50_ms": percentile(rtts, 50), "rtt_p99_ms": percentile(rtts, 99),
                "rtt_max_ms": rtts[-1] if rtts else None, "server_cpu_s": cpu.server_cpu_s,
                "rounds_per_cpu_s": rounds / max(cpu.server_cpu_s, 1e-9), **lag.summary_ms(),
            }  # fmt: skip
        finally:
            stop(node.proc)


async def seat_bots(
    session: aiohttp.ClientSession, url: str, args: argparse.Namespace
) -> list[Bot]:
    bots = []
    for t in range(args.tables):
        players = [await register(session, url, f"bot{t}x{p}") for p in range(args.players)]
        async with session.post(
            url + "/api/blackjack/tables",
            json={"name": f"table {t}"},
            headers={"Authorization": f"Bearer {players[0][0]}"},
        ) as resp:
            table_id = (await resp.json())["id"]
        for token, user_id in players:
            auth = {"Authorization": f"Bearer {token}"}
            async with session.post(
                url + f"/api/blackjack/tables/{table_id}/sit", json={}, headers=auth
            ) as resp:
                assert resp.status == 200, await resp.text()
                seated = await resp.json()
            ws = await session.ws_connect(f"{url.replace('http', 'ws')}/ws?token={token}")
            await ws.receive()  # hello
            bots.append(Bot(ws, user_id, seated))
            bots[-1].think = args.think
    return bots


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", type=int, default=20)
    parser.add_argument("--players", type=int, default=3, choices=range(1, 8))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds played, not timed")
    parser.add_argument("--think", type=float, default=0.0, help="a bot's pause before a step")
    add_common_args(parser)
    args = parser.parse_args()
    pin_self(args)
    r = asyncio.run(run_tables(args))
    if not r["steps"]:
        raise SystemExit("no step was timed: run longer (--seconds) or with more tables")
    rtt = f"{r['rtt_p50_ms']:.1f} / {r['rtt_p99_ms']:.1f} / {r['rtt_max_ms']:.1f}"
    print(table([
        ["measure", "value"],
        ["tables x players", f"{r['tables']} x {r['players']}"],
        ["steps (errors)", f"{r['steps']} ({r['errors']})"],
        ["steps/s", round(r["steps_per_s"])],
        ["step round trip p50 / p99 / max (ms)", rtt],
        ["rounds settled", r["rounds"]],
        ["rounds per server CPU second", round(r["rounds_per_cpu_s"])],
        ["event-loop lag max (ms)", round(r["max_loop_lag_ms"] or 0, 1)],
    ]))  # fmt: skip
    save("blackjack_tables", {"args": vars(args), **r})


if __name__ == "__main__":
    main()
