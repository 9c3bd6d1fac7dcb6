"""HTTP requests/s with wrk: SyncStream's /healthz and /api/auth/me vs a bare aiohttp app.

The peer is the smallest possible aiohttp "hello" app on uvloop (as SyncStream runs), so the
ratio shows what our middleware costs (problem-JSON, metrics, CORS, request ids). /api/auth/me
is measured twice: with the session cache (default settings) and with
``auth.session_cache_seconds: 0``, where every request checks the token in the store (SQLite).
Each of ``--runs`` rounds measures every endpoint and then the peer, so ours and the peer's
runs alternate; the table gives the median (min-max) of the rounds. Per endpoint: req/s,
p50/p99 latency, non-2xx answers, server CPU µs per request, which side's CPU was saturated
(≥ 90 % of a core: the server, wrk, or both), the 1-minute load average before each run, and
the worst loop lag. Needs `wrk` (Debian: apt-get install wrk); it installs nothing itself.

    python -m benchmarks.http_rps --pin --runs 3 --seconds 8 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from typing import Any

from .harness import (
    CpuWindow,
    LagSampler,
    add_common_args,
    check_idle,
    cpus,
    create_admin,
    free_port,
    login,
    pin_to,
    quiet_run,
    require,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    wait_port,
    write_config,
)

PEER_APP = """
import sys, uvloop
from aiohttp import web
async def hello(request):
    return web.json_response({"status": "ok"})
app = web.Application()
app.router.add_get("/healthz", hello)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
SATURATED = 0.9  # of a core
PEER = "aiohttp hello (peer)"


def parse_wrk(output: str) -> dict[str, float]:
    """req/s, p50/p99 ms and non-2xx count from ``wrk --latency`` output."""
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    result = {"rps": float(match.group(1))}
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if found:
            result[f"p{pct}_ms"] = float(found.group(1)) * UNITS[found.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sock_errors = re.search(r"Socket errors: (.*)", output)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    result["socket_errors"] = (
        float(sum(int(n) for n in re.findall(r"\d+", sock_errors.group(1)))) if sock_errors else 0.0
    )
    return result


def wrk(args: argparse.Namespace, url: str, token: str = "") -> dict[str, float]:
    """One ``wrk -t1`` run (on the client CPU with --pin)."""
    seconds, connections = args.seconds, args.connections
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency", url]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        preexec_fn=pin_to(cpus(args, "client")),
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr[-2000:]}")
    return parse_wrk(done.stdout)


async def measure(
    name: str, url: str, pid: int, args: argparse.Namespace, token: str = "", scrape: str = ""
) -> dict[str, Any]:
    """A wrk run against ``url`` undisturbed by other processes (see ``quiet_run``)."""
    return await quiet_run(lambda: measure_once(name, url, pid, args, token, scrape), args)


async def measure_once(
    name: str, url: str, pid: int, args: argparse.Namespace, token: str, scrape: str
) -> dict[str, Any]:
    """One wrk run against ``url``, with the server's CPU seconds, the loop lag and the load."""
    busy = await asyncio.to_thread(check_idle, args.wait_idle)
    load = os.getloadavg()[0]
    with CpuWindow([pid]) as cpu, LagSampler([scrape] if scrape else []) as lag:
        result: dict[str, Any] = await asyncio.to_thread(wrk, args, url, token)
    requests = result["rps"] * round(args.seconds)
    result.update(
        lag.summary_ms(),
        name=name,
        server_cpu_s=cpu.server_cpu_s,
        server_us_per_request=cpu.server_cpu_s / requests * 1e6 if requests else None,
        wrk_cpu_s=cpu.client_cpu_s,
        others_cpu_s=cpu.others_cpu_s,
        saturated=saturated(cpu.server_cpu_s, cpu.client_cpu_s, args.seconds),
        busy_cores_before=busy,
        load_1m=load,
    )
    print(f"  {name:34} {result['rps']:>9,.0f} req/s", flush=True)
    return result


def saturated(server_cpu_s: float, wrk_cpu_s: float, seconds: float) -> str:
    """Which side used at least SATURATED of a core during the run: the side that set the
    pace (both: neither had spare CPU; neither: something else did, e.g. other processes)."""
    sides = [
        side
        for side, used in (("server", server_cpu_s), ("wrk", wrk_cpu_s))
        if used >= SATURATED * seconds
    ]
    return "+".join(sides) or "neither"


async def syncstream_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """/healthz and /api/auth/me with the session cache, then /api/auth/me without it."""
    results = []
    with temp_dir() as tmp:
        config = write_config(tmp)
        create_admin(config)
        for cached in (True, False):
            env = {} if cached else {"SYNCSTREAM_AUTH__SESSION_CACHE_SECONDS": "0"}
            node = start_node(config, env=env, cpus=cpus(args, "server"))
            try:
                token = await login(node.url)
                pid = node.proc.pid
                if cached:
                    results.append(
                        await measure(
                            "syncstream /healthz", node.url + "/healthz", pid, args, scrape=node.url
                        )
                    )
                label = "cached" if cached else "uncached: SQLite"
                results.append(
                    await measure(
                        f"syncstream /api/auth/me ({label})",
                        node.url + "/api/auth/me",
                        pid,
                        args,
                        token=token,
                        scrape=node.url,
                    )
                )
            finally:
                stop(node.proc)
    return results


async def peer_run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER_APP, str(port)], preexec_fn=pin_to(cpus(args, "server"))
    )
    try:
        wait_port(port, peer)
        return await measure(PEER, f"http://127.0.0.1:{port}/healthz", peer.pid, args)
    finally:
        stop(peer)


def spread(values: list[float], digits: int = 0) -> str:
    """Median (min-max) of ``values``."""
    if not values:
        return "-"
    fmt = f",.{digits}f"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:{fmt}} ({low:{fmt}}-{high:{fmt}})"


def summary(results: list[dict[str, Any]], runs: int) -> str:
    """One row per endpoint over the rounds, and each endpoint's ratio to the peer's req/s
    (the ratio of the medians, and the min-max of the rounds' ratios)."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_name[r["name"]].append(r)
    rows: list[list[Any]] = [
        [
            "endpoint",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server µs/req",
            "saturated",
            "load 1m",
            "max loop lag ms",
        ]
    ]
    for name, rs in by_name.items():
        lags = [r["max_loop_lag_ms"] for r in rs if r["max_loop_lag_ms"] is not None]
        sides = [r["saturated"] for r in rs]
        paced = ", ".join(f"{side} {sides.count(side)}/{runs}" for side in sorted(set(sides)))
        rows.append(
            [
                name + ("*" if any(r.get("noisy") for r in rs) else ""),
                spread([r["rps"] for r in rs]),
                spread([r["p50_ms"] for r in rs if "p50_ms" in r], 2),
                spread([r["p99_ms"] for r in rs if "p99_ms" in r], 2),
                int(sum(r["non_2xx"] + r["socket_errors"] for r in rs)),
                spread([r["server_us_per_request"] for r in rs if r["server_us_per_request"]]),
                paced,
                spread([r["load_1m"] for r in rs], 2),
                spread(lags, 1),
            ]
        )
    lines = [table(rows)]
    if any(r.get("noisy") for r in results):
        lines.append("* other processes took CPU during a run, even after retries")
    peer = by_name.get(PEER, [])
    for name, rs in by_name.items():
        if name == PEER or len(rs) != len(peer):
            continue
        ratios = [r["rps"] / p["rps"] for r, p in zip(rs, peer, strict=True)]
        median = statistics.median(r["rps"] for r in rs) / statistics.median(p["rps"] for p in peer)
        lines.append(
            f"ratio {name} / peer: {median:.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f})"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per endpoint (<= 60)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (<= 1000)")
    parser.add_argument("--runs", type=int, default=3, help="rounds over every endpoint (<= 10)")
    add_common_args(parser)
    args = parser.parse_args()
    if not 0 < args.seconds <= 60 or not 0 < args.connections <= 1000 or not 0 < args.runs <= 10:
        parser.error("keep runs bounded: seconds <= 60, connections <= 1000, runs <= 10")
    require("wrk", "apt-get install wrk")
    print(
        f"HTTP req/s: wrk, 1 thread, {args.connections} connections, {args.seconds:g} s each,"
        f" {args.runs} rounds" + (", server on CPU 0 and wrk on CPU 1" if args.pin else "")
    )
    results: list[dict[str, Any]] = []
    for round_ in range(1, args.runs + 1):
        print(f"round {round_}/{args.runs}", flush=True)
        results += await syncstream_runs(args)
        results.append(await peer_run(args))
    print()
    print(summary(results, args.runs))
    print(f"results: {save('http_rps', {'args': vars(args), 'results': results})}")


if __name__ == "__main__":
    asyncio.run(main())
