"""Recording a live stream: the HLS fragments appended to a file, finalised by FFmpeg.

The init section and every fragment of a publish session are already a valid fragmented MP4,
so recording costs one file append per part, on a writer thread. When the session ends,
``ffmpeg -c copy`` (a subprocess: never the event loop) rewrites it as an MP4 with the index
at the front (``+faststart``, starts playing before it is fully downloaded) or as MPEG-TS.
The finished file is registered in ``live_recordings`` and announced on the bus as
``stream.recorded``. A plugin that keeps the file elsewhere (as a file of the broadcaster,
say) answers ``stream.recording.adopted`` ``{recording_id, file_id}``, and the recording row
then names that file.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from pathlib import Path
from typing import Any, Literal

import structlog

from ..bus import EventBus
from ..children import bound
from ..ids import new_id
from ..store import Store

log = structlog.get_logger(__name__)

Format = Literal["mp4", "ts"]

MIGRATIONS = [
    """
    CREATE TABLE live_stream_settings (
        stream TEXT PRIMARY KEY,
        record BIGINT NOT NULL DEFAULT 0,
        format TEXT NOT NULL DEFAULT 'mp4',
        ladder BIGINT NOT NULL DEFAULT 1
    );
    CREATE TABLE live_recordings (
        id TEXT PRIMARY KEY,
        stream TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        ended_at DOUBLE PRECISION NOT NULL,
        size BIGINT NOT NULL
    );
    CREATE INDEX live_recordings_owner ON live_recordings (owner_id, started_at)
    """,
    "ALTER TABLE live_recordings ADD COLUMN file_id TEXT",
]


async def note_adopted(store: Store, data: dict[str, Any]) -> None:
    """A plugin took a recording: remember which file it became."""
    await store.execute(
        "UPDATE live_recordings SET file_id = ? WHERE id = ?", data["file_id"], data["recording_id"]
    )


class FragmentWriter:
    """Appends bytes to a file on its own thread, in order; nothing is dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="syncstream-recorder", daemon=True)
        self.error: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        try:
            with self.path.open("wb") as out:
                while (data := self._queue.get()) is not None:
                    out.write(data)
        except OSError as exc:
            self.error = str(exc)
            log.warning("recording.write_failed", path=str(self.path), error=self.error)

    async def wait(self) -> None:
        await asyncio.to_thread(self._thread.join)


class Recording:
    """One publish session's recording."""

    def __init__(self, directory: Path, stream: str, owner_id: str, fmt: Format) -> None:
        self.id = new_id()
        self.stream = stream
        self.owner_id = owner_id
        self.format = fmt
        self.started_at = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started_at))
        self.final_path = directory / stream / f"{stamp}-{self.id[-8:]}.{fmt}"
        self.writer = FragmentWriter(self.final_path.with_suffix(".part.mp4"))
        self.bytes = 0
        self.has_media = False

    def init(self, data: bytes) -> None:
        if self.has_media:
            return  # a recording holds one init section; the next session records anew
        self.writer.write(data)

    def fragment(self, data: bytes) -> None:
        self.has_media = True
        self.bytes += len(data)
        self.writer.write(data)

    async def finish(self, store: Store, bus: EventBus) -> dict[str, Any] | None:
        """Finalise with FFmpeg, register the file and announce it; None if nothing was recorded."""
        self.writer.close()
        await self.writer.wait()
        raw = self.writer.path
        if not self.has_media or self.writer.error:
            raw.unlink(missing_ok=True)
            return None
        args = ["-movflags", "+faststart"] if self.format == "mp4" else ["-f", "mpegts"]
        argv = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(raw), "-c", "copy"]
        proc = await asyncio.create_subprocess_exec(
            *bound([*argv, *args, str(self.final_path)]),  # killed if the node dies
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            log.warning("recording.finalise_failed", path=str(raw), error=err.decode()[-500:])
            return None
        raw.unlink(missing_ok=True)
        ended = time.time()
        size = self.final_path.stat().st_size
        await store.execute(
            "INSERT INTO live_recordings (id, stream, owner_id, path, format, started_at, ended_at,"
            " size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self.id,
            self.stream,
            self.owner_id,
            str(self.final_path),
            self.format,
            self.started_at,
            ended,
            size,
        )
        record = {
            "id": self.id,
            "stream": self.stream,
            "owner_id": self.owner_id,
            "path": str(self.final_path),
            "format": self.format,
            "size": size,
            "started_at": self.started_at,
            "ended_at": ended,
        }
        await bus.fire("stream.recorded", record)
        log.info("recording.saved", stream=self.stream, path=str(self.final_path), size=size)
        return record
