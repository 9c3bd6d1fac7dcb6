"""The packet pipeline of one publish session: FLV audio/video tags in, fMP4 fragments out.

Nothing is decoded or re-encoded. FLV carries H.264 in the same length-prefixed (AVCC) form
as MP4 and AAC as raw frames, so each tag becomes one access unit as it arrives and a muxer
writes the fragments (the LL-HLS parts): our own fMP4 writer (:mod:`.fragmenter`, ``live.muxer:
native``) or PyAV's mp4 muxer (:mod:`.pyav_muxer`, ``pyav``). Only the codec configuration
needs FFmpeg's help: when the sequence headers arrive, a few tags are run through PyAV's FLV
demuxer once to describe the tracks (dimensions, channels; PyAV's muxer takes its streams from
it too).

Muxing runs inline on the event loop (a few µs per access unit, less than handing it to a
thread would cost); anything slower (a transcoder, say) is a :class:`QueuedReader`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Protocol

import av
import structlog

from .fmp4 import Fragment
from .fragmenter import AccessUnit, Fragmenter
from .mp4write import AudioParams, VideoParams
from .pyav_muxer import PyavMuxer
from .readers import PacketCopy, Reader
from .rtmp.aac import AudioConfig, AudioConfigError, parse_audio_config

log = structlog.get_logger(__name__)

TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT = 8, 9, 18
CODEC_AVC, SOUND_AAC = 7, 10
MS = Fraction(1, 1000)
FLV_HEADER = b"FLV\x01\x05\x00\x00\x00\x09" + bytes(4)
AUDIO_WAIT_MS = 1000  # how long a stream with video waits for an audio configuration


class MediaError(Exception):
    """The publisher sent media we cannot carry (the session ends with this reason)."""


def flv_tag(tag_type: int, timestamp: int, payload: bytes) -> bytes:
    """One FLV tag plus its trailing PreviousTagSize."""
    header = bytes([tag_type]) + len(payload).to_bytes(3, "big")
    header += (timestamp & 0xFFFFFF).to_bytes(3, "big") + bytes([(timestamp >> 24) & 0xFF])
    return header + b"\x00\x00\x00" + payload + struct.pack(">I", 11 + len(payload))


@dataclass
class TrackInfo:
    kind: str
    codec: str
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    bframes: bool | None = None  # video: reordered frames (WebRTC viewers get a re-encode)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class IngestCallbacks:
    on_tracks: Callable[[list[TrackInfo]], None]
    on_init: Callable[[bytes], None]
    on_fragment: Callable[[Fragment], None]


def _ignore(_: Any) -> None:
    return None


DETACHED = IngestCallbacks(_ignore, _ignore, _ignore)  # what a finished ingest calls


MuxerName = Literal["native", "pyav"]


class Muxer(Protocol):
    """Writes a session's access units as fMP4 (init section, then fragments)."""

    def write(self, unit: AccessUnit) -> None: ...

    def close(self) -> None: ...


@dataclass
class Ingest:
    """Turns one publisher's FLV tags into fMP4 fragments and feeds the secondary readers."""

    callbacks: IngestCallbacks
    part_seconds: float
    readers: list[Reader] = field(default_factory=list)
    muxer: MuxerName = "native"
    avc_config: bytes | None = None
    aac_config: bytes | None = None
    audio: AudioConfig | None = None  # what ``aac_config`` says
    dropped: int = 0
    bframes: bool = False  # a video tag had a composition offset (pts != dts): B-frames
    _tracks: list[TrackInfo] = field(default_factory=list)
    _waiting: list[AccessUnit] = field(default_factory=list)
    _muxer: Muxer | None = None
    _last_dts: dict[str, int] = field(default_factory=dict)

    def write(self, tag_type: int, timestamp: int, payload: bytes) -> None:
        """Take one FLV tag; raises :class:`MediaError` for media that cannot be carried."""
        if tag_type == TAG_VIDEO and len(payload) >= 5:
            self._video(timestamp, payload)
        elif tag_type == TAG_AUDIO and len(payload) >= 2:
            self._audio(timestamp, payload)

    def _video(self, timestamp: int, payload: bytes) -> None:
        codec = payload[0] & 0x0F
        if codec != CODEC_AVC:
            raise MediaError(f"video codec id {codec} is not supported; send H.264")
        packet_type = payload[1]
        if packet_type == 0:
            self._configure(avc=payload[5:])
        elif packet_type == 1:
            cts = int.from_bytes(payload[2:5], "big", signed=True)
            if cts and not self.bframes:
                self.bframes = True
                for track in self._tracks:
                    if track.kind == "video":
                        track.bframes = True
            keyframe = payload[0] >> 4 == 1
            self._frame(AccessUnit("video", timestamp, timestamp + cts, keyframe, payload[5:]))

    def _audio(self, timestamp: int, payload: bytes) -> None:
        sound = payload[0] >> 4
        if sound != SOUND_AAC:
            raise MediaError(f"audio format {sound} is not supported; send AAC")
        if payload[1] == 0:
            try:
                self.audio = parse_audio_config(payload[2:])
            except AudioConfigError as exc:
                raise MediaError(f"unusable AAC configuration: {exc}") from exc
            self._configure(aac=payload[2:])
        else:
            self._frame(AccessUnit("audio", timestamp, timestamp, True, payload[2:]))

    def _configure(self, avc: bytes | None = None, aac: bytes | None = None) -> None:
        changed = (avc is not None and avc != self.avc_config) or (
            aac is not None and aac != self.aac_config
        )
        if avc is not None and avc != self.avc_config:
            self.bframes = False  # a new encoder configuration: look again
        self.avc_config = avc if avc is not None else self.avc_config
        self.aac_config = aac if aac is not None else self.aac_config
        if changed and self._muxer is not None:
            self.close()  # a new configuration starts a new init section (a discontinuity)

    def _frame(self, frame: AccessUnit) -> None:
        if self._muxer is None:
            if not self._ready(frame):
                return
            self._start(frame)
        self._mux(frame)

    def _ready(self, frame: AccessUnit) -> bool:
        """Whether the muxer can start: configurations known and a keyframe to start on."""
        self._waiting.append(frame)
        if self.avc_config is None:
            if frame.kind == "audio" and self.aac_config is not None:
                # Audio only, unless video shows up soon.
                return frame.dts - self._waiting[0].dts >= AUDIO_WAIT_MS
            return False
        first_key = next((f for f in self._waiting if f.kind == "video" and f.keyframe), None)
        if first_key is None:
            self._waiting = [f for f in self._waiting if f.kind == "audio"][-50:]
            return False
        return self.aac_config is not None or frame.dts - first_key.dts >= AUDIO_WAIT_MS

    def _start(self, trigger: AccessUnit) -> None:
        waiting, self._waiting = self._waiting, []
        waiting.remove(trigger)
        templates = open_templates(self.avc_config, self.aac_config, [*waiting, trigger])
        streams = [s for s in templates.streams if s.type in ("video", "audio")]
        self._tracks = [describe(s, self.bframes) for s in streams]
        for track in self._tracks:
            if track.kind == "audio" and self.audio is not None:
                # FFmpeg's FLV demuxer takes the rate from the tag flags (always 44.1 kHz for
                # AAC) until it has decoded audio; the AudioSpecificConfig is the truth.
                track.sample_rate = self.audio.sample_rate
                track.channels = self.audio.channels or track.channels
        self.callbacks.on_tracks(self._tracks)
        on_init, on_fragment = self.callbacks.on_init, self.callbacks.on_fragment
        if self.muxer == "pyav":
            self._muxer = PyavMuxer(templates, self.audio, self.part_seconds, on_init, on_fragment)
        else:
            video, audio = self._params()
            self._muxer = Fragmenter(video, audio, self.part_seconds, on_init, on_fragment)
        templates.close()
        self._last_dts = {}
        start = next((i for i, f in enumerate(waiting) if f.kind == "video" and f.keyframe), 0)
        for frame in waiting[start:]:
            self._mux(frame)

    def _params(self) -> tuple[VideoParams | None, AudioParams | None]:
        """The tracks' codec parameters for our own fMP4 writer (track ids in track order)."""
        video = audio = None
        for track_id, track in enumerate(self._tracks, 1):
            if track.kind == "video" and self.avc_config is not None:
                video = VideoParams(track_id, self.avc_config, track.width or 0, track.height or 0)
            elif track.kind == "audio" and self.aac_config is not None and track.sample_rate:
                audio = AudioParams(
                    track_id, self.aac_config, track.sample_rate, track.channels or 2
                )
        return video, audio

    def _mux(self, frame: AccessUnit) -> None:
        if frame.dts <= self._last_dts.get(frame.kind, -1):
            self.dropped += 1  # DTS must grow; a publisher's glitch costs one frame
            return
        self._last_dts[frame.kind] = frame.dts
        config = self.avc_config if frame.kind == "video" else self.aac_config
        for reader in self.readers:
            if reader.accepts(frame.kind, frame.keyframe):
                reader.offer(
                    PacketCopy(
                        frame.kind,
                        "h264" if frame.kind == "video" else "aac",
                        config,
                        frame.data,
                        frame.pts,
                        frame.dts,
                        MS,
                        frame.keyframe,
                    )
                )
        self._muxer.write(frame)  # type: ignore[union-attr]  # set by _start

    def close(self) -> None:
        """Flush the last fragment; a later keyframe starts a new muxer (and init section)."""
        muxer, self._muxer = self._muxer, None
        if muxer is not None:
            muxer.close()

    def finish(self) -> None:
        """The publisher is gone: flush, stop the readers, and let go of the callbacks.

        The callbacks refer back to the publish session (which holds this ingest): dropping
        them lets reference counting free the session and its stream's media at once,
        instead of a cycle waiting for the garbage collector's next full sweep."""
        self.close()
        for reader in self.readers:
            reader.close()
        self.readers = []
        self.callbacks = DETACHED
        self._waiting = []


def open_templates(avc: bytes | None, aac: bytes | None, frames: list[AccessUnit]) -> Any:
    """Run the configuration (and the first frames) through PyAV's FLV demuxer once."""
    tags = [FLV_HEADER]
    if avc is not None:
        tags.append(flv_tag(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00" + avc))
    if aac is not None:
        tags.append(flv_tag(TAG_AUDIO, 0, b"\xaf\x00" + aac))
    for frame in frames[:30]:
        if frame.kind == "video":
            head = bytes([0x17 if frame.keyframe else 0x27, 1]) + (frame.pts - frame.dts).to_bytes(
                3, "big", signed=True
            )
            tags.append(flv_tag(TAG_VIDEO, frame.dts, head + frame.data))
        else:
            tags.append(flv_tag(TAG_AUDIO, frame.dts, b"\xaf\x01" + frame.data))
    try:
        container = av.open(io.BytesIO(b"".join(tags)), format="flv")
    except av.FFmpegError as exc:
        raise MediaError(f"the codec configuration is unreadable: {exc}") from exc
    if not any(s.type in ("video", "audio") for s in container.streams):
        container.close()
        raise MediaError("the stream carries neither audio nor video")
    return container


def describe(stream: Any, bframes: bool = False) -> TrackInfo:
    ctx = stream.codec_context
    if stream.type == "video":
        return TrackInfo(
            "video", ctx.name, width=ctx.width or None, height=ctx.height or None, bframes=bframes
        )
    return TrackInfo(
        "audio", ctx.name, sample_rate=ctx.sample_rate or None, channels=ctx.channels or None
    )
