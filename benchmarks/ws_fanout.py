"""WebSocket fan-out: N clients on one topic, M events/s published; SyncStream vs Socket.IO.

Both servers are driven by the same Node load client (peers/socketio/load.js). For each rate
it reports delivered msgs/s, losses, p50/p99/max latency, the server's CPU seconds and (for
SyncStream) the worst event-loop lag, then the sustainable maximum: the highest rate with
< 1 % loss and p99 under 1 s (and under 100 ms).

    python -m benchmarks.ws_fanout --clients 1000 --rates 50,100,150,200 --seconds 8
    python -m benchmarks.ws_fanout --nodes 2          # two nodes sharing PostgreSQL + Redis
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from .harness import (
    PEERS,
    PG_URL,
    LagSampler,
    cluster_config,
    cpu_seconds,
    create_admin,
    ensure_node_modules,
    free_port,
    login,
    random_name,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    wait_port,
    write_config,
)

TOPIC = "broadcast:bench"


@asynccontextmanager
async def syncstream_servers(
    nodes: int,
) -> AsyncIterator[tuple[list[str], str, list[int], list[str]]]:
    """Start SyncStream node(s); yields (urls, admin token, pids, urls to scrape)."""
    schema = random_name("bench_")
    with temp_dir() as tmp:
        extra = cluster_config(schema, random_name("bench")) if nodes > 1 else ""
        config = write_config(tmp, extra)
        create_admin(config)
        started = [start_node(config, f"bench-{i}") for i in range(nodes)]
        try:
            token = await login(started[0].url)
            urls = [n.url for n in started]
            yield urls, token, [n.proc.pid for n in started], urls
        finally:
            for node in started:
                stop(node.proc)
            if nodes > 1:
                conn = await asyncpg.connect(PG_URL)
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                await conn.close()


@asynccontextmanager
async def socketio_server(nodes: int) -> AsyncIterator[tuple[list[str], str, list[int], list[str]]]:
    port = free_port()
    proc = subprocess.Popen(["node", "server.js", str(port)], cwd=PEERS, stdout=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield [f"http://127.0.0.1:{port}"], "", [proc.pid], []
    finally:
        stop(proc)


Servers = Callable[[int], AbstractAsyncContextManager[tuple[list[str], str, list[int], list[str]]]]


async def run_load(
    kind: str, urls: list[str], token: str, clients: int, rate: int, seconds: float
) -> dict[str, Any]:
    options = {
        "kind": kind,
        "urls": urls,
        "token": token,
        "clients": clients,
        "rate": rate,
        "seconds": seconds,
        "topic": TOPIC,
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        "load.js",
        json.dumps(options),
        cwd=PEERS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed: {err.decode()[-2000:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def sweep(
    name: str, servers: Servers, nodes: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    results = []
    for rate in args.rates:
        async with servers(nodes) as (urls, token, pids, scrape):
            before = sum(cpu_seconds(pid) for pid in pids)
            with LagSampler(scrape) as lag:
                result = await run_load(name, urls, token, args.clients, rate, args.seconds)
            result["server_cpu_s"] = sum(cpu_seconds(pid) for pid in pids) - before
            result["max_loop_lag_ms"] = lag.max_lag * 1000 if scrape else None
            results.append(result)
            print(
                f"  {name:10} rate {rate:>5}/s: {result['delivered_per_s']:>9.0f} msgs/s "
                f"p99 {result['p99_ms'] or 0:>7.1f} ms lost {result['lost']}",
                flush=True,
            )
    return results


def sustainable(results: list[dict[str, Any]], p99_limit_ms: float) -> dict[str, Any] | None:
    """The best run with < 1 % loss and p99 latency under the limit."""
    good = [
        r
        for r in results
        if r["expected"]
        and r["lost"] / r["expected"] < 0.01
        and (r["p99_ms"] or 1e9) < p99_limit_ms
    ]
    return max(good, key=lambda r: r["delivered_per_s"]) if good else None


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument(
        "--rates", type=lambda s: [int(x) for x in s.split(",")], default=[50, 100, 150, 200]
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--nodes", type=int, default=1, choices=[1, 2])
    parser.add_argument("--no-peer", action="store_true", help="skip the Socket.IO peer")
    args = parser.parse_args()
    ensure_node_modules()
    print(
        f"WebSocket fan-out: {args.clients} clients, rates {args.rates} events/s, "
        f"{args.seconds:g} s each, {args.nodes} SyncStream node(s)"
    )
    ours = await sweep("syncstream", syncstream_servers, args.nodes, args)
    peer = [] if args.no_peer else await sweep("socketio", socketio_server, 1, args)
    rows: list[list[Any]] = [
        [
            "server",
            "rate/s",
            "delivered/s",
            "lost",
            "p50 ms",
            "p99 ms",
            "max ms",
            "cpu s",
            "loop lag ms",
        ]
    ]
    for r in ours + peer:
        rows.append(
            [
                r["kind"],
                r["rate"],
                round(r["delivered_per_s"]),
                r["lost"],
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["server_cpu_s"],
                r["max_loop_lag_ms"] or "-",
            ]
        )
    print()
    print(table(rows))
    print()
    for limit in (1000.0, 100.0):
        best = {"syncstream": sustainable(ours, limit), "socketio": sustainable(peer, limit)}
        for label, found in best.items():
            if found:
                rate, p99 = found["rate"], found["p99_ms"]
                print(
                    f"max with p99 < {limit:g} ms, {label}: {found['delivered_per_s']:.0f} msgs/s"
                    f" ({rate} events/s, p99 {p99:.1f} ms)"
                )
        if best["syncstream"] and best["socketio"]:
            ratio = best["syncstream"]["delivered_per_s"] / best["socketio"]["delivered_per_s"]
            print(f"  ratio syncstream/socketio: {ratio:.2f}")
    path = save(
        f"ws_fanout-{args.nodes}node", {"args": vars(args), "syncstream": ours, "socketio": peer}
    )
    print(f"results: {Path(path).relative_to(Path.cwd()) if Path.cwd() in path.parents else path}")


if __name__ == "__main__":
    asyncio.run(main())
