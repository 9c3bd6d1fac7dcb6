"""The packet pipeline of one publish session: FLV tags in, fMP4 fragments out, no re-encoding.

The RTMP connection appends FLV tags to a pipe; a worker thread demuxes them with PyAV
(FFmpeg's FLV demuxer parses the AVC/AAC configuration) and remuxes the packets into
fragmented MP4 — the HLS parts. All PyAV work happens on that thread, never on the event
loop; results come back with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import io
import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import structlog

from .fmp4 import FRAGMENTED_MP4_OPTIONS, Fragment, FragmentSink
from .mp4 import Track
from .readers import QueuedReader, copy_packet

log = structlog.get_logger(__name__)

FLV_HEADER = b"FLV\x01\x05\x00\x00\x00\x09" + bytes(4)
TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT = 8, 9, 18
MAX_BACKLOG = 64 << 20  # bytes the worker may fall behind before the session is dropped


def flv_tag(tag_type: int, timestamp: int, payload: bytes) -> bytes:
    """One FLV tag plus its trailing PreviousTagSize."""
    header = bytes([tag_type]) + len(payload).to_bytes(3, "big")
    header += (timestamp & 0xFFFFFF).to_bytes(3, "big") + bytes([(timestamp >> 24) & 0xFF])
    return header + b"\x00\x00\x00" + payload + struct.pack(">I", 11 + len(payload))


class FlvPipe(io.RawIOBase):
    """Bytes from the event loop to the worker thread; ``read`` blocks until data or EOF."""

    def __init__(self) -> None:
        super().__init__()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._buffer = b""
        self._eof = False
        self.backlog = 0

    def readable(self) -> bool:
        return True

    def feed(self, data: bytes) -> None:
        self.backlog += len(data)
        self._queue.put(data)

    def finish(self) -> None:
        self._queue.put(None)

    def readinto(self, target: Any) -> int:
        while not self._buffer and not self._eof:
            item = self._queue.get()
            if item is None:
                self._eof = True
            else:
                self._buffer = item
                self.backlog -= len(item)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


@dataclass
class TrackInfo:
    kind: str
    codec: str
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class IngestCallbacks:
    """Called on the event loop (never on the worker thread)."""

    on_tracks: Callable[[list[TrackInfo]], None]
    on_init: Callable[[bytes], None]
    on_fragment: Callable[[Fragment], None]
    on_done: Callable[[str | None], None]  # error text, or None for a clean end


@dataclass
class Ingest:
    """Runs the worker thread for one publish session."""

    loop: asyncio.AbstractEventLoop
    callbacks: IngestCallbacks
    part_seconds: float
    readers: list[QueuedReader] = field(default_factory=list)
    pipe: FlvPipe = field(default_factory=FlvPipe)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.pipe.feed(FLV_HEADER)
        self._thread = threading.Thread(target=self._run, name="syncstream-ingest", daemon=True)
        self._thread.start()

    def write(self, tag_type: int, timestamp: int, payload: bytes) -> bool:
        """Queue one tag; False when the worker has fallen too far behind (drop the session)."""
        if self.pipe.backlog > MAX_BACKLOG:
            return False
        self.pipe.feed(flv_tag(tag_type, timestamp, payload))
        return True

    def finish(self) -> None:
        self.pipe.finish()

    async def wait(self) -> None:
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        error: str | None = None
        try:
            self._remux()
        except Exception as exc:  # corrupt media ends the session, never the daemon
            error = f"{type(exc).__name__}: {exc}"
            log.warning("ingest.failed", error=error)
        finally:
            for reader in self.readers:
                reader.close()
            for reader in self.readers:
                reader.join()
            self._call(self.callbacks.on_done, error)

    def _remux(self) -> None:
        source = av.open(
            self.pipe, format="flv", options={"analyzeduration": "1000000", "probesize": "1000000"}
        )
        assert isinstance(source, av.container.InputContainer)
        try:
            streams = [s for s in source.streams if s.type in ("video", "audio")]
            if not streams:
                raise ValueError("the stream carries neither audio nor video")
            self._call(self.callbacks.on_tracks, [describe(s) for s in streams])

            def on_init(data: bytes, tracks: dict[int, Track]) -> None:
                self._call(self.callbacks.on_init, data)

            sink = FragmentSink(on_init, lambda f: self._call(self.callbacks.on_fragment, f))
            options = {**FRAGMENTED_MP4_OPTIONS, "frag_duration": str(int(self.part_seconds * 1e6))}
            with av.open(sink, mode="w", format="mp4", options=options) as output:
                mapping = {s.index: output.add_stream_from_template(s) for s in streams}
                for packet in source.demux(streams):
                    if packet.dts is None or packet.size == 0:
                        continue
                    self._offer(packet)
                    packet.stream = mapping[packet.stream.index]
                    output.mux(packet)
        finally:
            source.close()

    def _offer(self, packet: Any) -> None:
        """Hand a copy to every reader that wants it (before the muxer takes the packet)."""
        kind, keyframe = packet.stream.type, bool(packet.is_keyframe)
        wanting = [r for r in self.readers if r.accepts(kind, keyframe)]
        if wanting:
            copy = copy_packet(packet)
            for reader in wanting:
                reader.offer(copy)


def describe(stream: Any) -> TrackInfo:
    ctx = stream.codec_context
    if stream.type == "video":
        return TrackInfo("video", ctx.name, width=ctx.width or None, height=ctx.height or None)
    return TrackInfo(
        "audio", ctx.name, sample_rate=ctx.sample_rate or None, channels=ctx.channels or None
    )
