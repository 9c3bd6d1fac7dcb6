"""Media facts and thumbnails, made in worker processes after an upload (never on the loop).

A file whose type can have a thumbnail is stored with ``thumbs = 'pending'``; the worker
probes it (dimensions, duration, codecs) and makes JPEG thumbnails, stored as blobs; then the row
says ``ready`` (or ``failed`` / ``none``) and ``file.processed`` goes out on the bus. Files
left pending by a restart are picked up again at start.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import structlog

from syncstream.sdk import Row, Store, WorkerPool

from . import media_worker
from .config import Config
from .storage import BlobStore

log = structlog.get_logger(__name__)

THUMBNAIL_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff")
PROBE_PREFIXES = ("image/", "video/", "audio/")
TIMEOUT_SECONDS = 120.0

Processed = Callable[[Row, dict[str, Any]], Awaitable[None]]


def clear_directory(directory: Path) -> None:
    """Remove everything inside ``directory``."""
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def thumbnail_key(file_id: str, size: int) -> str:
    """Thumbnails are blobs beside their file's (``t128x<file id>``)."""
    return f"t{size}x{file_id}"


def has_thumbnails(mime: str) -> bool:
    return mime in THUMBNAIL_TYPES or mime.startswith("video/")


def needs_processing(mime: str) -> bool:
    return mime.startswith(PROBE_PREFIXES)


class Processor:
    """A small pool of worker processes and the queue of files waiting for them."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        scratch: Path,
        config: Config,
        processed: Processed,
    ) -> None:
        self.store, self.blobs, self.scratch = store, blobs, scratch
        self.sizes = sorted(set(config.thumbnail_sizes))
        self.max_pixels = config.max_pixels
        self._processed = processed
        self._pool = WorkerPool(config.workers, config.worker_memory_mb << 20)
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.workers)
        self._closed = False
        scratch.mkdir(parents=True, exist_ok=True)

    def thumbnail_size(self, wanted: int) -> int:
        """The smallest thumbnail size at least ``wanted`` (else the largest)."""
        return next((s for s in self.sizes if s >= wanted), self.sizes[-1])

    def submit(self, node: Row) -> None:
        """Process a file in the background. Once closed (shutdown: a live recording may be
        adopted meanwhile) the file stays ``pending`` and :meth:`resume` takes it next start."""
        if self._closed or not needs_processing(node["mime"]):
            return
        task = asyncio.create_task(self._process(node))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """At start: clear what a killed run left in the scratch space (this node's alone), and
        queue the files it left pending."""
        await asyncio.to_thread(clear_directory, self.scratch)
        rows = await self.store.fetchall(
            "SELECT id, mime FROM files_nodes WHERE thumbs = 'pending' AND kind = 'file'"
        )
        for row in rows:
            self.submit(row)

    async def _process(self, node: Row) -> None:
        file_id, mime = node["id"], node["mime"]
        meta: dict[str, Any] = {}
        state = "none"
        async with self._slots:
            try:
                async with self.blobs.local_copy(file_id) as source:
                    meta = await self._pool.run(
                        TIMEOUT_SECONDS, media_worker.probe, str(source), mime, self.max_pixels
                    )
                    if has_thumbnails(mime):
                        state = await self._thumbnails(file_id, str(source), mime)
            except media_worker.MediaError as exc:
                meta, state = {"error": str(exc), "code": exc.code}, "failed"
            except (TimeoutError, BrokenProcessPool) as exc:
                reason = f"processing failed: {type(exc).__name__}"
                meta, state = {"error": reason, "code": "processing_failed"}, "failed"
            except FileNotFoundError:
                return  # purged meanwhile
        await self.store.execute(
            "UPDATE files_nodes SET meta = ?, thumbs = ? WHERE id = ?",
            json.dumps(meta),
            state,
            file_id,
        )
        log.info("files.processed", file_id=file_id, mime=mime, thumbnails=state)
        await self._processed(node, {"meta": meta, "thumbnails": state})

    async def _thumbnails(self, file_id: str, source: str, mime: str) -> str:
        """Make the thumbnails in a scratch directory, then store each as a blob."""
        scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=self.scratch))
        try:
            made = await self._pool.run(
                TIMEOUT_SECONDS,
                media_worker.thumbnails,
                source,
                mime,
                str(scratch),
                self.sizes,
                self.max_pixels,
            )
            for size in made:
                await self.blobs.put(thumbnail_key(file_id, size), scratch / f"{size}.jpg")
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)
        return "ready" if made else "none"

    async def forget(self, file_id: str) -> None:
        """Drop a purged file's thumbnails."""
        for size in self.sizes:
            await self.blobs.delete(thumbnail_key(file_id, size))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._pool.close()
