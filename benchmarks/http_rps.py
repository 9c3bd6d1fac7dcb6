"""HTTP requests/s with wrk: SyncStream's /healthz and /api/auth/me vs a bare aiohttp app.

The peer is the smallest possible aiohttp "hello" app on uvloop, so the ratio shows what our
middleware (problem-JSON, metrics, CORS, auth) costs; /api/auth/me adds a token check in the
store. Needs `wrk` (Debian: apt-get install wrk).

    python -m benchmarks.http_rps --seconds 8 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from typing import Any

from .harness import (
    LagSampler,
    cpu_seconds,
    create_admin,
    free_port,
    login,
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
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    result = {"rps": rps}
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match:
            result[f"p{pct}_ms"] = float(match.group(1)) * UNITS[match.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def wrk(url: str, seconds: float, connections: int, token: str = "") -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency", url]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


async def measure(
    name: str, url: str, pid: int, args: argparse.Namespace, token: str = "", scrape: str = ""
) -> dict[str, Any]:
    before = cpu_seconds(pid)
    with LagSampler([scrape] if scrape else []) as lag:
        result: dict[str, Any] = await asyncio.to_thread(
            wrk, url, args.seconds, args.connections, token
        )
    result.update(
        name=name,
        server_cpu_s=cpu_seconds(pid) - before,
        max_loop_lag_ms=lag.max_lag * 1000 if scrape else None,
    )
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    results = []
    with temp_dir() as tmp:
        config = write_config(tmp)
        create_admin(config)
        node = start_node(config)
        try:
            token = await login(node.url)
            results.append(
                await measure(
                    "syncstream /healthz",
                    node.url + "/healthz",
                    node.proc.pid,
                    args,
                    scrape=node.url,
                )
            )
            results.append(
                await measure(
                    "syncstream /api/auth/me",
                    node.url + "/api/auth/me",
                    node.proc.pid,
                    args,
                    token=token,
                    scrape=node.url,
                )
            )
        finally:
            stop(node.proc)
    port = free_port()
    peer = subprocess.Popen([sys.executable, "-c", PEER_APP, str(port)])
    try:
        wait_port(port, peer)
        results.append(
            await measure(
                "aiohttp hello (peer)", f"http://127.0.0.1:{port}/healthz", peer.pid, args
            )
        )
    finally:
        stop(peer)
    rows: list[list[Any]] = [
        ["endpoint", "req/s", "p50 ms", "p99 ms", "non-2xx", "cpu s", "loop lag ms"]
    ]
    for r in results:
        rows.append(
            [
                r["name"],
                round(r["rps"]),
                r.get("p50_ms", "-"),
                r.get("p99_ms", "-"),
                int(r["non_2xx"]),
                r["server_cpu_s"],
                r["max_loop_lag_ms"] or "-",
            ]
        )
    print(table(rows))
    peer_rps = results[-1]["rps"]
    for r in results[:-1]:
        print(f"ratio {r['name']} / peer: {r['rps'] / peer_rps:.2f}")
    save("http_rps", {"args": vars(args), "results": results})


if __name__ == "__main__":
    asyncio.run(main())
