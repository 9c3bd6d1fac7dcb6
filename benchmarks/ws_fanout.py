"""WebSocket fan-out: N clients on one topic, M events/s published; SyncStream vs Socket.IO.

Both servers are driven by the same Node load client (peers/socketio/load.js), and each rate
runs on freshly started servers, SyncStream then the peer, so the two see the same machine
state. Per rate: delivered msgs/s, losses, p50/p99/max latency (send -> receive), the
server's and the load client's CPU seconds, and SyncStream's worst event-loop lag (scraped
from /metrics). Then the headline: the max sustainable deliveries/s, the best rate with
delivered/expected >= 0.99 and p99 <= 1 s (also shown for p99 <= 100 ms), and ours / peer.

    python -m benchmarks.ws_fanout                       # sweep 100,150,200,250,300 events/s
    python -m benchmarks.ws_fanout --rate 150 --seconds 10
    python -m benchmarks.ws_fanout --nodes 2             # two nodes sharing PostgreSQL + Redis
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from statistics import median
from typing import Any

import asyncpg
import redis.asyncio as redis

from .harness import (
    PEERS,
    PG_URL,
    REDIS_URL,
    CpuWindow,
    LagSampler,
    add_common_args,
    check_idle,
    cluster_config,
    cpus,
    create_admin,
    ensure_node_modules,
    free_port,
    login,
    pin_to,
    quiet_run,
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
MIN_DELIVERED = 0.99
MAX_P99_MS = 1000.0


@dataclass
class Servers:
    """Running server processes as the load client sees them."""

    urls: list[str]  # subscribers are spread over these; the publisher uses urls[0]
    token: str
    pids: list[int]
    metrics: list[str]  # base URLs whose /metrics carry the loop-lag gauges


Starter = Callable[[int, set[int] | None], AbstractAsyncContextManager[Servers]]


async def drop_cluster_state(schema: str, prefix: str) -> None:
    """Drop the run's PostgreSQL schema and its Redis keys."""
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()
    client = redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def syncstream_servers(nodes: int, on_cpus: set[int] | None) -> AsyncIterator[Servers]:
    """SyncStream node(s); two nodes share PostgreSQL (a fresh schema) and Redis."""
    schema, prefix = random_name("bench_"), random_name("bench")
    with temp_dir() as tmp:
        extra = cluster_config(schema, prefix) if nodes > 1 else ""
        config = write_config(tmp, extra)
        started = []
        try:
            create_admin(config)
            for i in range(nodes):
                started.append(start_node(config, f"bench-{i}", cpus=on_cpus))
            token = await login(started[0].url)
            urls = [n.url for n in started]
            yield Servers(urls, token, [n.proc.pid for n in started], urls)
        finally:
            for node in started:
                stop(node.proc)
            if nodes > 1:
                await drop_cluster_state(schema, prefix)


@asynccontextmanager
async def socketio_server(nodes: int, on_cpus: set[int] | None) -> AsyncIterator[Servers]:
    """The Socket.IO peer: one Node process (``nodes`` is ignored)."""
    port = free_port()
    proc = subprocess.Popen(
        ["node", "server.js", str(port)],
        cwd=PEERS,
        stdout=subprocess.DEVNULL,
        preexec_fn=pin_to(on_cpus),
    )
    try:
        wait_port(port, proc)
        yield Servers([f"http://127.0.0.1:{port}"], "", [proc.pid], [])
    finally:
        stop(proc)


async def run_load(
    kind: str, servers: Servers, args: argparse.Namespace, rate: int
) -> dict[str, Any]:
    """One run of the Node load client; returns its JSON result."""
    options = {
        "kind": kind,
        "urls": servers.urls,
        "token": servers.token,
        "clients": args.clients,
        "rate": rate,
        "seconds": args.seconds,
        "topic": TOPIC,
        "workers": args.workers,
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        "load.js",
        json.dumps(options),
        cwd=PEERS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=pin_to(cpus(args, "client")),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=args.seconds + 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("the load client did not finish in time") from None
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed: {err.decode()[-2000:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def measure(
    kind: str, start: Starter, nodes: int, args: argparse.Namespace, rate: int
) -> dict[str, Any]:
    """Start the server(s), run the load once, add server CPU and loop lag."""
    busy = await asyncio.to_thread(check_idle, args.wait_idle)
    async with start(nodes, cpus(args, "server")) as servers:
        with CpuWindow(servers.pids) as cpu, LagSampler(servers.metrics) as lag:
            result = await run_load(kind, servers, args, rate)
        result.update(
            lag.summary_ms(),
            server_cpu_s=cpu.server_cpu_s,
            client_process_cpu_s=cpu.client_cpu_s,
            others_cpu_s=cpu.others_cpu_s,
            busy_cores_before=busy,
        )
    delivered = max(1, result["delivered"])
    result["server_us_per_msg"] = result["server_cpu_s"] / delivered * 1e6
    result["client_us_per_msg"] = result["client_cpu_s"] / delivered * 1e6
    result["sustainable"] = sustainable(result, MAX_P99_MS)
    print(
        f"  {kind:10} {rate:>5} events/s: {result['delivered_per_s']:>9,.0f} msgs/s, "
        f"p99 {result['p99_ms'] or 0:>7.1f} ms, lost {result['lost']}, "
        f"cpu server {result['server_cpu_s']:.1f} s / client {result['client_cpu_s']:.1f} s",
        flush=True,
    )
    return result


def sustainable(result: dict[str, Any], p99_limit_ms: float) -> bool:
    """Delivered at least 99 % of what was expected, with p99 latency within the limit."""
    expected = result["expected"]
    return bool(
        expected
        and result["delivered"] / expected >= MIN_DELIVERED
        and result["p99_ms"] is not None
        and result["p99_ms"] <= p99_limit_ms
        and not result.get("publish_errors")
    )


def best(results: list[dict[str, Any]], p99_limit_ms: float) -> dict[str, Any] | None:
    """The run just below the saturation point: the highest rate before the first rate (in
    ascending order) that is not sustainable."""
    found = None
    for result in sorted(results, key=lambda r: r["rate"]):
        if not sustainable(result, p99_limit_ms):
            break
        found = result
    return found


def report(ours: list[dict[str, Any]], peer: list[dict[str, Any]]) -> list[str]:
    """The per-run table, per-rate ratios and the headline lines."""
    rows: list[list[Any]] = [
        [
            "server",
            "events/s",
            "delivered/s",
            "lost",
            "p50 ms",
            "p99 ms",
            "max ms",
            "server cpu s",
            "server µs/msg",
            "client cpu s",
            "others cpu s",
            "max loop lag ms",
        ]
    ]
    for r in ours + peer:
        rows.append(
            [
                r["kind"] + ("*" if r.get("noisy") else ""),
                r["rate"],
                f"{r['delivered_per_s']:,.0f}",
                r["lost"],
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["server_cpu_s"],
                r["server_us_per_msg"],
                r["client_cpu_s"],
                r["others_cpu_s"],
                r["max_loop_lag_ms"] if r["max_loop_lag_ms"] is not None else "-",
            ]
        )
    lines = [table(rows), ""]
    if any(r.get("noisy") for r in ours + peer):
        lines[-1:] = ["* other processes took CPU during this run, even after retries", ""]
    by_rate = {r["rate"]: r for r in peer}
    ratio_rows: list[list[Any]] = [
        ["events/s", "delivered/s ours/peer", "p99 ours/peer", "server cpu/msg ours/peer"]
    ]
    for r in ours:
        p = by_rate.get(r["rate"])
        if p and p["delivered_per_s"] and p["p99_ms"]:
            ratio_rows.append(
                [
                    r["rate"],
                    f"{r['delivered_per_s'] / p['delivered_per_s']:.2f}",
                    f"{(r['p99_ms'] or 0) / p['p99_ms']:.2f}",
                    f"{r['server_us_per_msg'] / p['server_us_per_msg']:.2f}",
                ]
            )
    if len(ratio_rows) > 1:
        lines += [table(ratio_rows), ""]
    for limit in (MAX_P99_MS, 100.0):
        found = {"syncstream": best(ours, limit), "socketio": best(peer, limit) if peer else None}
        for label, run in found.items():
            if run:
                lines.append(
                    f"max sustainable (>= 99 % delivered, p99 <= {limit:g} ms at it and every "
                    f"lower rate), {label}: "
                    f"{run['delivered_per_s']:,.0f} msgs/s at {run['rate']} events/s "
                    f"(p99 {run['p99_ms']:.1f} ms)"
                )
            elif label == "syncstream" or peer:
                lines.append(f"max sustainable (p99 <= {limit:g} ms), {label}: none of the rates")
        if found["syncstream"] and found["socketio"]:
            ratio = found["syncstream"]["delivered_per_s"] / found["socketio"]["delivered_per_s"]
            lines.append(f"  ratio syncstream / socketio: {ratio:.2f}")
    costs = {
        label: median(r["server_us_per_msg"] for r in runs)
        for label, runs in (("syncstream", ours), ("socketio", peer))
        if runs
    }
    lines.append(
        "server CPU per delivered message, median over the rates: "
        + ", ".join(f"{label} {cost:.2f} µs" for label, cost in costs.items())
        + (
            f" (ratio syncstream / socketio: {costs['syncstream'] / costs['socketio']:.2f})"
            if len(costs) == 2
            else ""
        )
    )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000, help="subscribed sockets")
    rates = parser.add_mutually_exclusive_group()
    rates.add_argument(
        "--rate", type=int, help="one rate, events/s (deliveries/s = rate x clients)"
    )
    rates.add_argument(
        "--rates",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 150, 200, 250, 300],
        help="comma-separated rates to sweep, events/s",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="publishing time per rate")
    parser.add_argument("--nodes", type=int, default=1, choices=[1, 2], help="SyncStream nodes")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        choices=[1, 2],
        help="load-client processes holding the subscribers (2: plus a publishing process)",
    )
    add_common_args(parser)
    parser.add_argument("--no-peer", action="store_true", help="skip the Socket.IO peer")
    args = parser.parse_args()
    if args.pin and args.nodes > 1:
        parser.error("--pin gives the server one core: use it with one node")
    if args.rate is not None:
        args.rates = [args.rate]
    if not 1 <= args.clients <= 20_000 or args.seconds > 120 or max(args.rates) > 10_000:
        parser.error("keep runs bounded: clients <= 20000, seconds <= 120, rates <= 10000")
    return args


async def main() -> None:
    args = parse_args()
    ensure_node_modules()
    print(
        f"WebSocket fan-out: {args.clients} clients, {args.rates} events/s, {args.seconds:g} s "
        f"each, {args.nodes} SyncStream node(s), {args.workers} load-client process(es)"
        + (", server(s) on CPU 0 and load client on CPU 1" if args.pin else "")
    )
    ours: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    for rate in args.rates:
        run = partial(measure, "syncstream", syncstream_servers, args.nodes, args, rate)
        ours.append(await quiet_run(run, args))
        if not args.no_peer:
            run = partial(measure, "socketio", socketio_server, 1, args, rate)
            peer.append(await quiet_run(run, args))
    print()
    print("\n".join(report(ours, peer)))
    path = save(
        f"ws_fanout-{args.nodes}node", {"args": vars(args), "syncstream": ours, "socketio": peer}
    )
    print(f"results: {path}")


if __name__ == "__main__":
    asyncio.run(main())
