"""Live snapshots: the stream's latest keyframe, decoded to a JPEG when someone asks for it.

Decoding a 720p keyframe costs ~5 ms of CPU; doing it every few seconds for every stream, watched
or not, was a sizeable share of what an ingested stream cost. The pipeline only hands over each
keyframe (a reference, no work); a request decodes the newest one on a worker thread, at most
once per ``every`` seconds per stream, and the JPEG is shared until then.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

import av
import structlog

from .readers import PacketCopy

log = structlog.get_logger(__name__)

# The largest live picture the server decodes (DCI 8K), for thumbnails and the VP8 transcoder:
# the decoder refuses larger ones before allocating them, so a publisher cannot make the
# server decode gigapixel frames.
MAX_PIXELS = 8192 * 4320


def keyframe_to_jpeg(packet: PacketCopy, width: int, max_pixels: int = MAX_PIXELS) -> bytes:
    """Decode a single keyframe with a fresh decoder and encode it as a JPEG ``width`` wide."""
    decoder: Any = av.CodecContext.create(packet.codec, "r")
    decoder.thread_count = 1
    decoder.options = {"max_pixels": str(max_pixels)}
    if packet.extradata:
        decoder.extradata = packet.extradata
    copy = av.Packet(packet.data)
    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
    frames = decoder.decode(copy) or decoder.decode(None)
    if not frames:
        raise ValueError("the keyframe decoded to no picture")
    frame = frames[0]
    width = min(width, frame.width) // 2 * 2
    height = max(2, round(frame.height * width / frame.width) // 2 * 2)
    encoder: Any = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.thread_count = 1
    scaled = frame.reformat(width=width, height=height, format="yuvj420p")
    return b"".join(bytes(p) for p in encoder.encode(scaled))


class Snapshots:
    """A stream's snapshot: an inline reader of the pipeline that keeps the newest keyframe."""

    name = "thumbnails"
    dropped = 0

    def __init__(self, every: float, width: int) -> None:
        self.every = every
        self.width = width
        self._keyframe: PacketCopy | None = None
        self._jpeg: bytes | None = None
        self._made_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def available(self) -> bool:
        return self._jpeg is not None or self._keyframe is not None

    def accepts(self, kind: str, keyframe: bool) -> bool:
        return keyframe and kind == "video"

    def offer(self, packet: PacketCopy) -> None:
        self._keyframe = packet

    def close(self) -> None:
        return None  # the last picture stays until the stream is gone

    async def jpeg(self) -> bytes | None:
        """The snapshot, made from the newest keyframe if the last one is ``every`` s old."""
        async with self._lock:  # concurrent requests share one decode
            stale = self._jpeg is None or time.monotonic() - self._made_at >= self.every
            if stale and self._keyframe is not None:
                packet, self._keyframe = self._keyframe, None
                try:
                    self._jpeg = await asyncio.to_thread(keyframe_to_jpeg, packet, self.width)
                    self._made_at = time.monotonic()
                except (av.FFmpegError, ValueError) as exc:
                    log.warning("thumbnail.failed", error=f"{type(exc).__name__}: {exc}")
            return self._jpeg
