"""Secondary outputs of a live stream: each reads packets through its own bounded queue.

The HLS muxer runs inline on the ingest thread (it is the primary output), as do readers that
only keep a reference (the thumbnail's newest keyframe). Any output that does real work is a
:class:`QueuedReader` with its own thread, so a slow one never stalls ingest or the others:
when its queue is full, non-key packets are dropped and a keyframe replaces the whole backlog
(the reader resumes at a decodable point). Drops are counted per reader.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PacketCopy:
    """A demuxed packet detached from the demuxer (the muxer takes ownership of the original)."""

    kind: str  # "video" | "audio"
    codec: str
    extradata: bytes | None
    data: bytes
    pts: int | None
    dts: int | None
    time_base: Fraction
    keyframe: bool


class Reader(Protocol):
    """An output of the packet pipeline."""

    name: str

    @property
    def dropped(self) -> int: ...

    def accepts(self, kind: str, keyframe: bool) -> bool: ...

    def offer(self, packet: PacketCopy) -> None: ...

    def close(self) -> None: ...


class QueuedReader:
    """A reader thread fed through a bounded queue with a keyframe-aware drop policy."""

    name = "reader"
    wants: tuple[str, ...] = ("video", "audio")
    keyframes_only = False

    def __init__(self, maxsize: int) -> None:
        self._queue: queue.Queue[PacketCopy | None] = queue.Queue(maxsize)
        self.dropped = 0
        self._thread = threading.Thread(
            target=self._run, name=f"syncstream-{self.name}", daemon=True
        )
        self._thread.start()

    def accepts(self, kind: str, keyframe: bool) -> bool:
        return kind in self.wants and (keyframe or not self.keyframes_only)

    def offer(self, packet: PacketCopy) -> None:
        """Called on the ingest thread; never blocks."""
        try:
            self._queue.put_nowait(packet)
            return
        except queue.Full:
            pass
        if not packet.keyframe:
            self.dropped += 1
            return
        while True:  # a keyframe supersedes everything still waiting
            try:
                self._queue.get_nowait()
                self.dropped += 1
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        while True:
            try:
                self._queue.put(None, timeout=1.0)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while (packet := self._queue.get()) is not None:
            try:
                self.handle(packet)
            except Exception as exc:  # a bad packet costs this output one packet, nothing more
                log.warning("reader.failed", reader=self.name, error=f"{type(exc).__name__}: {exc}")

    def handle(self, packet: PacketCopy) -> None:
        raise NotImplementedError
