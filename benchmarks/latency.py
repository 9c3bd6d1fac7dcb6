"""Glass-to-glass latency of LL-HLS and WHEP: the wall clock burned into every frame.

A Python source draws each frame with the current time (ms) as black/white blocks, pipes it to
``ffmpeg -tune zerolatency`` which publishes RTMP. Viewers decode what the server delivers
and read the time back: latency = now - burned-in time, so the figure includes encoding,
ingest, packaging, delivery and decoding, as a viewer would see it.

- LL-HLS viewer: follows the preload hint with blocking playlist reloads and part requests,
  and decodes the parts as they arrive (PyAV, on a thread).
- WHEP viewer: an aiortc peer connection, frames decoded by aiortc.

    python -m benchmarks.latency --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import io
import queue
import re
import statistics
import subprocess
import threading
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from .harness import free_port, save, start_node, stop, table, temp_dir, write_config
from .live import syncstream_keys

WIDTH, HEIGHT, FPS = 320, 240, 30
BITS, BLOCK = 44, 7  # 44 bits of milliseconds, 7 px blocks along the top


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def draw(ms: int) -> bytes:
    frame = np.full((HEIGHT, WIDTH), 96, dtype=np.uint8)
    for bit in range(BITS):
        x = bit * BLOCK
        frame[0:BLOCK, x : x + BLOCK] = 255 if (ms >> bit) & 1 else 0
    return frame.tobytes()


def read(gray: np.ndarray) -> int:
    y = BLOCK // 2
    return sum(1 << bit for bit in range(BITS) if gray[y, bit * BLOCK + BLOCK // 2] > 128)


def source(url: str, seconds: float, stop_event: threading.Event) -> None:
    """Real-time frames with the clock in them, into ffmpeg, out as RTMP."""
    proc = subprocess.Popen(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-s",
            f"{WIDTH}x{HEIGHT}",
            "-r",
            str(FPS),
            "-i",
            "pipe:0",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            str(FPS),
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            "-f",
            "flv",
            url,
        ],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    start = time.monotonic()
    frame = 0
    while not stop_event.is_set() and time.monotonic() - start < seconds:
        due = start + frame / FPS
        time.sleep(max(0.0, due - time.monotonic()))
        proc.stdin.write(draw(now_ms()))
        proc.stdin.flush()
        frame += 1
    proc.stdin.close()
    proc.wait(10)


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
            samples.append(now_ms() - read(frame.to_ndarray(format="gray")))


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
        samples.append(now_ms() - read(frame.to_ndarray(format="gray")))
    await pc.close()
    return samples


def summary(name: str, samples: list[int]) -> list[Any]:
    good = sorted(s for s in samples if 0 <= s < 60_000)  # drop undecodable blocks
    if not good:
        return [name, 0, "-", "-", "-"]
    return [name, len(good), statistics.median(good), good[int(len(good) * 0.95) - 1], good[-1]]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with temp_dir() as tmp:
        rtmp_port = free_port()
        config = write_config(tmp, f"rtmp: {{enabled: true, host: 127.0.0.1, port: {rtmp_port}}}\n")
        config.write_text(config.read_text().replace("rtmp: {enabled: false}\n", ""))
        node = start_node(config)
        stop_event = threading.Event()
        try:
            (key,) = await syncstream_keys(node.url, 1)
            pusher = threading.Thread(
                target=source,
                args=(f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", args.seconds + 15, stop_event),
                daemon=True,
            )
            pusher.start()
            await asyncio.sleep(3)
            base = f"{node.url}/live/bench0"
            hls, whep = await asyncio.gather(
                hls_viewer(base, args.seconds), whep_viewer(base, args.seconds)
            )
        finally:
            stop_event.set()
            stop(node.proc)
    rows = [
        ["viewer", "frames", "p50 ms", "p95 ms", "max ms"],
        summary("LL-HLS", hls),
        summary("WHEP", whep),
    ]
    print(table(rows))
    save("latency", {"args": vars(args), "hls_ms": hls, "whep_ms": whep})


if __name__ == "__main__":
    asyncio.run(main())
