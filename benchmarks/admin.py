"""Admin: how the dashboard's queries hold up on a big site, and what its live feed costs.

The node's SQLite store is seeded before it starts with ``--users`` accounts (each with a
session) and ``--audit`` activity records. Then, over HTTP as the dashboard does it:

- user list pages (search, sort by name / join date / last seen, a deep page): p50/p99 ms;
- activity pages (by action prefix, by user) p50/p99 ms, and a full CSV export (rows/s);
- the live feed: ``--dashboards`` admin sockets on ``admin:stats`` with a sample every
  ``--sample`` s; the node's CPU for it and its event-loop lag.

    python -m benchmarks.admin --users 100000 --audit 300000 --pin
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from .harness import (
    CpuWindow,
    LagSampler,
    add_common_args,
    cpus,
    create_admin,
    login,
    percentile,
    pin_self,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    write_config,
)

ACTIONS = ("auth.login", "auth.login_failed", "file.shared", "stream.published", "chat.role",
           "file.deleted", "user.banned")  # fmt: skip


def seed(db: Path, users: int, audit: int) -> None:
    """Accounts with a session each, and activity records spread over a week."""
    now = time.time()
    rng = random.Random(7)
    with sqlite3.connect(db) as conn:
        seen = [now - rng.random() * 6e5 for _ in range(users)]
        conn.executemany(
            "INSERT INTO users (id, username, username_key, password_hash, role, banned,"
            " created_at, last_seen_at) VALUES (?, ?, ?, 'x', 'user', 0, ?, ?)",
            ((f"{n:032x}", f"user{n}", f"user{n}", now - rng.random() * 9e7, seen[n - 1])
             for n in range(1, users + 1)),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO tokens (id, user_id, token_hash, created_at, expires_at,"
            " last_used_at) VALUES (?, ?, ?, ?, ?, ?)",
            ((f"t{n:031x}", f"{n:032x}", f"h{n}", now - 86400, now + 86400, seen[n - 1])
             for n in range(1, users + 1)),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO audit_log (id, time, action, actor_id, target, ip, data)"
            " VALUES (?, ?, ?, ?, ?, '192.0.2.1', '{}')",
            ((f"a{n:031x}", now - rng.random() * 6e5, rng.choice(ACTIONS),
              f"{rng.randint(1, users):032x}", f"{rng.randint(1, users):032x}")
             for n in range(audit)),
        )  # fmt: skip


async def timed(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], rounds: int
) -> dict[str, float | None]:
    latencies = []
    for _ in range(rounds):
        start = time.perf_counter()
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            assert resp.status == 200, (url, resp.status)
        latencies.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


async def live_feed(
    base: str, token: str, pid: int, dashboards: int, seconds: float
) -> dict[str, Any]:
    received = 0
    async with aiohttp.ClientSession() as session:
        sockets = []
        for _ in range(dashboards):
            ws = await session.ws_connect(f"{base.replace('http', 'ws')}/ws?token={token}")
            await ws.receive()  # hello
            await ws.send_str(json.dumps({"op": "subscribe", "id": 1, "topic": "admin:stats"}))
            await ws.receive()
            sockets.append(ws)

        async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal received
            async for _ in ws:
                received += 1

        readers = [asyncio.ensure_future(drain(ws)) for ws in sockets]
        with LagSampler([base]) as lag, CpuWindow([pid]) as cpu:
            await asyncio.sleep(seconds)
        for reader in readers:
            reader.cancel()
        for ws in sockets:
            await ws.close()
    return {"dashboards": dashboards, "samples_received": received,
            "server_cpu_percent": 100 * cpu.server_cpu_s / seconds, **lag.summary_ms()}  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with temp_dir() as tmp:
        config = write_config(tmp, f"plugins: {{admin: {{sample_seconds: {args.sample}}}}}\n")
        create_admin(config)
        seed(tmp / "data" / "syncstream.db", args.users, args.audit)
        node = start_node(config, cpus=cpus(args, "server"))
        try:
            token = await login(node.url)
            auth = {"Authorization": f"Bearer {token}"}
            base = node.url + "/api/admin"
            queries = {
                "users: search 'user12'": "/users?search=user12",
                "users: by name, page 1": "/users?sort=username",
                "users: newest first": "/users?sort=created_at&order=desc",
                "users: last seen first": "/users?sort=last_seen&order=desc",
                f"users: page {args.users // 50}": f"/users?offset={args.users // 2}",
                "activity: auth.*": "/activity?action=auth.",
                "activity: one user": "/activity?user=user42",
                "activity: failed logins, 24 h": "/activity?action=auth.login_failed&since="
                + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 86400)),
            }
            results: dict[str, Any] = {}
            async with aiohttp.ClientSession() as session:
                for label, path in queries.items():
                    results[label] = await timed(session, base + path, auth, args.rounds)
                start = time.perf_counter()
                async with session.get(base + "/activity/export?format=csv", headers=auth) as resp:
                    rows = (await resp.read()).count(b"\n") - 1
                export_s = time.perf_counter() - start
            feed = await live_feed(node.url, token, node.proc.pid, args.dashboards, args.seconds)
        finally:
            stop(node.proc)
    return {"queries": results, "export_rows": rows, "export_rows_per_s": rows / export_s,
            "feed": feed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--audit", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--dashboards", type=int, default=50)
    parser.add_argument("--sample", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=10.0)
    add_common_args(parser)
    args = parser.parse_args()
    pin_self(args)
    r = asyncio.run(run(args))
    rows: list[list[Any]] = [["query", "p50 ms", "p99 ms"]]
    for label, q in r["queries"].items():
        rows.append([label, f"{q['p50_ms']:.1f}", f"{q['p99_ms']:.1f}"])
    print(table(rows))
    feed = r["feed"]
    export = f"{r['export_rows']:,} rows, {r['export_rows_per_s']:,.0f} rows/s"
    print(table([
        ["measure", "value"],
        ["activity export (CSV)", export],
        [f"live feed: {feed['dashboards']} dashboards, a sample every {args.sample} s",
         f"{feed['samples_received']} samples delivered"],
        ["server CPU for it", f"{feed['server_cpu_percent']:.1f} %"],
        ["event-loop lag p50 / max (ms)",
         f"{feed['p50_loop_lag_ms']:.1f} / {feed['max_loop_lag_ms']:.1f}"],
    ]))  # fmt: skip
    save("admin", {"args": vars(args), **r})


if __name__ == "__main__":
    main()
