"""HTTP requests/s with wrk: SyncStream's /healthz and /api/auth/me vs a bare aiohttp app.

The peer is the smallest possible aiohttp "hello" app on uvloop (as SyncStream runs), so the
ratio shows what our middleware costs (problem-JSON, metrics, CORS, request ids). /api/auth/me
is measured twice: with the session cache (default settings) and with
``auth.session_cache_seconds: 0``, where every request checks the token in the store (SQLite).
Per endpoint: req/s, p50/p99 latency, non-2xx answers, server CPU seconds, worst loop lag.
Needs `wrk` (Debian: apt-get install wrk); it installs nothing itself.

    python -m benchmarks.http_rps --seconds 8 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
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
    """One wrk run against ``url``, with the server's CPU seconds and loop lag."""
    busy = await asyncio.to_thread(check_idle, args.wait_idle)
    with CpuWindow([pid]) as cpu, LagSampler([scrape] if scrape else []) as lag:
        result: dict[str, Any] = await asyncio.to_thread(wrk, args, url, token)
    result.update(
        lag.summary_ms(),
        name=name,
        server_cpu_s=cpu.server_cpu_s,
        wrk_cpu_s=cpu.client_cpu_s,
        others_cpu_s=cpu.others_cpu_s,
        busy_cores_before=busy,
    )
    print(f"  {name:34} {result['rps']:>9,.0f} req/s", flush=True)
    return result


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
        return await measure(
            "aiohttp hello (peer)", f"http://127.0.0.1:{port}/healthz", peer.pid, args
        )
    finally:
        stop(peer)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per endpoint (<= 60)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (<= 1000)")
    add_common_args(parser)
    args = parser.parse_args()
    if not 0 < args.seconds <= 60 or not 0 < args.connections <= 1000:
        parser.error("keep runs bounded: seconds <= 60, connections <= 1000")
    require("wrk", "apt-get install wrk")
    print(
        f"HTTP req/s: wrk, 1 thread, {args.connections} connections, {args.seconds:g} s each"
        + (", server on CPU 0 and wrk on CPU 1" if args.pin else "")
    )
    results = await syncstream_runs(args)
    results.append(await peer_run(args))
    rows: list[list[Any]] = [
        [
            "endpoint",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server cpu s",
            "wrk cpu s",
            "others cpu s",
            "max loop lag ms",
        ]
    ]
    for r in results:
        rows.append(
            [
                r["name"] + ("*" if r.get("noisy") else ""),
                f"{r['rps']:,.0f}",
                r.get("p50_ms", "-"),
                r.get("p99_ms", "-"),
                int(r["non_2xx"] + r["socket_errors"]),
                r["server_cpu_s"],
                r["wrk_cpu_s"],
                r["others_cpu_s"],
                r["max_loop_lag_ms"] if r["max_loop_lag_ms"] is not None else "-",
            ]
        )
    print()
    print(table(rows))
    if any(r.get("noisy") for r in results):
        print("* other processes took CPU during this run, even after retries")
    print()
    peer_rps = results[-1]["rps"]
    for r in results[:-1]:
        print(f"ratio {r['name']} / peer: {r['rps'] / peer_rps:.2f}")
    print(f"results: {save('http_rps', {'args': vars(args), 'results': results})}")


if __name__ == "__main__":
    asyncio.run(main())
