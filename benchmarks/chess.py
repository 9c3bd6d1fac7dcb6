"""Chess: move round trips over the WebSocket with many concurrent games, and perft.

1. perft on the standard test positions (start, "Kiwipete", position 3) through python-chess,
   the rules layer the server uses; the counts must equal the published perft table.
2. N concurrent games between bots: each side to move picks a random legal move and
   publishes it on ``chess:<game>``; the round trip is publish -> reply (the move is
   validated, stored and broadcast before the reply). A bot waits ``--interval`` between
   its moves. Prints p50/p99 round trip, moves/s, moves per server CPU second, RSS per game.

    python -m benchmarks.chess --games 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import chess

from .harness import (
    CpuWindow,
    LagSampler,
    create_admin,
    login,
    percentile,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    write_config,
)

PERFT = [  # (name, FEN, expected node counts by depth) from the Chess Programming Wiki
    ("start", chess.STARTING_FEN, [20, 400, 8902, 197281]),
    ("kiwipete", "r3k2r/p1ppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPPP/R3K2R w KQkq - 0 1",
     [48, 2039, 97862]),
    ("position 3", "8/2p5/3p4/KP5r/1R3p1k/8/4P1P1/8 w - - 0 1", [14, 191, 2812, 43238]),
]  # fmt: skip


def perft(board: chess.Board, depth: int) -> int:
    if depth == 1:
        return board.legal_moves.count()
    total = 0
    for move in board.legal_moves:
        board.push(move)
        total += perft(board, depth - 1)
        board.pop()
    return total


def run_perft() -> list[list[Any]]:
    rows = []
    for name, fen, expected in PERFT:
        for depth, want in enumerate(expected, start=1):
            start = time.perf_counter()
            got = perft(chess.Board(fen), depth)
            rows.append([name, depth, got, want, "ok" if got == want else "MISMATCH",
                         round(time.perf_counter() - start, 2)])  # fmt: skip
    return rows


async def register(session: aiohttp.ClientSession, url: str, name: str) -> str:
    async with session.post(
        url + "/api/auth/register", json={"username": name, "password": "benchmark-password"}
    ) as resp:
        return str((await resp.json())["token"])


async def make_games(url: str, count: int) -> tuple[list[str], dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        tokens = {
            "white": await register(session, url, "botw"),
            "black": await register(session, url, "botb"),
        }
        games = []
        for _ in range(count):
            async with session.post(
                url + "/api/chess/challenges",
                json={"username": "botb", "color": "white", "base_seconds": 3600},
                headers={"Authorization": f"Bearer {tokens['white']}"},
            ) as resp:
                challenge = await resp.json()
            async with session.post(
                url + f"/api/chess/challenges/{challenge['id']}/accept",
                headers={"Authorization": f"Bearer {tokens['black']}"},
            ) as resp:
                games.append((await resp.json())["id"])
        return games, tokens


class Bot:
    """One side's socket: publishes a move, waits for the reply with the same id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def read(self) -> None:
        async for msg in self.ws:
            frame = json.loads(msg.data)
            future = self.waiting.pop(frame.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(frame)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        await self.ws.send_str(json.dumps({**frame, "id": self.next_id}))
        return await asyncio.wait_for(future, 30)


async def play(url: str, games: list[str], tokens: dict[str, str], seconds: float,
               interval: float) -> dict[str, Any]:  # fmt: skip
    rtts: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        # Every player has a socket of their own, as real players do (a socket's frames are
        # handled in order, so bots sharing one would queue behind each other).
        players: dict[str, dict[str, Bot]] = {}
        for game_id in games:
            players[game_id] = {}
            for side, token in tokens.items():
                ws = await session.ws_connect(f"{url}/ws?token={token}")
                await ws.receive()  # hello
                players[game_id][side] = Bot(ws)
        everyone = [bot for pair in players.values() for bot in pair.values()]
        readers = [asyncio.create_task(bot.read()) for bot in everyone]
        deadline = time.monotonic() + seconds

        async def game(game_id: str) -> None:
            nonlocal errors
            bots = players[game_id]
            board = chess.Board()
            await asyncio.sleep(random.random() * interval)
            while time.monotonic() < deadline and not board.is_game_over():
                side = "white" if board.turn else "black"
                move = random.choice(list(board.legal_moves))
                start = time.perf_counter()
                reply = await bots[side].request(
                    {"op": "publish", "topic": f"chess:{game_id}",
                     "data": {"move": move.uci(), "ply": board.ply()}}
                )  # fmt: skip
                rtts.append((time.perf_counter() - start) * 1000)
                if reply.get("op") != "reply":
                    errors += 1
                    return
                board.push(move)
                await asyncio.sleep(interval)

        started = time.monotonic()
        await asyncio.gather(*(game(g) for g in games))
        wall = time.monotonic() - started
        for task in readers:
            task.cancel()
        for bot in everyone:
            await bot.ws.close()
    return {
        "moves": len(rtts),
        "errors": errors,
        "moves_per_s": len(rtts) / wall,
        "rtt_p50_ms": percentile(rtts, 50),
        "rtt_p99_ms": percentile(rtts, 99),
        "rtt_max_ms": max(rtts, default=0),
    }


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


async def run_games(args: argparse.Namespace) -> dict[str, Any]:
    with temp_dir() as tmp:
        config = write_config(tmp)
        create_admin(config)
        node = start_node(config)
        try:
            await login(node.url)
            before = rss_mb(node.proc.pid)
            games, tokens = await make_games(node.url, args.games)
            with CpuWindow([node.proc.pid]) as cpu, LagSampler([node.url]) as lag:
                result = await play(node.url, games, tokens, args.seconds, args.interval)
            result.update(
                lag.summary_ms(),
                games=len(games),
                server_cpu_s=cpu.server_cpu_s,
                moves_per_cpu_s=result["moves"] / max(cpu.server_cpu_s, 1e-9),
                rss_per_game_kb=(rss_mb(node.proc.pid) - before) * 1024 / max(1, len(games)),
            )
        finally:
            stop(node.proc)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.1, help="a bot's pause between moves")
    parser.add_argument("--no-perft", action="store_true")
    args = parser.parse_args()
    perft_rows = [] if args.no_perft else run_perft()
    if perft_rows:
        print(table([["position", "depth", "nodes", "published", "", "s"], *perft_rows]))
    result = asyncio.run(run_games(args))
    rtt = f"{result['rtt_p50_ms']:.1f} / {result['rtt_p99_ms']:.1f} / {result['rtt_max_ms']:.1f}"
    rows: list[list[Any]] = [
        ["measure", "value"],
        ["games at once", result["games"]],
        ["moves (errors)", f"{result['moves']} ({result['errors']})"],
        ["moves/s", round(result["moves_per_s"])],
        ["round trip p50 / p99 / max (ms)", rtt],
        ["moves per server CPU second", round(result["moves_per_cpu_s"])],
        ["server RSS per game (KB)", round(result["rss_per_game_kb"], 1)],
        ["event-loop lag max (ms)", round(result["max_loop_lag_ms"] or 0, 1)],
    ]
    print(table(rows))
    save("chess", {"args": vars(args), "perft": perft_rows, **result})


if __name__ == "__main__":
    main()
