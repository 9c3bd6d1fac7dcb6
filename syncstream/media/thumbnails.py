"""Live snapshots: decode one keyframe every N seconds and encode it as a JPEG."""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from .readers import PacketCopy, QueuedReader

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


class ThumbnailReader(QueuedReader):
    """Keeps a fresh JPEG of the stream; only keyframes are queued, and only one at a time."""

    name = "thumbnails"
    wants = ("video",)
    keyframes_only = True

    def __init__(self, every: float, width: int, publish: Callable[[bytes], None]) -> None:
        self.every = every
        self.width = width
        self.publish = publish
        self._last = 0.0
        super().__init__(maxsize=1)

    def accepts(self, kind: str, keyframe: bool) -> bool:
        return super().accepts(kind, keyframe) and time.monotonic() - self._last >= self.every

    def handle(self, packet: PacketCopy) -> None:
        self._last = time.monotonic()
        self.publish(keyframe_to_jpeg(packet, self.width))
