"""Where file bytes live: a blob store keyed by file id, and a scratch area for uploads.

Uploads are assembled in ``<root>/uploads`` (one file per upload, written at acknowledged
offsets and fsynced); a finished upload is moved into the blob store: on local disk with an
atomic rename (``<root>/blobs/<2 chars>/<key>``, so no directory grows too large), or to an
S3-compatible bucket (:mod:`.s3`). Thumbnails are blobs too (``<file id>t<size>``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

READ_BLOCK = 1 << 20
# File work (writes, fsyncs, renames) of many uploads at once: fsyncs of different files
# proceed together on the disk, so this pool is larger than asyncio's default one.
FILE_IO = ThreadPoolExecutor(32, thread_name_prefix="syncstream-files")
T = TypeVar("T")


async def on_io_thread(call: Callable[..., T], *args: Any) -> T:
    """Run blocking file work on the :data:`FILE_IO` pool."""
    return await asyncio.get_running_loop().run_in_executor(FILE_IO, call, *args)


class BlobStore(Protocol):
    """Finished files. Keys are opaque ids made by the plugin, never user text."""

    async def put(self, key: str, source: Path) -> None:
        """Take ``source`` (a finished local file) as blob ``key``; ``source`` is gone after."""

    async def delete(self, key: str) -> None:
        """Remove a blob; missing blobs are fine."""

    def local_path(self, key: str) -> Path | None:
        """The blob's path if it is on this machine's disk (sendfile), else None."""

    def read(self, key: str, offset: int = 0, count: int | None = None) -> AsyncIterator[bytes]:
        """``count`` bytes (None: to the end) from ``offset``."""

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A local file with the blob's bytes for as long as the context lasts."""

    async def close(self) -> None:
        """Release connections."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    """Blobs on the local disk, moved in by rename (copied when on another filesystem)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key[-2:] / key

    def local_path(self, key: str) -> Path:
        return self.path(key)

    async def read(
        self, key: str, offset: int = 0, count: int | None = None
    ) -> AsyncIterator[bytes]:
        fd = await on_io_thread(os.open, self.path(key), os.O_RDONLY)
        try:
            if count is None:
                count = os.fstat(fd).st_size - offset
            while count > 0:
                block = await on_io_thread(os.pread, fd, min(READ_BLOCK, count), offset)
                if not block:
                    raise OSError(f"blob {key} is shorter than its record")
                yield block
                offset += len(block)
                count -= len(block)
        finally:
            os.close(fd)

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        yield self.path(key)

    async def close(self) -> None:
        return None

    async def put(self, key: str, source: Path) -> None:
        await on_io_thread(self._put, key, source)

    def _put(self, key: str, source: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(exist_ok=True)
        try:
            os.replace(source, target)
        except OSError:  # another filesystem: copy beside the target, then rename
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(source, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            source.unlink()
        _fsync_dir(target.parent)

    async def delete(self, key: str) -> None:
        await on_io_thread(self.path(key).unlink, True)


class UploadArea:
    """Partial uploads: ``<root>/<upload id>.part``, written in place at given offsets."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise ValueError(f"invalid upload id {upload_id!r}")
        return self.root / f"{upload_id}.part"

    async def create(self, upload_id: str) -> None:
        await on_io_thread(self._create, upload_id)

    def _create(self, upload_id: str) -> None:
        # No directory fsync: until an append stores an offset, nothing was acknowledged, and
        # an append recreates a file a crash took away.
        self.path(upload_id).touch(exist_ok=False)

    async def truncate(self, upload_id: str, size: int) -> None:
        """Cut a partial upload back to ``size`` bytes (drops an unacknowledged tail)."""
        await on_io_thread(os.truncate, self.path(upload_id), size)

    async def delete(self, upload_id: str) -> None:
        await on_io_thread(self.path(upload_id).unlink, True)
