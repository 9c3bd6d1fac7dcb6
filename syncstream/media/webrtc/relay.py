"""One relay per live stream: packets are converted once and fanned out to every viewer.

Video is passed through (AVCC -> Annex-B, SPS/PPS before each keyframe): aiortc's senders
only packetise ``av.Packet``s, they do not re-encode. Viewers without H.264 get VP8, and
viewers of a source with B-frames get H.264 without them, each from one transcoder per stream
that runs while it has viewers (:mod:`.transcode`). Audio is AAC in RTMP and must be Opus in
WebRTC: one transcoder thread per stream makes it, whatever the number of viewers. Each viewer
has a small bounded queue; a viewer that falls behind loses non-key frames and resumes at the
next keyframe, without slowing anyone else. A new viewer starts at the next keyframe (in
passthrough the server cannot make one, a transcoder makes one at once): a 1-2 s keyframe
interval keeps that short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
from functools import partial
from typing import Any

import av

from ...ids import new_id
from ..readers import PacketCopy, QueuedReader
from .h264 import START_CODE, parse_avc_config, to_annexb
from .packet_track import PacketTrack
from .transcode import H264Transcoder, VideoTranscoder, Vp8Transcoder

Packet = Any  # av.Packet (typed loosely: PyAV's stubs make it generic)
OPUS_RATE = 48000
TRANSCODERS: dict[str, type[VideoTranscoder]] = {"h264": H264Transcoder, "vp8": Vp8Transcoder}


class Viewer:
    def __init__(self, pc: Any, video_codec: str = "h264") -> None:
        self.id = new_id()
        self.pc = pc
        self.video_codec = video_codec  # what the browser takes: "h264" or "vp8" (a transcode)
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
    """The per-stream converter and fan-out; an inline reader of the ingest pipeline.

    ``bframes`` tells whether the source has B-frames (the ingest saw composition offsets):
    then H.264 viewers get the shared re-encode instead of passthrough.
    """

    name = "webrtc"

    def __init__(self, loop: asyncio.AbstractEventLoop, bframes: Callable[[], bool]) -> None:
        self.loop = loop
        self.bframes = bframes
        self.viewers: dict[str, Viewer] = {}
        self._transcoder: OpusTranscoder | None = None
        self._video: dict[str, VideoTranscoder] = {}  # viewers' codec -> its running transcode
        self._config: bytes | None = None
        self._prefix = b""
        self._length_size = 4

    @property
    def dropped(self) -> int:
        return sum(v.video.dropped + v.audio.dropped for v in self.viewers.values())

    def accepts(self, kind: str, keyframe: bool) -> bool:
        return bool(self.viewers)

    def transcoded(self, codec: str) -> bool:
        """Whether viewers taking ``codec`` need a re-encode (else: passthrough)."""
        return codec != "h264" or self.bframes()

    def add(self, viewer: Viewer) -> None:
        """A viewer joins; one that needs a re-encode starts (or wakes) the shared one."""
        self.viewers[viewer.id] = viewer
        if self.transcoded(viewer.video_codec):
            self._video_transcoder(viewer.video_codec).request_keyframe()

    def remove(self, viewer_id: str) -> Viewer | None:
        """A viewer leaves; the last one of a codec stops its transcode (the last of all,
        the audio one)."""
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return None
        if not any(v.video_codec == viewer.video_codec for v in self.viewers.values()):
            transcoder = self._video.pop(viewer.video_codec, None)
            if transcoder is not None:
                transcoder.close()
        if not self.viewers and self._transcoder is not None:
            self._transcoder.close()
            self._transcoder = None
        return viewer

    def _video_transcoder(self, codec: str) -> VideoTranscoder:
        if codec not in self._video:
            self._video[codec] = self._start_transcoder(codec)
        return self._video[codec]

    def _start_transcoder(self, codec: str) -> VideoTranscoder:
        transcoder: VideoTranscoder

        def deliver(packet: Packet, keyframe: bool) -> None:  # on the transcoder's thread
            self._from_thread(self._push_video, codec, transcoder, packet, keyframe)

        transcoder = TRANSCODERS[codec](deliver)
        return transcoder

    def offer(self, packet: PacketCopy) -> None:
        if packet.kind == "audio":
            if self._transcoder is None:
                self._transcoder = OpusTranscoder(partial(self._from_thread, self._push_audio))
            self._transcoder.offer(packet)
            return
        codecs = {v.video_codec for v in self.viewers.values()}
        for codec in codecs:
            if self.transcoded(codec):
                self._video_transcoder(codec).offer(packet)
        if "h264" in codecs and not self.transcoded("h264"):
            self._pass_through(packet)

    def _pass_through(self, packet: PacketCopy) -> None:
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

    def _from_thread(self, push: Callable[..., None], *args: Any) -> None:
        """Hand a transcoder's output to the loop (unless the server has stopped)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(push, *args)

    def _push_audio(self, packet: Packet) -> None:
        for viewer in self.viewers.values():
            viewer.audio.push(packet, True)

    def _push_video(
        self, codec: str, transcoder: VideoTranscoder, packet: Packet, keyframe: bool
    ) -> None:
        if self._video.get(codec) is not transcoder:
            return  # stopped meanwhile: what it still made goes nowhere
        for viewer in self.viewers.values():
            if viewer.video_codec == codec:
                viewer.video.push(packet, keyframe)

    def close(self) -> None:
        for transcoder in (self._transcoder, *self._video.values()):
            if transcoder is not None:
                transcoder.close()
        self._transcoder = None
        self._video = {}
