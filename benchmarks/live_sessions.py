"""Memory over many publish sessions: server RSS after each of N publish/unpublish cycles.

Each cycle publishes the shared 720p30 3 Mbit/s source for a few seconds (``ffmpeg -re -c
copy``) to ``--viewers`` LL-HLS viewers (blocking playlist reloads and parts, as hls.js), lets
the stream end (``live.grace_seconds: 0``) and waits until the server has forgotten it; then
the server's RSS is read from ``/proc``. Required: flat (within 10 MB) from the first cycle to
the last. The viewers matter: their requests make the garbage collector run full
collections while a stream is live, and the server's GC policy then freezes what survived -
the stream included - so anything of it left in a reference cycle stays until the policy's
next sweep (15 minutes). Without viewers short sessions rarely see a full collection.

    python -m benchmarks.live_sessions --cycles 100 --seconds 8 --viewers 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
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


HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"')


async def viewer(session: aiohttp.ClientSession, base: str, live: subprocess.Popen[bytes]) -> None:
    """Follow the preload hint until the stream ends (or the publisher is done)."""
    while live.poll() is None:
        async with session.get(f"{base}/index.m3u8") as resp:
            text = await resp.text()
        hint = HINT.search(text) if resp.status == 200 else None
        if hint is None:
            await asyncio.sleep(0.2)
            continue
        async with session.get(f"{base}/{hint.group(1)}") as resp:  # blocks until it exists
            await resp.read()


async def watch(url: str, name: str, count: int, live: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(viewer(session, f"{url}/live/{name}", live) for _ in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--viewers", type=int, default=20)
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
                publisher = subprocess.Popen(
                    [
                        *("ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(source)),
                        *("-t", str(args.seconds), "-c", "copy", "-f", "flv", url),
                    ],
                )
                asyncio.run(watch(node.url, "bench0", args.viewers, publisher))
                if publisher.wait() != 0:
                    raise RuntimeError("the publisher failed")
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
