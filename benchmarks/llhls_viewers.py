"""Concurrent LL-HLS viewers per server core, measured with a Node load client.

The server runs pinned to one core (``taskset``-style affinity, core 0); the publisher
(``ffmpeg -re -c copy`` of the shared 720p30 3 Mbit/s source) and the load client
(``benchmarks/llhls_viewers.js``, plain Node) run on the other core. Each viewer follows the
stream as hls.js does in low-latency mode: for every part a blocking playlist reload
(``_HLS_msn``/``_HLS_part``) and the preload-hinted part, both held until the part exists. A
step passes when p99 of the answer delay (behind the first answer for the same part) is below
one part duration (0.2 s) with no errors. Each viewer count runs ``--runs`` times: median and
min-max are reported. Also reported: the server's CPU time per answer, and the viewers one
core could serve at that cost (each viewer asks for two answers per part) - a figure that
holds when other processes on a shared machine take the core's time and stretch the delays.

    python -m benchmarks.llhls_viewers --viewers 500,1000,1500 --seconds 15 --runs 3

``--fast-path on,off`` runs one node per setting of ``live.hls_fast_path`` (each with its own
publisher; the idle one stays on the server core) and alternates between them run by run, so
both meet the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from .harness import (
    Node,
    cpu_seconds,
    free_port,
    pin_to,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    write_config,
)
from .live import make_source, publishers, syncstream_keys

CLIENT = Path(__file__).with_name("llhls_viewers.js")
SERVER_CPU, CLIENT_CPU = {0}, {1}
PART_MS = 200


def run_client(base: str, viewers: int, seconds: float) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "needs node"
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    done = subprocess.run(
        [node, str(CLIENT), base, str(viewers), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=pin_to(CLIENT_CPU),
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result["client_cpu_percent"] = used / (time.monotonic() - start) * 100
    return result


def spread(values: list[float], number: str = "{:.0f}") -> str:
    median, low, high = (
        number.format(v) for v in (statistics.median(values), min(values), max(values))
    )
    return f"{median} ({low}-{high})"


def measure(url: str, count: int, seconds: float, pid: int) -> dict[str, Any]:
    before, start = cpu_seconds(pid), time.monotonic()
    result = run_client(url, count, seconds)
    elapsed = time.monotonic() - start
    used = cpu_seconds(pid) - before
    result["server_cpu_percent"] = used / elapsed * 100
    # The cost of one answer, whatever else the machine runs; a viewer asks for two answers
    # per part.
    result["server_us_per_answer"] = used / max(1, result["answers"]) * 1e6
    result["viewers_per_core"] = 1e6 / (result["server_us_per_answer"] * 2 * 1000 / PART_MS)
    result["answers_per_second"] = result["answers"] / seconds
    result["load"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--viewers", type=lambda s: [int(x) for x in s.split(",")], default=[500, 1000, 1500]
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--fast-path",
        type=lambda s: s.split(","),
        default=["on"],
        help="live.hls_fast_path settings to compare, e.g. on,off (one node each, alternating)",
    )
    args = parser.parse_args()
    source = make_source()
    rows: list[list[Any]] = [
        [
            *("viewers", "fast path", "answers/s", "p50 ms", "p99 ms", "max ms", "errors"),
            *("server CPU %", "client CPU %", "µs/answer", "viewers/core (CPU)", "load", "pass"),
        ]
    ]
    results: list[dict[str, Any]] = []
    with temp_dir() as tmp:
        nodes: dict[str, Node] = {}
        pushers: list[subprocess.Popen[bytes]] = []
        try:
            for setting in args.fast_path:
                rtmp_port = free_port()
                directory = Path(tmp) / setting
                directory.mkdir()
                config = write_config(
                    directory, f"rtmp: {{enabled: true, host: 127.0.0.1, port: {rtmp_port}}}\n"
                )
                config.write_text(config.read_text().replace("rtmp: {enabled: false}\n", ""))
                env = {"SYNCSTREAM_LIVE__HLS_FAST_PATH": "true" if setting == "on" else "false"}
                nodes[setting] = node = start_node(config, env=env, cpus=SERVER_CPU)
                (key,) = asyncio.run(syncstream_keys(node.url, 1))
                pushers += publishers(source, [f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"])
            time.sleep(4)
            for count in args.viewers:
                runs: dict[str, list[dict[str, Any]]] = {setting: [] for setting in nodes}
                for _ in range(args.runs):
                    for setting, node in nodes.items():
                        url = f"{node.url}/live/bench0/"
                        result = measure(url, count, args.seconds, node.proc.pid)
                        runs[setting].append(result)
                        print(
                            f"  {count} viewers, fast path {setting}: p99"
                            f" {result['p99_ms']:.1f} ms, errors {result['errors']}, server CPU"
                            f" {result['server_cpu_percent']:.0f} %, client CPU"
                            f" {result['client_cpu_percent']:.0f} %, load {result['load']:.1f}",
                            flush=True,
                        )
                for setting, done in runs.items():
                    results.append({"viewers": count, "fast_path": setting, "runs": done})
                    p99 = [r["p99_ms"] for r in done]
                    ok = statistics.median(p99) < PART_MS and not any(r["errors"] for r in done)
                    rows.append(
                        [
                            count,
                            setting,
                            *(
                                spread([r[key] for r in done])
                                for key in ("answers_per_second", "p50_ms", "p99_ms", "max_ms")
                            ),
                            sum(r["errors"] for r in done),
                            *(
                                spread([r[key] for r in done])
                                for key in (
                                    "server_cpu_percent",
                                    "client_cpu_percent",
                                    "server_us_per_answer",
                                    "viewers_per_core",
                                )
                            ),
                            spread([r["load"] for r in done], "{:.1f}"),
                            "yes" if ok else "no",
                        ]
                    )
        finally:
            for proc in pushers:
                stop(proc)
            for node in nodes.values():
                stop(node.proc)
    print(table(rows))
    save("llhls_viewers", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
