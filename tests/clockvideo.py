"""A publisher with the wall clock burned into every frame, and the readers of that clock.

Each frame carries the time it was made (the low 24 bits of Unix ms: wraps every 4.6 h) as
black/white blocks along its top edge. Whoever decodes a frame reads the time back:
latency = now - stamp covers encoding, ingest, packaging, delivery, decoding and (in a
browser, read in ``requestVideoFrameCallback``) presentation. The source is encoded by
ffmpeg's x264 like OBS does it: with B-frames (``bframes=2``, preset veryfast) or without
(``bframes=0``, ``-tune zerolatency``), AAC at 48 kHz beside it.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from types import TracebackType

import numpy as np

WIDTH, HEIGHT, FPS = 640, 360, 30
BITS, BLOCK = 24, 20  # 24 blocks of 20 px along the top: 480 px
MODULO = 1 << BITS


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def draw(ms: int, index: int) -> bytes:
    """One gray frame: the clock's blocks on top, a moving bar below (something to encode)."""
    frame = np.full((HEIGHT, WIDTH), 96, dtype=np.uint8)
    x = (index * 8) % WIDTH
    frame[BLOCK * 2 :, x : x + 40] = 200
    for bit in range(BITS):
        left = bit * BLOCK
        frame[0:BLOCK, left : left + BLOCK] = 255 if (ms >> bit) & 1 else 0
    return frame.tobytes()


def read(gray: np.ndarray) -> int:
    """The stamp of a decoded frame (a 2-D array of luma)."""
    y = BLOCK // 2
    return sum(1 << bit for bit in range(BITS) if gray[y, bit * BLOCK + BLOCK // 2] > 128)


def latency_ms(now: int, stamp: int) -> int:
    return (now - stamp) % MODULO


def x264_args(bframes: int) -> list[str]:
    if bframes:  # OBS's x264 defaults: veryfast, High profile, B-frames, lookahead
        return ["-preset", "veryfast", "-profile:v", "high", "-bf", str(bframes)]
    return ["-preset", "veryfast", "-tune", "zerolatency", "-bf", "0"]


class ClockPublisher:
    """ffmpeg publishing RTMP from frames a thread makes in real time (``with`` stops it)."""

    def __init__(self, url: str, bframes: int, seconds: float, gop: int = FPS) -> None:
        self.seconds = seconds
        self._stop = threading.Event()
        self.proc = subprocess.Popen(
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
                *x264_args(bframes),
                "-g",
                str(gop),
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-ar",
                "48000",
                "-b:a",
                "64k",
                "-shortest",
                "-f",
                "flv",
                url,
            ],
            stdin=subprocess.PIPE,
        )
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        start = time.monotonic()
        index = 0
        with contextlib.suppress(BrokenPipeError, ValueError):  # ffmpeg is gone: stop
            while not self._stop.is_set() and time.monotonic() - start < self.seconds:
                time.sleep(max(0.0, start + index / FPS - time.monotonic()))
                stdin.write(draw(now_ms(), index))
                stdin.flush()
                index += 1
        with contextlib.suppress(BrokenPipeError):
            stdin.close()

    def stop(self) -> None:
        """Stop at once (killing ffmpeg: a test's server may share this thread's loop)."""
        self._stop.set()
        self.proc.kill()
        self.proc.wait()
        self._thread.join(10)

    def __enter__(self) -> ClockPublisher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class Playback:
    """What a player presented over a window: its frame rate and the clock's latency."""

    frames: int
    fps: float
    p50_ms: float
    min_ms: float
    max_ms: float

    def __str__(self) -> str:
        return (
            f"{self.frames} frames, {self.fps:.1f} fps presented, latency p50 {self.p50_ms:.0f}"
            f" ms (min {self.min_ms:.0f}, max {self.max_ms:.0f})"
        )


def playback(rows: list[tuple[float, int, int]]) -> Playback:
    """Summarise (wall ms at display, stamp, presentedFrames) rows of one player."""
    if len(rows) < 2:
        return Playback(len(rows), 0.0, float("nan"), float("nan"), float("nan"))
    seconds = (rows[-1][0] - rows[0][0]) / 1000
    fps = (rows[-1][2] - rows[0][2]) / seconds if seconds > 0 else 0.0
    # Blocks misread in a damaged picture give absurd figures: keep the plausible ones.
    latencies = sorted(x for w, s, _ in rows if (x := latency_ms(int(w), s)) < 60_000)
    if not latencies:
        return Playback(len(rows), fps, float("nan"), float("nan"), float("nan"))
    return Playback(len(rows), fps, statistics.median(latencies), latencies[0], latencies[-1])
