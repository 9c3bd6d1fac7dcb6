"""Glass-to-glass latency of LL-HLS and WHEP: the wall clock burned into every frame.

A Python source draws each frame with the current time (ms) as black/white blocks and pipes
it to ffmpeg's x264, which publishes RTMP (``tests/clockvideo.py``): without B-frames
(``-tune zerolatency``) or like OBS's defaults (veryfast, High, 2 B-frames, lookahead).
Viewers read the time back off what they decode or show: latency = now - burned-in time, so
the figure includes encoding, ingest, packaging, delivery, decoding (and, in a browser,
presentation), as a viewer would see it. Every run opens each viewer afresh (a new join).

- watch page (HLS): ``/watch/<stream>`` in headless Chromium, hls.js as the page sets it up;
  the clock is read off each presented frame (``requestVideoFrameCallback`` + canvas).
- bare hls.js: the same hls.js on an empty page, ``{lowLatencyMode: true}`` and nothing else.
- watch page (WebRTC): the page's WebRTC button (WHEP) in Chromium.
- LL-HLS part follower: a client that follows the preload hint with blocking playlist reloads
  and part requests and decodes each part as it lands (PyAV) - the protocol's own floor.
- WHEP (aiortc): an aiortc peer connection, frames decoded by aiortc.

    python -m benchmarks.latency --runs 3 --seconds 8 --bframes 0,2
"""

from __future__ import annotations

import argparse
import asyncio
import io
import queue
import re
import statistics
import threading
import time
from typing import Any

import aiohttp
import av
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from tests.browser import CHROMIUM, chromium_page, install_frame_clock, record_frames, wait_frames
from tests.clockvideo import BITS, BLOCK, ClockPublisher, latency_ms, now_ms, playback, read

from .harness import free_port, save, start_node, stop, table, temp_dir, write_config
from .live import syncstream_keys

SETTLE = 4.0  # seconds a browser player gets to reach its steady latency before measuring
BARE_PAGE = """<!doctype html><meta charset="utf-8"><title>bare hls.js</title>
<video muted autoplay playsinline></video><script src="%(hls)s"></script>
<script>const h = new Hls({ lowLatencyMode: true }); h.loadSource("%(src)s");
h.attachMedia(document.querySelector("video"));</script>"""


class PartReader(io.RawIOBase):
    def __init__(self) -> None:
        super().__init__()
        self.parts: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self.buffer:
            item = self.parts.get()
            if item is None:
                return 0
            self.buffer = item
        n = min(len(target), len(self.buffer))
        target[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n


def decode_hls(reader: PartReader, samples: list[int]) -> None:
    with av.open(reader, format="mp4") as container:
        for frame in container.decode(video=0):
            samples.append(latency_ms(now_ms(), read(frame.to_ndarray(format="gray"))))


async def hls_viewer(base: str, seconds: float) -> list[int]:
    samples: list[int] = []
    reader = PartReader()
    decoder = threading.Thread(target=decode_hls, args=(reader, samples), daemon=True)
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(f"{base}/index.m3u8") as resp:
                text = await resp.text()
            if resp.status == 200 and "PRELOAD-HINT" in text:
                break
            await asyncio.sleep(0.1)
        hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text)
        init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
        assert hint and init, text
        uri = hint.group(1)
        async with session.get(f"{base}/{init.group(1)}") as resp:
            reader.parts.put(await resp.read())
        decoder.start()
        started = False
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            async with session.get(f"{base}/{uri}") as resp:  # blocks until the part exists
                if resp.status != 200:
                    break
                data = await resp.read()
            async with session.get(f"{base}/index.m3u8") as resp:
                text = await resp.text()
            # Start at an independent part (the decoder needs a keyframe first).
            started = started or f'URI="{uri}",INDEPENDENT=YES' in text
            if started:
                reader.parts.put(data)
            nxt = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text)
            if not nxt:
                break
            uri = nxt.group(1)
    reader.parts.put(None)
    await asyncio.to_thread(decoder.join, 10)
    return samples


async def whep_viewer(base: str, seconds: float) -> list[int]:
    samples: list[int] = []
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    tracks: list[Any] = []
    pc.on("track", lambda track: tracks.append(track) if track.kind == "video" else None)
    await pc.setLocalDescription(await pc.createOffer())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base}/whep",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp,
    ):
        answer = await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    for _ in range(100):
        if tracks:
            break
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = await asyncio.wait_for(tracks[0].recv(), 10)
        samples.append(latency_ms(now_ms(), read(frame.to_ndarray(format="gray"))))
    await pc.close()
    return samples


async def browser_player(url: str, seconds: float, webrtc: bool = False) -> dict[str, float]:
    """One join of a browser player: its p50 latency and presented frame rate."""
    async with chromium_page(url) as page:
        await install_frame_clock(page, BITS, BLOCK)
        await wait_frames(page)
        if webrtc:
            await page.evaluate("document.getElementById('mode').click()")
            for _ in range(150):
                if await page.evaluate("!!document.querySelector('video').srcObject"):
                    break
                await asyncio.sleep(0.1)
            await page.evaluate("window.__frames.splice(0)")
            await wait_frames(page)
        await asyncio.sleep(SETTLE)
        result = playback(await record_frames(page, seconds))
    return {"p50_ms": result.p50_ms, "fps": result.fps, "frames": result.frames}


async def bare_page_server(node: str, stream: str) -> web.AppRunner:
    page = BARE_PAGE % {
        "hls": f"{node}/static/live/vendor/hls.light.min.js",
        "src": f"{node}/live/{stream}/index.m3u8",
    }

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


def p50(samples: list[int]) -> float:
    good = [s for s in samples if s < 60_000]  # undecodable blocks give absurd figures
    return float(statistics.median(good)) if good else float("nan")


async def one_run(node: str, bare: str, stream: str, seconds: float) -> dict[str, dict[str, float]]:
    base = f"{node}/live/{stream}"
    follower, aiortc_whep = await asyncio.gather(
        hls_viewer(base, seconds), whep_viewer(base, seconds)
    )
    results = {
        "LL-HLS part follower": {"p50_ms": p50(follower), "frames": len(follower)},
        "WHEP (aiortc)": {"p50_ms": p50(aiortc_whep), "frames": len(aiortc_whep)},
    }
    if CHROMIUM:
        results["watch page, HLS"] = await browser_player(f"{node}/watch/{stream}", seconds)
        results["bare hls.js"] = await browser_player(bare, seconds)
        results["watch page, WebRTC"] = await browser_player(
            f"{node}/watch/{stream}", seconds, webrtc=True
        )
    return results


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured per viewer")
    parser.add_argument("--runs", type=int, default=3, help="joins of every viewer")
    parser.add_argument("--bframes", default="0,2", help="sources: B-frames of each")
    args = parser.parse_args()
    rows: list[list[Any]] = [["source", "viewer", "p50 ms: median (min-max)", "fps", "runs"]]
    raw: dict[str, list[dict[str, dict[str, float]]]] = {}
    with temp_dir() as tmp:
        rtmp_port = free_port()
        config = write_config(
            tmp,
            f"rtmp: {{enabled: true, host: 127.0.0.1, port: {rtmp_port}}}\n"
            "live: {thumbnail_seconds: 0}\n",
        )
        config.write_text(config.read_text().replace("rtmp: {enabled: false}\n", ""))
        node = start_node(config)
        bare_port = free_port()
        runner = await bare_page_server(node.url, "bench0")
        await web.TCPSite(runner, "127.0.0.1", bare_port).start()
        try:
            (key,) = await syncstream_keys(node.url, 1)
            for bframes in [int(b) for b in args.bframes.split(",")]:
                label = f"bf={bframes}" + (" (OBS-like)" if bframes else " (zerolatency)")
                source_seconds = args.runs * (5 * (args.seconds + SETTLE + 6)) + 30
                url = f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"
                with ClockPublisher(url, bframes, source_seconds):
                    await asyncio.sleep(4)
                    runs = [
                        await one_run(
                            node.url, f"http://127.0.0.1:{bare_port}/", "bench0", args.seconds
                        )
                        for _ in range(args.runs)
                    ]
                raw[label] = runs
                await asyncio.sleep(3)  # the stream ends before the next source publishes
                for viewer in runs[0]:
                    figures = [r[viewer]["p50_ms"] for r in runs]
                    fps = [r[viewer].get("fps") for r in runs]
                    rate = (
                        spread([f for f in fps if f is not None])
                        if all(f is not None for f in fps)
                        else "-"
                    )
                    rows.append([label, viewer, spread(figures), rate, len(runs)])
        finally:
            await runner.cleanup()
            stop(node.proc)
    print(table(rows))
    save("latency", {"args": vars(args), "runs": raw})


if __name__ == "__main__":
    asyncio.run(main())
