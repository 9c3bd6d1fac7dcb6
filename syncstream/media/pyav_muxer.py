"""The fMP4 parts written by PyAV's mp4 muxer (``live.muxer: pyav``): one ``av.Packet`` per
access unit, the muxer's output cut into fragments by :class:`~.fmp4.FragmentSink`."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import structlog

from .fmp4 import FRAGMENTED_MP4_OPTIONS, Fragment, FragmentSink
from .fragmenter import CLOCK, AccessUnit
from .mp4 import Track
from .rtmp.aac import AudioConfig

log = structlog.get_logger(__name__)

TIME_BASE = Fraction(1, CLOCK)


class PyavMuxer:
    """Muxes access units with FFmpeg; ``templates`` is the demuxed configuration."""

    def __init__(
        self,
        templates: Any,
        audio: AudioConfig | None,
        part_seconds: float,
        on_init: Callable[[bytes], None],
        on_fragment: Callable[[Fragment], None],
    ) -> None:
        def init(data: bytes, tracks: dict[int, Track]) -> None:
            on_init(data)

        self._sink: FragmentSink | None = FragmentSink(init, on_fragment)
        options = {**FRAGMENTED_MP4_OPTIONS, "frag_duration": str(int(part_seconds * 1e6))}
        self._output: Any = av.open(self._sink, mode="w", format="mp4", options=options)
        self._streams = {
            s.type: self._output.add_stream_from_template(s)
            for s in templates.streams
            if s.type in ("video", "audio")
        }
        stream = self._streams.get("audio")
        if stream is not None and audio is not None:
            # FFmpeg's FLV demuxer takes the rate from the tag flags (always 44.1 kHz for AAC)
            # until it has decoded audio; the AudioSpecificConfig is the truth. The mp4 muxer
            # uses this rate as the audio track's timescale.
            stream.codec_context.sample_rate = audio.sample_rate
            if audio.layout is not None:
                stream.codec_context.layout = audio.layout

    def write(self, unit: AccessUnit) -> None:
        stream = self._streams.get(unit.kind)
        if stream is None:
            return
        packet = av.Packet(unit.data)
        packet.dts, packet.pts, packet.time_base = unit.dts, max(unit.pts, unit.dts), TIME_BASE
        packet.is_keyframe = unit.keyframe
        packet.stream = stream
        self._output.mux(packet)

    def close(self) -> None:
        """Flush the last fragment and let go of the sink's callbacks."""
        output, self._output = self._output, None
        if output is not None:
            try:
                output.close()
            except (av.FFmpegError, ValueError) as exc:
                log.warning("ingest.close_failed", error=str(exc))
        if self._sink is not None:
            self._sink.release()
            self._sink = None
        self._streams = {}
