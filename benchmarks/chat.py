"""Chat: N clients in rooms of several sizes; messages sent over the WebSocket are stored
(one transaction each, with the room's sequence number) and delivered to every member.

Per run: deliveries/s, p50/p99/max latency (send -> receive, one clock), lost deliveries,
server CPU and RSS, worst event-loop lag. The load client is the Node one shared with
``ws_fanout`` (``kind: chat``): one publisher sends to the rooms in turn at a given rate.
One node on SQLite, or ``--nodes 2`` sharing PostgreSQL + Redis (clients split over both).
The peer: the same rooms and rates on a Socket.IO 4.8 server (``peers/socketio/server.js``,
``io.to(room).emit``), which stores nothing and numbers nothing - a lower bound on the work.

    python -m benchmarks.chat --clients 1000,5000 --rates 200,400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from .harness import (
    PEERS,
    CpuWindow,
    LagSampler,
    cluster_config,
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
from .ws_fanout import drop_cluster_state

LIMITS = (
    "plugins: {chat: {messages_per_second: 1000000, message_burst: 1000000,"
    " max_group_members: 100000}}\n"
)


def layout(clients: int) -> list[int]:
    """Room sizes adding up to ``clients``: one big room, some medium, many small."""
    big = clients // 2
    medium = [100] * (clients // 4 // 100)
    small = [10] * ((clients - big - sum(medium)) // 10)
    rest = clients - big - sum(medium) - sum(small)
    return [big + rest, *medium, *small]


async def make_rooms(url: str, token: str, sizes: list[int]) -> list[list[Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    rooms = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for i, size in enumerate(sizes):
            async with session.post(
                url + "/api/chat/rooms", json={"name": f"room {i}", "visibility": "invite"}
            ) as resp:
                room = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"room: {room}")
            rooms.append([f"chat:{room['id']}", size])
    return rooms


async def run_load(urls: list[str], token: str, clients: int, rooms: list[Any], rate: int,
                   seconds: float, workers: int, kind: str = "chat") -> dict[str, Any]:  # fmt: skip
    options = {
        "kind": kind, "urls": urls, "token": token, "clients": clients, "rate": rate,
        "seconds": seconds, "rooms": rooms, "workers": workers,
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        "node", "load.js", json.dumps(options), cwd=PEERS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), seconds + 180)
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed: {err.decode()[-2000:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


async def measure(args: argparse.Namespace, clients: int, rate: int) -> dict[str, Any]:
    with temp_dir() as tmp:
        extra, schema, prefix = LIMITS, "", ""
        if args.nodes == 2:
            schema, prefix = random_name("bench_"), random_name("bench")
            extra += cluster_config(schema, prefix)
        config = write_config(tmp, extra)
        create_admin(config)
        nodes = [start_node(config, name=f"node-{i}") for i in range(args.nodes)]
        try:
            urls = [n.url for n in nodes]
            token = await login(urls[0])
            sizes = layout(clients)
            rooms = await make_rooms(urls[0], token, sizes)
            with CpuWindow([n.proc.pid for n in nodes]) as cpu, LagSampler(urls) as lag:
                result = await run_load(
                    urls, token, clients, rooms, rate, args.seconds, args.workers
                )
            result.update(
                lag.summary_ms(),
                server_cpu_s=cpu.server_cpu_s,
                rss_mb=sum(rss_mb(n.proc.pid) for n in nodes),
                rooms=len(sizes),
                room_sizes=f"1x{sizes[0]}, {sizes.count(100)}x100, {sizes.count(10)}x10",
            )
        finally:
            for node in nodes:
                stop(node.proc)
            if args.nodes == 2:
                await drop_cluster_state(schema, prefix)
    print(
        f"  {clients:>5} clients, {rate:>4} msgs/s:"
        f" {result['delivered_per_s']:>9,.0f} deliveries/s,"
        f" p50 {result['p50_ms'] or 0:.1f} ms, p99 {result['p99_ms'] or 0:.1f} ms,"
        f" lost {result['lost']}, RSS {result['rss_mb']:.0f} MB",
        flush=True,
    )
    return result


async def measure_peer(args: argparse.Namespace, clients: int, rate: int) -> dict[str, Any]:
    """The same rooms and rate on a Socket.IO server (in-memory broadcast, nothing stored)."""
    port = free_port()
    proc = subprocess.Popen(["node", "server.js", str(port)], cwd=PEERS, stdout=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        sizes = layout(clients)
        rooms = [[f"room-{i}", size] for i, size in enumerate(sizes)]
        url = f"http://127.0.0.1:{port}"
        with CpuWindow([proc.pid]) as cpu:
            result = await run_load(
                [url], "", clients, rooms, rate, args.seconds, args.workers, "socketio"
            )
        result.update(server_cpu_s=cpu.server_cpu_s, rss_mb=rss_mb(proc.pid))
    finally:
        stop(proc)
    print(
        f"  {clients:>5} clients, {rate:>4} msgs/s (Socket.IO):"
        f" {result['delivered_per_s']:>9,.0f} deliveries/s, p99 {result['p99_ms'] or 0:.1f} ms",
        flush=True,
    )
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1000,5000")
    parser.add_argument("--rates", default="200,400", help="messages sent per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--nodes", type=int, choices=(1, 2), default=1)
    parser.add_argument("--workers", type=int, default=1, help="load client processes")
    parser.add_argument("--no-peer", action="store_true", help="skip the Socket.IO runs")
    args = parser.parse_args()
    ensure_node_modules()
    results = []
    for clients in (int(x) for x in args.clients.split(",")):
        for rate in (int(x) for x in args.rates.split(",")):
            results.append(await measure(args, clients, rate))
            if not args.no_peer and args.nodes == 1:
                peer = await measure_peer(args, clients, rate)
                results[-1]["peer"] = peer
    rows: list[list[Any]] = [
        ["clients", "msgs/s", "deliveries/s", "p50 ms", "p99 ms", "lost", "server CPU s",
         "RSS MB", "loop lag max ms", "Socket.IO deliv/s", "p99 ms", "CPU s", "CPU ratio"]
    ]  # fmt: skip
    for r in results:
        peer = r.get("peer") or {}
        ratio = r["server_cpu_s"] / peer["server_cpu_s"] if peer.get("server_cpu_s") else None
        rows.append([
            r["clients"], r["rate"], round(r["delivered_per_s"]), round(r["p50_ms"] or 0, 1),
            round(r["p99_ms"] or 0, 1), r["lost"], round(r["server_cpu_s"], 1),
            round(r["rss_mb"]), round(r["max_loop_lag_ms"] or 0, 1),
            round(peer.get("delivered_per_s", 0)), round(peer.get("p99_ms") or 0, 1),
            round(peer.get("server_cpu_s", 0), 1), "-" if ratio is None else f"{ratio:.2f}",
        ])  # fmt: skip
    print()
    print(f"{args.nodes} node(s), {args.seconds:g} s per run; rooms: {results[0]['room_sizes']}")
    print(table(rows))
    save("chat", {"args": vars(args), "results": results})


if __name__ == "__main__":
    asyncio.run(main())
