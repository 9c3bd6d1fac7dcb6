"""Live ingest: CPU and memory per remuxed RTMP stream, SyncStream vs nginx-rtmp (same source).

A 720p30 H.264 (3 Mbit/s) + AAC source is encoded once to a file; for each server, N
``ffmpeg -re -c copy`` publishers push it for the measured window, so the publishers cost the
same for both and nothing is re-encoded on either side. Both servers write HLS (nginx-rtmp:
``hls on``, 2 s fragments; SyncStream: LL-HLS with 0.2 s parts). Reported: server CPU % of
one core per stream, RSS, and the ratio SyncStream / nginx-rtmp.

Each server's idle CPU is measured first (``--idle`` s, before any publisher connects), so the
marginal cost of a stream — (CPU with N streams - idle CPU) / N — is reported beside the raw
figure: SyncStream has periodic work of its own (metrics sampling, GC policy, job polling)
that is no part of ingesting. With ``--runs N`` the servers take turns N times (ours, nginx,
ours, ...) so both see the same load from the rest of the machine; medians and min-max follow.

    python -m benchmarks.live --streams 1,4 --seconds 20
    python -m benchmarks.live --streams 6 --seconds 15 --runs 3 --no-nms
    python -m benchmarks.live --streams 6 --runs 3 --no-nms --rtmp 'fast_reader: false'
    python -m benchmarks.live --streams 6 --runs 3 --no-nms --live "muxer: pyav"

Needs ffmpeg, and nginx with the RTMP module (Debian: nginx libnginx-mod-rtmp).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from .harness import (
    HERE,
    PASSWORD,
    RESULTS,
    cpu_seconds,
    free_port,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    wait_port,
    write_config,
)

NMS = HERE / "peers" / "nms"
NGINX_CONF = """
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            hls on;
            hls_path {tmp}/hls;
            hls_fragment 2s;
            hls_playlist_length 16s;
        }}
    }}
}}
"""


def make_source(seconds: int = 30) -> Path:
    """The shared 720p30 source, encoded once and cached under benchmarks/results/."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"source-720p30-{seconds}s.flv"
    if not path.exists():
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-b:v",
                "3M",
                "-maxrate",
                "3M",
                "-bufsize",
                "6M",
                "-g",
                "60",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-t",
                str(seconds),
                "-f",
                "flv",
                str(path),
            ],
            check=True,
        )
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def publishers(source: Path, urls: list[str]) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
                str(source),
                "-c",
                "copy",
                "-f",
                "flv",
                url,
            ],
        )
        for url in urls
    ]


def cpu_percent(pid: int, seconds: float) -> float:
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - start) * 100


def measure(
    pid: int, source: Path, urls: list[str], seconds: float, idle_seconds: float = 5.0
) -> dict[str, Any]:
    """CPU while idle (``idle_seconds``, 0: skipped), then with a publisher per URL."""
    idle = cpu_percent(pid, idle_seconds) if idle_seconds else 0.0
    procs = publishers(source, urls)
    try:
        time.sleep(4)  # warm-up: connections, probing, first segments
        busy = cpu_percent(pid, seconds)
        alive = sum(p.poll() is None for p in procs)
        return {
            "cpu_percent": busy,
            "idle_cpu_percent": idle,
            "marginal_per_stream": (busy - idle) / len(urls),
            "rss_mb": rss_mb(pid),
            "publishers_alive": alive,
        }
    finally:
        for proc in procs:
            stop(proc)


async def syncstream_keys(url: str, count: int) -> list[str]:
    keys = []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            async with session.post(
                url + "/api/auth/register", json={"username": f"bench{i}", "password": PASSWORD}
            ) as resp:
                token = (await resp.json())["token"]
            async with session.post(
                url + "/api/auth/stream-key", json={}, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                keys.append((await resp.json())["key"])
    return keys


def run_syncstream(
    source: Path,
    streams: int,
    seconds: float,
    rtmp: str = "",
    thumbnails: float = 5.0,
    idle_seconds: float = 5.0,
    live: str = "",
) -> dict[str, Any]:
    """``rtmp``/``live``: more keys of those sections, e.g. ``fast_reader: false``,
    ``muxer: pyav``."""
    with temp_dir() as tmp:
        rtmp_port = free_port()
        more = f", {rtmp}" if rtmp else ""
        config = write_config(
            tmp,
            f"rtmp: {{enabled: true, host: 127.0.0.1, port: {rtmp_port}{more}}}\n"
            f"live: {{thumbnail_seconds: {thumbnails}{', ' + live if live else ''}}}\n",
        )
        config.write_text(config.read_text().replace("rtmp: {enabled: false}\n", ""))
        node = start_node(config)
        try:
            keys = asyncio.run(syncstream_keys(node.url, streams))
            urls = [f"rtmp://127.0.0.1:{rtmp_port}/live/{key}" for key in keys]
            return measure(node.proc.pid, source, urls, seconds, idle_seconds)
        finally:
            stop(node.proc)


def run_nginx(
    source: Path, streams: int, seconds: float, idle_seconds: float = 5.0
) -> dict[str, Any]:
    with temp_dir() as tmp:
        port = free_port()
        (tmp / "hls").mkdir()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
        proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)])
        try:
            wait_port(port, proc)
            urls = [f"rtmp://127.0.0.1:{port}/live/stream{i}" for i in range(streams)]
            return measure(proc.pid, source, urls, seconds, idle_seconds)
        finally:
            stop(proc)


def run_nms(
    source: Path, streams: int, seconds: float, idle_seconds: float = 5.0
) -> dict[str, Any] | None:
    """Node-Media-Server 4 (RTMP + HTTP-FLV; it writes no HLS), if npm could install it."""
    app = NMS / "node_modules" / "node-media-server" / "bin" / "app.js"
    if not app.exists():
        if shutil.which("npm") is None:
            return None
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NMS, check=False, capture_output=True
        )
        if not app.exists():
            return None
    with temp_dir() as tmp:
        port, http = free_port(), free_port()
        proc = subprocess.Popen(
            [
                "node",
                str(app),
                "--bind",
                "127.0.0.1",
                "--rtmp-port",
                str(port),
                "--http-port",
                str(http),
                "--data-path",
                str(tmp),
                "--no-admin",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port, proc)
            urls = [f"rtmp://127.0.0.1:{port}/live/stream{i}" for i in range(streams)]
            return measure(proc.pid, source, urls, seconds, idle_seconds)
        finally:
            stop(proc)


def spread(values: list[float]) -> str:
    """median (min-max)"""
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=1, help="turns per server (medians, min-max)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle CPU window, s")
    parser.add_argument("--no-nms", action="store_true", help="skip Node-Media-Server")
    parser.add_argument(
        "--thumbnails", type=float, default=5.0, help="SyncStream's live.thumbnail_seconds (0: off)"
    )
    parser.add_argument(
        "--rtmp", default="", help="more rtmp settings for SyncStream, e.g. 'fast_reader: false'"
    )
    parser.add_argument(
        "--live", default="", help="more live settings for SyncStream, e.g. 'muxer: pyav'"
    )
    args = parser.parse_args()
    for tool in ("ffmpeg", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install ffmpeg nginx libnginx-mod-rtmp)")
    source = make_source()
    rows: list[list[Any]] = [
        [
            "server",
            "streams",
            "run",
            "CPU % (1 core)",
            "CPU %/stream",
            "idle CPU %",
            "marginal %/stream",
            "RSS MB",
            "alive",
        ]
    ]
    results = []
    summary = [["streams", "ratio (CPU/stream)", "ratio (marginal/stream)"]]
    for streams in args.streams:
        ratios: list[float] = []
        marginal: list[float] = []
        for run in range(1, args.runs + 1):
            ours = run_syncstream(
                source, streams, args.seconds, args.rtmp, args.thumbnails, args.idle, args.live
            )
            peer = run_nginx(source, streams, args.seconds, args.idle)
            nms = None if args.no_nms else run_nms(source, streams, args.seconds, args.idle)
            measured = [("syncstream", ours), ("nginx-rtmp", peer)]
            if nms is not None:
                measured.append(("node-media-server", nms))
            for name, r in measured:
                rows.append(
                    [
                        name,
                        streams,
                        run,
                        r["cpu_percent"],
                        r["cpu_percent"] / streams,
                        r["idle_cpu_percent"],
                        r["marginal_per_stream"],
                        r["rss_mb"],
                        r["publishers_alive"],
                    ]
                )
                results.append({"server": name, "streams": streams, "run": run, **r})
            ratios.append(ours["cpu_percent"] / max(peer["cpu_percent"], 1e-9))
            marginal.append(ours["marginal_per_stream"] / max(peer["marginal_per_stream"], 1e-9))
            print(
                f"{streams} stream(s), run {run}: CPU syncstream/nginx-rtmp = {ratios[-1]:.2f}"
                f" (marginal per stream {marginal[-1]:.2f})",
                flush=True,
            )
            if nms is not None:
                ratio = ours["cpu_percent"] / max(nms["cpu_percent"], 1e-9)
                print(f"{streams} stream(s): CPU syncstream/node-media-server = {ratio:.2f}")
        summary.append([streams, spread(ratios), spread(marginal)])
    print()
    print(table(rows))
    print()
    print(table(summary))
    save("live", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
