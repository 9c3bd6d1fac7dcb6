"""H.264 -> VP8 for WebRTC viewers whose browser offers no H.264 (once per stream).

Passthrough is the rule; a viewer that cannot take H.264 (Firefox without OpenH264, some
embedded WebViews) gets VP8 made by one transcoder thread per stream, however many such
viewers there are: decode once, encode once (libvpx in real-time mode), and every VP8 sender
packetises the same packets. The encoder follows the source's keyframes and makes one at
once when a new VP8 viewer joins, so nobody waits for the next source keyframe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from ..readers import PacketCopy, QueuedReader
from ..thumbnails import MAX_PIXELS

VIDEO_RATE = 90000
DEFAULT_BITRATE = 2_500_000


class Vp8Transcoder(QueuedReader):
    """H.264 packets in, VP8 packets out (``deliver(packet, keyframe)``) on its own thread."""

    name = "webrtc-vp8"
    wants = ("video",)

    def __init__(
        self, deliver: Callable[[Any, bool], None], bitrate: int = DEFAULT_BITRATE
    ) -> None:
        self.deliver = deliver
        self.bitrate = bitrate
        self._decoder: Any = None
        self._config: bytes | None = None
        self._encoder: Any = None
        self._keyframe = threading.Event()
        self._waiting = True  # decode only from a keyframe on (after a start or a drop)
        self._seen_drops = 0
        super().__init__(maxsize=60)

    def request_keyframe(self) -> None:
        """The next picture out is a keyframe (a viewer joined)."""
        self._keyframe.set()

    def handle(self, packet: PacketCopy) -> None:
        if self.dropped != self._seen_drops:  # frames were lost: the next ones cannot decode
            self._seen_drops = self.dropped
            self._waiting = True
        if self._waiting and not packet.keyframe:
            return
        self._waiting = False
        if self._decoder is None or packet.extradata != self._config:
            self._decoder = av.CodecContext.create("h264", "r")
            self._decoder.extradata = packet.extradata
            self._decoder.thread_count = 1
            self._decoder.options = {"max_pixels": str(MAX_PIXELS)}  # no gigapixel frames
            self._config = packet.extradata
        source = av.Packet(packet.data)
        source.pts, source.dts, source.time_base = packet.pts, packet.dts, packet.time_base
        try:
            frames = self._decoder.decode(source)
        except av.FFmpegError:
            self._waiting = True
            return
        for frame in frames:
            self._encode(frame, packet)

    def _encode(self, frame: Any, packet: PacketCopy) -> None:
        if (
            self._encoder is None
            or frame.width != self._encoder.width
            or frame.height != self._encoder.height
        ):
            self._encoder = self._new_encoder(frame.width, frame.height)
        pts = packet.pts if packet.pts is not None else packet.dts
        frame.pts = int((pts or 0) * packet.time_base * VIDEO_RATE)
        frame.time_base = Fraction(1, VIDEO_RATE)
        key = packet.keyframe or self._keyframe.is_set()
        self._keyframe.clear()
        frame.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
        for out in self._encoder.encode(frame):
            out.time_base = Fraction(1, VIDEO_RATE)
            self.deliver(out, bool(out.is_keyframe))

    def _new_encoder(self, width: int, height: int) -> Any:
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, VIDEO_RATE)
        encoder.bit_rate = self.bitrate
        encoder.gop_size = 3000  # keyframes come from the source or a joining viewer
        encoder.thread_count = 2
        encoder.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "error-resilient": "1",
        }
        return encoder
