"""Memory over many publish sessions: server RSS after each of N publish/unpublish cycles.

Each cycle publishes the shared 720p30 3 Mbit/s source for a few seconds (``ffmpeg -re -c
copy``), lets the stream end (``live.grace_seconds: 0``) and waits until the server has
forgotten it; then the server's RSS is read from ``/proc``. Required: flat (within 10 MB)
from the second cycle to the last.

    python -m benchmarks.live_sessions --cycles 100 --seconds 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from pathlib import Path

import aiohttp

from .harness import free_port, save, start_node, stop, temp_dir, write_config
from .live import make_source, syncstream_keys


def rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def wait_gone(url: str, name: str, timeout: float = 60.0) -> None:
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with session.get(f"{url}/live/{name}/index.m3u8") as resp:
                if resp.status == 404 and (await resp.json())["code"] == "stream_not_found":
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{name} was not forgotten in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    source = make_source()
    sizes: list[float] = []
    with temp_dir() as tmp:
        rtmp_port = free_port()
        config = write_config(
            tmp,
            f"rtmp: {{enabled: true, host: 127.0.0.1, port: {rtmp_port}}}\n"
            "live: {grace_seconds: 0, window_segments: 3, segment_seconds: 1}\n",
        )
        config.write_text(config.read_text().replace("rtmp: {enabled: false}\n", ""))
        node = start_node(config)
        try:
            (key,) = asyncio.run(syncstream_keys(node.url, 1))
            url = f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"
            for cycle in range(args.cycles):
                subprocess.run(
                    [
                        *("ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(source)),
                        *("-t", str(args.seconds), "-c", "copy", "-f", "flv", url),
                    ],
                    check=True,
                )
                asyncio.run(wait_gone(node.url, "bench0"))
                sizes.append(rss_mb(node.proc.pid))
                print(f"  cycle {cycle + 1}: RSS {sizes[-1]:.1f} MB", flush=True)
        finally:
            stop(node.proc)
    growth = sizes[-1] - sizes[0]
    print(
        f"RSS after cycle 1: {sizes[0]:.1f} MB, after cycle {len(sizes)}: {sizes[-1]:.1f} MB"
        f" (min {min(sizes):.1f}, max {max(sizes):.1f}); growth {growth:+.1f} MB"
    )
    save("live_sessions", {"args": vars(args), "rss_mb": sizes})


if __name__ == "__main__":
    main()
