"""Server-side recording of a call: every feed (each participant's microphone, camera and
screen) is written as it arrives — encoded frames, no re-encoding — to its own Matroska file
on a writer thread; when the recording stops, ``ffmpeg -c copy`` (a subprocess) joins them
into one WebM with one titled stream per feed, each placed at the moment it started."""

from __future__ import annotations

import asyncio
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import av
import structlog

from syncstream.sdk import Packet, PacketCopy, QueuedReader, bound, new_id

from .feed import Feed

log = structlog.get_logger(__name__)
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)  # RFC 7845 5.1
CODECS = {"audio": "libopus", "video": "libvpx"}


def vp8_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1)."""
    if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
        raise ValueError("not a VP8 keyframe")
    width, height = struct.unpack_from("<HH", keyframe, 6)
    return width & 0x3FFF, height & 0x3FFF


class TrackWriter(QueuedReader):
    """One feed into one Matroska file (an output of the feed)."""

    name = "call-recorder"

    def __init__(self, path: Path, feed: Feed, started: float) -> None:
        self.path, self.kind = path, feed.kind
        self.title = f"{feed.username} {feed.label}"
        self.offset: float | None = None  # s after the recording started: its first frame
        self.frames = 0
        self._started = started
        self._first_pts: int | None = None
        self._last_pts = -1
        self._need_key = feed.kind == "video"
        self._out: Any = None
        self._stream: Any = None
        super().__init__(maxsize=600)

    def push(self, packet: Packet, keyframe: bool) -> None:
        """On the event loop: rebase the timestamps, hand the frame to the writer thread."""
        if self._need_key:
            if not keyframe:
                return
            self._need_key = False
        if self._first_pts is None:
            self._first_pts = packet.pts
            self.offset = time.monotonic() - self._started
        pts = max(packet.pts - self._first_pts, self._last_pts + 1)
        self._last_pts = pts
        copy = PacketCopy(self.kind, CODECS[self.kind], None, bytes(packet), pts, pts,
                          packet.time_base, keyframe)  # fmt: skip
        self.offer(copy)
        self.frames += 1

    def restart(self) -> None:
        self._need_key = self.kind == "video"

    def handle(self, packet: PacketCopy) -> None:
        if self._out is None:
            self._open(packet)
        out = av.Packet(packet.data)
        out.pts = out.dts = packet.pts
        out.time_base = packet.time_base
        out.stream = self._stream
        out.is_keyframe = packet.keyframe
        self._out.mux(out)

    def _open(self, first: PacketCopy) -> None:
        self._out = av.open(str(self.path), "w", format="matroska")
        stream: Any = self._out.add_stream(first.codec, rate=48000 if self.kind == "audio" else 30)
        if self.kind == "video":
            stream.width, stream.height = vp8_size(first.data)
        else:
            stream.codec_context.layout = "stereo"
            stream.codec_context.extradata = OPUS_HEAD
        stream.time_base = first.time_base
        self._stream = stream

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            if self._out is not None:
                self._out.close()


class CallRecording:
    """A recording in progress: a writer per feed, joined into one file at the end."""

    def __init__(self, directory: Path, by: str) -> None:
        self.id = new_id()
        self.by = by
        self.started_at = time.time()
        self.directory = directory / self.id
        self.directory.mkdir(parents=True)
        self.writers: list[TrackWriter] = []
        self._started = time.monotonic()

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "by": self.by, "started_at": self.started_at}

    def tap(self, feed: Feed) -> TrackWriter:
        """A writer for a feed (every feed of the call while recording)."""
        path = self.directory / f"{len(self.writers)}-{feed.kind}.mkv"
        writer = TrackWriter(path, feed, self._started)
        self.writers.append(writer)
        return writer

    async def finish(self) -> tuple[Path, float] | None:
        """Close the writers and join their files: (the WebM, its duration), or None when
        nothing was heard or seen."""
        stopped = time.monotonic()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*(asyncio.to_thread(w.join, 30.0) for w in self.writers))
        written = [w for w in self.writers if w.frames and w.offset is not None]
        if not written:
            shutil.rmtree(self.directory, ignore_errors=True)
            return None
        first = min(w.offset or 0.0 for w in written)  # the file starts with the first frame
        args: list[str] = []
        for writer in written:
            args += ["-itsoffset", f"{(writer.offset or 0.0) - first:.3f}", "-i", str(writer.path)]
        for index in range(len(written)):
            args += ["-map", str(index)]
        for index, writer in enumerate(written):
            args += [f"-metadata:s:{index}", f"title={writer.title}"]
        out = self.directory / "call.webm"
        proc = await asyncio.create_subprocess_exec(
            *bound(["ffmpeg", "-nostdin", "-v", "error", "-y", *args, "-c", "copy", str(out)]),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        for writer in written:
            writer.path.unlink(missing_ok=True)
        if proc.returncode != 0:
            log.error("call.recording_failed", recording=self.id, error=err.decode()[-500:])
            return None
        return out, stopped - self._started - first

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
