"""Chess: move round trips over the WebSocket with many concurrent games, and perft.

1. perft on the standard test positions (start, "Kiwipete", position 3) through python-chess,
   the rules layer the server uses; the counts must equal the published perft table.
2. N concurrent games between bots (``peers/chessbots/bots.js``: Node, a WebSocket per
   player, replaying random legal lines made here with python-chess): the side to
   move publishes its move on ``chess:<game>``; the round trip is publish -> reply (the
   move is validated, stored and broadcast before the reply). A game moves every
   ``--interval`` s from a random phase of its own (``--pace fixed``), or its bots wait
   ``--interval`` after each reply (``--pace after_reply``: closed loop, the games fall into
   step with each other over a run). ``--pin`` puts the server on CPU 0 and the bots on
   CPU 1. Prints p50/p99 round trip, moves/s, moves per server CPU second, RSS per game,
   GC pauses; the first ``--warmup`` seconds are played, not timed.
3. The same bots against ``peers/chessbots/floor.js`` (a Node relay of the same frames, no
   chess, no storage) on the same CPU: what the machine and the client cost by themselves
   (``--no-floor`` skips it).

    python -m benchmarks.chess --games 1000 --interval 1 --seconds 45 --warmup 15 --pin
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import chess

from .harness import (
    HERE,
    RESULTS,
    LagSampler,
    add_common_args,
    cpu_seconds,
    cpus,
    create_admin,
    free_port,
    gc_pauses,
    login,
    pin_to,
    register,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    write_config,
)

BOTS = HERE / "peers" / "chessbots"
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


async def make_games(url: str, count: int) -> tuple[list[str], dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        tokens = {
            "white": (await register(session, url, "botw"))[0],
            "black": (await register(session, url, "botb"))[0],
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


def random_line(plies: int) -> list[str]:
    """Random legal moves from the start until the game ends or ``plies`` are played."""
    board = chess.Board()
    line = []
    while len(line) < plies and not board.is_game_over(claim_draw=False):
        move = random.choice(list(board.legal_moves))
        board.push(move)
        line.append(move.uci())
    return line


async def play(
    url: str,
    server_pid: int,
    games: list[str],
    tokens: dict[str, str],
    args: argparse.Namespace,
    when_timed: Callable[[], Awaitable[Any]] | None = None,
) -> dict[str, Any]:
    """Run the Node bots (a socket per player); the server's CPU seconds are counted from
    when every socket is connected and subscribed (their line ``playing``) to the end, and
    ``when_timed`` is awaited when the warm-up is over (their line ``timed``); what it
    returns is the result's ``at_timed``."""
    if not (BOTS / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BOTS, check=True)
    lines = {game: random_line(400) for game in games}
    options = {"url": url, "tokens": tokens, "lines": lines, "seconds": args.seconds,
               "interval": args.interval, "warmup": args.warmup, "pace": args.pace}  # fmt: skip
    options_file = RESULTS / "chessbots-options.json"
    RESULTS.mkdir(exist_ok=True)
    options_file.write_text(json.dumps(options))
    proc = await asyncio.create_subprocess_exec(
        "node", "bots.js", str(options_file), cwd=BOTS, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, preexec_fn=pin_to(cpus(args, "client")),
    )  # fmt: skip
    assert proc.stdout is not None
    cpu_at_start, last, at_timed = 0.0, b"{}", None
    async with asyncio.timeout(args.seconds + 120):
        while line := await proc.stdout.readline():
            if line.strip() == b"playing":
                cpu_at_start = cpu_seconds(server_pid)
            elif line.strip() == b"timed":
                at_timed = await when_timed() if when_timed else None
            else:
                last = line
        server_cpu_s = cpu_seconds(server_pid) - cpu_at_start
        _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bots failed: {err.decode()[-2000:]}")
    return dict(json.loads(last), server_cpu_s=server_cpu_s, at_timed=at_timed)


async def scrape_gc(url: str) -> dict[str, dict[str, float]]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        return gc_pauses(await resp.text())


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


async def run_games(args: argparse.Namespace) -> dict[str, Any]:
    with temp_dir() as tmp:
        config = write_config(tmp)
        create_admin(config)
        node = start_node(config, cpus=cpus(args, "server"))
        try:
            await login(node.url)
            before = rss_mb(node.proc.pid)
            games, tokens = await make_games(node.url, args.games)
            # Lag is read from the max-since-last-scrape gauge, so a scrape every 5 s misses
            # nothing; every 0.5 s, rendering /metrics (1-1.6 ms) would itself sit in the tail.
            # GC pauses and lag count from the end of the warm-up (the scrape there also
            # restarts the lag gauge): connecting 2 x games sockets is not the steady state.
            with LagSampler([node.url], interval=5) as lag:

                async def timed() -> dict[str, dict[str, float]]:
                    pauses = await scrape_gc(node.url)
                    lag.samples.clear()
                    return pauses

                result = await play(node.url, node.proc.pid, games, tokens, args, timed)
            gc_after = await scrape_gc(node.url)
            gc_before = result.pop("at_timed") or {}
            result.update(
                lag.summary_ms(),
                games=len(games),
                rss_per_game_kb=(rss_mb(node.proc.pid) - before) * 1024 / max(1, len(games)),
                gc={gen: {k: v - gc_before.get(gen, {}).get(k, 0.0) for k, v in row.items()}
                    for gen, row in gc_after.items()},  # timed part of the run
            )  # fmt: skip
        finally:
            stop(node.proc)
    return result


async def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The same bots against ``floor.js`` (the protocol's frames and nothing else)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "node", "floor.js", str(port), cwd=BOTS, stdout=asyncio.subprocess.PIPE,
        preexec_fn=pin_to(cpus(args, "server")),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 10)  # "listening"
        games = [f"floor{n}" for n in range(args.games)]
        tokens = {"white": "w", "black": "b"}
        return await play(f"http://127.0.0.1:{port}", proc.pid, games, tokens, args)
    finally:
        proc.terminate()
        await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between moves")
    parser.add_argument(
        "--pace", choices=("fixed", "after_reply"), default="fixed",
        help="moves due every interval (open loop), or an interval after each reply",
    )  # fmt: skip
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds played, not timed")
    parser.add_argument("--no-perft", action="store_true")
    parser.add_argument(
        "--no-floor", action="store_true",
        help="skip the run against floor.js (a Node relay of the same frames, no chess)",
    )  # fmt: skip
    add_common_args(parser)
    args = parser.parse_args()
    perft_rows = [] if args.no_perft else run_perft()
    if perft_rows:
        print(table([["position", "depth", "nodes", "published", "", "s"], *perft_rows]))
    result = asyncio.run(run_games(args))
    floor = None if args.no_floor else asyncio.run(run_floor(args))
    runs = [result] if floor is None else [result, floor]

    def ms(key: str) -> list[str]:
        return ["-" if run[key] is None else f"{run[key]:.1f}" for run in runs]

    rows: list[list[Any]] = [
        ["measure", "SyncStream", *(["floor (Node relay, no chess)"] if floor else [])],
        ["games at once", *(result["games"] for _ in runs)],
        ["moves (errors)", *(f"{run['moves']} ({run['errors']})" for run in runs)],
        ["moves/s", *(round(run["moves_per_s"]) for run in runs)],
        ["round trip p50 (ms)", *ms("rtt_p50_ms")],
        ["round trip p99 (ms)", *ms("rtt_p99_ms")],
        ["round trip max (ms)", *ms("rtt_max_ms")],
        ["opponent has the move p50 (ms)", *ms("seen_p50_ms")],
        ["opponent has the move p99 (ms)", *ms("seen_p99_ms")],
        ["moves sent late, p99 (ms, fixed pace)", *ms("send_late_p99_ms")],
        ["moves per server CPU second", *(round(r["played"] / r["server_cpu_s"]) for r in runs)],
        ["server RSS per game (KB)", round(result["rss_per_game_kb"], 1)],
        ["event-loop lag max (ms)", round(result["max_loop_lag_ms"] or 0, 1)],
        *(
            [
                f"GC gen {gen}: pauses, ms in all, > 2 ms, > 5 ms",
                ", ".join(f"{g[k]:.0f}" for k in ("count", "ms", "over_2ms", "over_5ms")),
            ]
            for gen, g in sorted(result["gc"].items())
        ),
    ]
    save("chess", {"args": vars(args), "perft": perft_rows, **result, "floor": floor})
    print(table([row + ["-"] * (len(rows[0]) - len(row)) for row in rows]))


if __name__ == "__main__":
    main()
