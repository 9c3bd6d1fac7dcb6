"""Shared video transcodes for WebRTC viewers that cannot take the source as it is.

Passthrough is the rule. Two kinds of viewer need the picture re-encoded, once per stream
however many of them there are (decode once, encode once, every sender packetises the same
packets):

- a browser that offers no H.264 (Firefox without OpenH264, some WebViews) gets VP8
  (:class:`Vp8Transcoder`, libvpx in real-time mode);
- any viewer of a source with B-frames gets H.264 without them (:class:`H264Transcoder`,
  libx264 ``zerolatency`` in the constrained-baseline profile): browsers' WebRTC H.264 has
  no B-frames, and Chromium fed a stream with them presents about one picture a second.

The encoder follows the source's keyframes and makes one at once when a viewer joins, so
nobody waits for the next source keyframe. A transcoder runs only while it has viewers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import structlog

from ..readers import PacketCopy, QueuedReader

log = structlog.get_logger(__name__)

VIDEO_RATE = 90000
DEFAULT_FPS = 30  # when the source's SPS carries no frame rate
BITS_PER_PIXEL = 0.1  # target bitrate per pixel and frame, bounded below
MIN_BITRATE, MAX_BITRATE = 300_000, 8_000_000
MAX_PIXELS = 3840 * 2160  # larger pictures are not re-encoded (a publisher cannot buy our CPU)
# x264 presets by pixel rate, so a re-encode keeps up in real time on one or two cores
# (1080p60 on this machine: veryfast 0.6 s of CPU per s of media, ultrafast 0.24).
X264_PRESETS = ((1280 * 720 * 30, "veryfast"), (1920 * 1080 * 30, "superfast"))


def x264_preset(pixel_rate: float) -> str:
    return next((name for limit, name in X264_PRESETS if pixel_rate <= limit), "ultrafast")


def target_bitrate(width: int, height: int, fps: float) -> int:
    """A bitrate for a real-time re-encode of this size: ~0.7 Mbit/s at 360p30, 6 at 1080p30."""
    return int(min(MAX_BITRATE, max(MIN_BITRATE, width * height * fps * BITS_PER_PIXEL)))


class VideoTranscoder(QueuedReader):
    """H.264 packets in, packets of another encoding out (``deliver(packet, keyframe)``), on
    its own thread. Subclasses say which encoder (:meth:`new_encoder`)."""

    name = "webrtc-video"
    wants = ("video",)

    def __init__(self, deliver: Callable[[Any, bool], None]) -> None:
        self.deliver = deliver
        self._decoder: Any = None
        self._config: bytes | None = None
        self._encoder: Any = None
        self._keyframe = threading.Event()
        self._waiting = True  # decode only from a keyframe on (after a start or a drop)
        self._seen_drops = 0
        self._too_large = False
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
            # A picture over the limit is refused by the decoder, before it takes the memory.
            self._decoder.options = {"max_pixels": str(MAX_PIXELS)}
            self._config = packet.extradata
        source = av.Packet(packet.data)
        source.pts, source.dts, source.time_base = packet.pts, packet.dts, packet.time_base
        try:
            frames = self._decoder.decode(source)
        except av.FFmpegError:
            self._waiting = True
            return
        for frame in frames:  # in presentation order: with B-frames, not this packet's picture
            self._encode(frame, packet.time_base)

    def _encode(self, frame: Any, time_base: Fraction) -> None:
        if frame.width * frame.height > MAX_PIXELS:
            if not self._too_large:
                log.warning("webrtc.too_large", width=frame.width, height=frame.height)
            self._too_large = True
            return
        if (
            self._encoder is None
            or frame.width != self._encoder.width
            or frame.height != self._encoder.height
        ):
            rate = self._decoder.framerate
            fps = Fraction(rate) if rate and rate > 0 else Fraction(DEFAULT_FPS)
            self._encoder = self.new_encoder(frame.width, frame.height, fps)
        frame.pts = int((frame.pts or 0) * time_base * VIDEO_RATE)
        frame.time_base = Fraction(1, VIDEO_RATE)
        key = frame.key_frame or self._keyframe.is_set()
        self._keyframe.clear()
        frame.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
        for out in self._encoder.encode(frame):
            out.time_base = Fraction(1, VIDEO_RATE)
            self.deliver(out, bool(out.is_keyframe))

    def new_encoder(self, width: int, height: int, fps: Fraction) -> Any:
        raise NotImplementedError

    @staticmethod
    def base_encoder(codec: str, width: int, height: int, fps: Fraction) -> Any:
        """An encoder context with what every real-time transcode shares."""
        encoder: Any = av.CodecContext.create(codec, "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, VIDEO_RATE)
        encoder.framerate = fps  # rate control budgets per frame from it
        encoder.bit_rate = target_bitrate(width, height, float(fps))
        encoder.gop_size = 3000  # keyframes come from the source or a joining viewer
        encoder.thread_count = 2
        return encoder


class Vp8Transcoder(VideoTranscoder):
    """VP8 for viewers whose browser offers no H.264."""

    name = "webrtc-vp8"

    def new_encoder(self, width: int, height: int, fps: Fraction) -> Any:
        encoder = self.base_encoder("libvpx", width, height, fps)
        encoder.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "error-resilient": "1",
        }
        return encoder


class H264Transcoder(VideoTranscoder):
    """H.264 without B-frames (constrained baseline) for viewers of a source that has them."""

    name = "webrtc-h264"

    def new_encoder(self, width: int, height: int, fps: Fraction) -> Any:
        encoder = self.base_encoder("libx264", width, height, fps)
        encoder.max_b_frames = 0
        encoder.options = {
            "preset": x264_preset(float(width * height * fps)),
            "tune": "zerolatency",  # no lookahead, no frame delay: one picture in, one out
            "profile": "baseline",  # what every browser's WebRTC H.264 decodes
            "forced-idr": "1",  # a requested keyframe is an IDR a new decoder can start at
            "x264-params": "scenecut=0",  # keyframes only from the source or a joining viewer
        }
        return encoder
