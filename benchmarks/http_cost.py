"""Instructions per HTTP request (valgrind's callgrind): SyncStream vs the bare aiohttp peer.

wrk's req/s on a shared machine moves with whatever else runs; the instructions a server
executes per request do not (within a few per cent: timers and background tasks add some).
Each server (the same ones as ``http_rps``: a node with default settings, and the aiohttp
"hello" app on uvloop) runs under callgrind with instrumentation off. Per endpoint, after
``--warmup`` requests, instrumentation goes on, ``--requests`` keep-alive GETs are sent over
``--connections`` connections by a small asyncio client, and the instructions counted are
divided by the requests. User space only: the kernel's share (the same socket calls for both
servers) is left out, so the ratio to the peer says what our code costs, not the req/s ratio
(nor does it see cache misses). Each of ``--runs`` rounds starts every server afresh; the
table gives the median (min-max). Needs valgrind (Debian: apt-get install valgrind).

    python -m benchmarks.http_cost --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from .harness import (
    PASSWORD,
    create_admin,
    free_port,
    require,
    save,
    stop,
    table,
    temp_dir,
    wait_healthy,
    write_config,
)
from .http_rps import PEER, PEER_APP

STARTUP_S = 300.0  # a node's start-up under valgrind (imports run ~50x slower)


def callgrind(out: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen[Any]:
    """``python args`` under callgrind, instrumentation off until switched on."""
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    return subprocess.Popen(
        [*command, sys.executable, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def control(pid: int, *options: str) -> None:
    subprocess.run(["callgrind_control", *options, str(pid)], capture_output=True, check=True)


async def get(port: int, path: str, count: int, headers: str) -> None:
    """``count`` GETs on one keep-alive connection, each answer read in full; 200s only."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()
    try:
        for _ in range(count):
            writer.write(request)
            status = await reader.readline()
            if b" 200 " not in status:
                raise RuntimeError(f"GET {path}: {status!r}")
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
    finally:
        writer.close()


async def load(port: int, path: str, requests: int, connections: int, headers: str) -> None:
    each = requests // connections
    await asyncio.gather(*(get(port, path, each, headers) for _ in range(connections)))


async def instructions(
    proc: subprocess.Popen[Any], out: Path, port: int, path: str, args: argparse.Namespace,
    headers: str = "",
) -> float:  # fmt: skip
    """Instructions per request of ``path``, counted after a warm-up."""
    await load(port, path, args.warmup, args.connections, headers)
    dumps = set(out.parent.glob(out.name + ".*"))
    control(proc.pid, "--instr=on")
    control(proc.pid, "--zero")
    requests = args.requests // args.connections * args.connections
    await load(port, path, requests, args.connections, headers)
    control(proc.pid, "--dump")
    control(proc.pid, "--instr=off")
    (dump,) = set(out.parent.glob(out.name + ".*")) - dumps
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1]) / requests
    raise RuntimeError(f"no totals in {dump}")


async def login(port: int) -> str:
    """The bench admin's token (as harness.login, with a patient timeout)."""
    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            f"http://127.0.0.1:{port}/api/auth/login",
            json={"username": "bench", "password": PASSWORD},
        ) as resp,
    ):
        return str((await resp.json())["token"])


async def one_round(tmp: Path, config: Path, round_: int, args: argparse.Namespace) -> list[Any]:
    results: list[dict[str, Any]] = []
    port = free_port()
    out = tmp / f"syncstream-{round_}.out"
    env = {**os.environ, "SYNCSTREAM_SERVER__PORT": str(port)}
    node = callgrind(out, ["-m", "syncstream", "serve", "--config", str(config)], env)
    try:
        await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}", node, STARTUP_S)
        token = await login(port)
        bearer = f"Authorization: Bearer {token}\r\n"
        for name, path, headers in (
            ("syncstream /healthz", "/healthz", ""),
            ("syncstream /api/auth/me (cached)", "/api/auth/me", bearer),
        ):
            per_request = await instructions(node, out, port, path, args, headers)
            results.append({"name": name, "instructions": per_request, "round": round_})
            print(f"  {name:34} {per_request:>10,.0f} instructions/request", flush=True)
    finally:
        stop(node)
    port = free_port()
    out = tmp / f"peer-{round_}.out"
    peer = callgrind(out, ["-c", PEER_APP, str(port)], dict(os.environ))
    try:
        await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}", peer, STARTUP_S)
        per_request = await instructions(peer, out, port, "/healthz", args)
        results.append({"name": PEER, "instructions": per_request, "round": round_})
        print(f"  {PEER:34} {per_request:>10,.0f} instructions/request", flush=True)
    finally:
        stop(peer)
    return results


def summary(results: list[dict[str, Any]]) -> str:
    by_name: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_name[r["name"]].append(r["instructions"])
    peer = statistics.median(by_name[PEER])
    rows: list[list[Any]] = [["endpoint", "instructions/request", "peer / this"]]
    for name, values in by_name.items():
        mid = statistics.median(values)
        rows.append(
            [
                name,
                f"{mid:,.0f} ({min(values):,.0f}-{max(values):,.0f})",
                f"{peer / mid:.2f}",
            ]
        )
    return table(rows)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds (<= 10)")
    parser.add_argument("--requests", type=int, default=4000, help="counted per endpoint")
    parser.add_argument("--warmup", type=int, default=800)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not 0 < args.runs <= 10 or not 0 < args.connections <= args.requests <= 100_000:
        parser.error("keep runs bounded: runs <= 10, connections <= requests <= 100000")
    require("valgrind", "apt-get install valgrind")
    print(f"instructions per request (callgrind): {args.requests} GETs, {args.runs} rounds")
    results: list[dict[str, Any]] = []
    with temp_dir() as tmp:
        config = write_config(tmp)
        create_admin(config)
        for round_ in range(1, args.runs + 1):
            print(f"round {round_}/{args.runs}", flush=True)
            results += await one_round(tmp, config, round_, args)
    print()
    print(summary(results))
    print(f"results: {save('http_cost', {'args': vars(args), 'results': results})}")


if __name__ == "__main__":
    asyncio.run(main())
