"""Concurrent LL-HLS viewers: how many blocking viewers one server core serves in time.

N viewers each follow the stream the LL-HLS way: a blocking playlist reload for the hinted
part (``_HLS_msn``/``_HLS_part``), then the part itself. When a part appears, every viewer
waiting for it should be answered at once; the delay of each answer behind the first answer
for the same part is the load's cost. A run passes while p99 of that delay stays under one
part duration (0.2 s). Viewers run in a separate process (aiohttp), the server in its own.

    python -m benchmarks.hls_viewers --viewers 100,300,600 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import aiohttp

from .harness import cpu_seconds, free_port, save, start_node, stop, table, temp_dir, write_config
from .live import make_source, publishers, syncstream_keys

HINT = re.compile(r'PRELOAD-HINT:TYPE=PART,URI="part-(\d+)\.(\d+)\.m4s"')


async def viewer(
    session: aiohttp.ClientSession,
    base: str,
    until: float,
    arrivals: dict[tuple[int, int], list[float]],
) -> None:
    async with session.get(f"{base}/index.m3u8") as resp:
        hint = HINT.search(await resp.text())
    if not hint:
        return
    msn, part = int(hint.group(1)), int(hint.group(2))
    while time.monotonic() < until:
        try:
            async with session.get(f"{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}") as resp:
                text = await resp.text()
            arrivals[(msn, part)].append(time.monotonic())
            async with session.get(f"{base}/part-{msn}.{part}.m4s") as resp:
                await resp.read()
        except aiohttp.ClientError:
            return
        nxt = HINT.search(text)
        if not nxt:
            return
        msn, part = int(nxt.group(1)), int(nxt.group(2))


async def run_viewers(base: str, count: int, seconds: float) -> dict[str, Any]:
    """The client side (run in its own process): delays behind the first answer per part."""
    arrivals: dict[tuple[int, int], list[float]] = defaultdict(list)
    until = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(viewer(session, base, until, arrivals) for _ in range(count)))
    delays = sorted(t - min(times) for times in arrivals.values() for t in times)
    answered = sum(len(t) for t in arrivals.values())
    p = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))] * 1000 if delays else None  # noqa: E731
    return {
        "viewers": count,
        "answers": answered,
        "p50_ms": p(0.5),
        "p99_ms": p(0.99),
        "max_ms": delays[-1] * 1000 if delays else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--viewers", type=lambda s: [int(x) for x in s.split(",")], default=[100, 300, 600]
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--client", nargs=3, metavar=("BASE", "COUNT", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.client:
        base, count, seconds = args.client
        print(json.dumps(asyncio.run(run_viewers(base, int(count), float(seconds)))))
        return
    source = make_source()
    rows: list[list[Any]] = [
        ["viewers", "answers", "p50 ms", "p99 ms", "max ms", "server CPU %", "p99 < part"]
    ]
    results = []
    with temp_dir() as tmp:
        rtmp_port = free_port()
        config = write_config(tmp, f"rtmp: {{enabled: true, host: 127.0.0.1, port: {rtmp_port}}}\n")
        config.write_text(config.read_text().replace("rtmp: {enabled: false}\n", ""))
        node = start_node(config)
        try:
            (key,) = asyncio.run(syncstream_keys(node.url, 1))
            pushers = publishers(source, [f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"])
            time.sleep(4)
            for count in args.viewers:
                before, start = cpu_seconds(node.proc.pid), time.monotonic()
                client = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.hls_viewers",
                        "--client",
                        f"{node.url}/live/bench0",
                        str(count),
                        str(args.seconds),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                cpu = (cpu_seconds(node.proc.pid) - before) / (time.monotonic() - start) * 100
                result = json.loads(client.stdout.strip().splitlines()[-1])
                result["server_cpu_percent"] = cpu
                results.append(result)
                ok = result["p99_ms"] is not None and result["p99_ms"] < 200
                rows.append(
                    [
                        count,
                        result["answers"],
                        result["p50_ms"],
                        result["p99_ms"],
                        result["max_ms"],
                        cpu,
                        "yes" if ok else "no",
                    ]
                )
                print(
                    f"  {count} viewers: p99 {result['p99_ms']:.1f} ms, server CPU {cpu:.0f} %",
                    flush=True,
                )
            for proc in pushers:
                stop(proc)
        finally:
            stop(node.proc)
    print(table(rows))
    save(
        "hls_viewers",
        {"args": {k: v for k, v in vars(args).items() if k != "client"}, "results": results},
    )


if __name__ == "__main__":
    main()
