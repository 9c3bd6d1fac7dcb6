"""One relay per live stream: packets are converted once and fanned out to every viewer.

Video is passed through (AVCC -> Annex-B, SPS/PPS before each keyframe): aiortc's senders
only packetise ``av.Packet``s, they do not re-encode. Viewers without H.264 get VP8 from one
transcoder per stream (:mod:`.vp8`). Audio is AAC in RTMP and must be Opus in
WebRTC: one transcoder thread per stream makes it, whatever the number of viewers. Each viewer
has a small bounded queue; a viewer that falls behind loses non-key frames and resumes at the
next keyframe, without slowing anyone else. A new viewer starts at the next keyframe (in
passthrough the server cannot make one): a 1-2 s keyframe interval keeps that short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from ...ids import new_id
from ..readers import PacketCopy, QueuedReader
from .h264 import START_CODE, parse_avc_config, to_annexb
from .packet_track import PacketTrack
from .vp8 import Vp8Transcoder

Packet = Any  # av.Packet (typed loosely: PyAV's stubs make it generic)
OPUS_RATE = 48000


class Viewer:
    def __init__(self, pc: Any, video_codec: str = "h264") -> None:
        self.id = new_id()
        self.pc = pc
        self.video_codec = video_codec  # "h264" (passthrough) or "vp8" (transcoded)
        self.video = PacketTrack("video")
        self.audio = PacketTrack("audio")


class OpusTranscoder(QueuedReader):
    """AAC packets in, Opus packets out (on its own thread), once per stream."""

    name = "webrtc-audio"
    wants = ("audio",)

    def __init__(self, deliver: Callable[[Packet], None]) -> None:
        self.deliver = deliver
        self._decoder: Any = None
        self._config: bytes | None = None
        self._encoder: Any = None
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=OPUS_RATE)
        self._samples = 0
        super().__init__(maxsize=50)

    def handle(self, packet: PacketCopy) -> None:
        if self._decoder is None or packet.extradata != self._config:
            self._decoder = av.CodecContext.create("aac", "r")
            self._decoder.extradata = packet.extradata
            self._config = packet.extradata
        if self._encoder is None:
            self._encoder = av.CodecContext.create("libopus", "w")
            self._encoder.sample_rate = OPUS_RATE
            self._encoder.layout = "stereo"
            self._encoder.format = "s16"
            self._encoder.time_base = Fraction(1, OPUS_RATE)
            self._encoder.bit_rate = 96_000
        source = av.Packet(packet.data)
        source.pts, source.dts, source.time_base = packet.pts, packet.dts, packet.time_base
        for frame in self._decoder.decode(source):
            for resampled in self._resampler.resample(frame):
                resampled.pts, resampled.time_base = self._samples, Fraction(1, OPUS_RATE)
                self._samples += resampled.samples
                for out in self._encoder.encode(resampled):
                    self.deliver(out)


class WebRtcRelay:
    """The per-stream converter and fan-out; an inline reader of the ingest pipeline."""

    name = "webrtc"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.viewers: dict[str, Viewer] = {}
        self._transcoder: OpusTranscoder | None = None
        self._vp8: Vp8Transcoder | None = None
        self._config: bytes | None = None
        self._prefix = b""
        self._length_size = 4

    @property
    def dropped(self) -> int:
        return sum(v.video.dropped + v.audio.dropped for v in self.viewers.values())

    def accepts(self, kind: str, keyframe: bool) -> bool:
        return bool(self.viewers)

    def add(self, viewer: Viewer) -> None:
        """A viewer joins; a VP8 one starts (or wakes) the stream's VP8 transcoder."""
        self.viewers[viewer.id] = viewer
        if viewer.video_codec == "vp8":
            if self._vp8 is None:
                self._vp8 = Vp8Transcoder(self._vp8_from_thread)
            self._vp8.request_keyframe()

    def offer(self, packet: PacketCopy) -> None:
        if packet.kind == "audio":
            if self._transcoder is None:
                self._transcoder = OpusTranscoder(self._from_thread)
            self._transcoder.offer(packet)
            return
        if self._vp8 is not None and any(v.video_codec == "vp8" for v in self.viewers.values()):
            self._vp8.offer(packet)
        if packet.extradata and packet.extradata != self._config:
            units, self._length_size = parse_avc_config(packet.extradata)
            self._prefix = b"".join(START_CODE + u for u in units)
            self._config = packet.extradata
        data = to_annexb(packet.data, self._length_size)
        if packet.keyframe:
            data = self._prefix + data
        out = av.Packet(data)
        out.pts, out.dts, out.time_base = packet.pts, packet.dts, packet.time_base
        for viewer in self.viewers.values():
            if viewer.video_codec == "h264":
                viewer.video.push(out, packet.keyframe)

    def _from_thread(self, packet: Packet) -> None:
        self.loop.call_soon_threadsafe(self._push_audio, packet)

    def _push_audio(self, packet: Packet) -> None:
        for viewer in self.viewers.values():
            viewer.audio.push(packet, True)

    def _vp8_from_thread(self, packet: Packet, keyframe: bool) -> None:
        self.loop.call_soon_threadsafe(self._push_vp8, packet, keyframe)

    def _push_vp8(self, packet: Packet, keyframe: bool) -> None:
        for viewer in self.viewers.values():
            if viewer.video_codec == "vp8":
                viewer.video.push(packet, keyframe)

    def close(self) -> None:
        for transcoder in (self._transcoder, self._vp8):
            if transcoder is not None:
                transcoder.close()
        self._transcoder = self._vp8 = None
