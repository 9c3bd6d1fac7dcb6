"""Upload sessions: bytes streamed to disk at acknowledged offsets, then turned into a file.

An upload is a row in ``files_uploads`` plus ``<uploads>/<id>.part``. Each append writes the
body at the stored offset on a writer thread (the event loop only moves buffers), fsyncs, and
only then stores the new offset: an acknowledged offset survives a crash or ``kill -9``, and
anything after it is cut off before the next append. A finished upload becomes a file whose id
is the upload's id, so finishing twice (after a crash between its steps) creates one file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from syncstream.sdk import (
    IntegrityError,
    Problem,
    Row,
    Store,
    idempotency_in_use,
    new_id,
)

from .config import Config
from .names import clean_name
from .processing import needs_processing
from .sniff import SNIFF_BYTES, sniff
from .storage import FILE_IO, BlobStore, UploadArea, on_io_thread
from .tree import Tree

log = structlog.get_logger(__name__)

CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
WRITE_BYTES = 1 << 20  # bytes handed to the writer thread at once
COLUMNS = (
    "id, owner_id, created_by, parent_id, name, length, upload_offset, metadata, node,"
    " created_at, expires_at, file_id, idempotency_key"
)


@dataclass(frozen=True)
class Checksum:
    """A client's checksum of one append's body (tus checksum extension)."""

    algorithm: str
    digest: bytes


class _Hashed:
    """The running SHA-256 of an upload's bytes, valid while ``offset`` matches the file."""

    __slots__ = ("hasher", "offset")

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.offset = 0


Finished = Callable[[Row, Row], Awaitable[None]]  # (upload, file node)
Progress = Callable[[Row, int], None]


class Uploads:
    def __init__(
        self,
        store: Store,
        tree: Tree,
        area: UploadArea,
        blobs: BlobStore,
        config: Config,
        node_id: str,
        finished: Finished,
        progress: Progress,
    ) -> None:
        self.store, self.tree, self.area, self.blobs = store, tree, area, blobs
        self.config, self.node_id = config, node_id
        self._finished, self._progress = finished, progress
        self._locks: dict[str, asyncio.Lock] = {}
        self._hashed: dict[str, _Hashed] = {}
        self._hasher = ThreadPoolExecutor(max_workers=8, thread_name_prefix="syncstream-hash")

    def close(self) -> None:
        self._hasher.shutdown(wait=True)

    # -- sessions ---------------------------------------------------------------------------

    async def create(
        self,
        *,
        owner_id: str,
        parent_id: str,
        created_by: str,
        name: str,
        length: int | None,
        metadata: str = "",
        idempotency_key: str | None = None,
    ) -> Row:
        """A new upload of ``length`` bytes (None: told later), checked against the limits;
        ``idempotency_key`` is unique per user (409 while another upload holds it)."""
        name = clean_name(name)
        if length is not None:
            self._check_size(length)
            await self._check_quota(owner_id, length)
        now = time.time()
        row: Row = {
            "id": new_id(),
            "owner_id": owner_id,
            "created_by": created_by,
            "parent_id": parent_id,
            "name": name,
            "length": length,
            "upload_offset": 0,
            "metadata": metadata,
            "node": self.node_id,
            "created_at": now,
            "expires_at": now + self.config.upload_expiry_seconds,
            "file_id": None,
            "idempotency_key": idempotency_key,
        }
        await self.area.create(row["id"])
        try:
            await self.store.execute(
                f"INSERT INTO files_uploads ({COLUMNS}) VALUES ({', '.join('?' * len(row))})",
                *row.values(),
            )
        except IntegrityError:  # the same key, sent at the same time
            await self.area.delete(row["id"])
            raise idempotency_in_use() from None
        return row

    async def by_key(self, user_id: str, key: str) -> Row | None:
        """The user's live upload created with ``key`` (an expired unfinished one is gone)."""
        row = await self.store.fetchone(
            f"SELECT {COLUMNS} FROM files_uploads WHERE created_by = ? AND idempotency_key = ?",
            user_id,
            key,
        )
        if row is not None and row["file_id"] is None and row["expires_at"] < time.time():
            await self.delete(row)
            return None
        return row

    async def get(self, upload_id: str, user_id: str) -> Row:
        """The caller's upload; 404 for unknown or others' uploads, 410 once expired."""
        row = None
        if upload_id.isalnum() and len(upload_id) <= 64:
            row = await self.store.fetchone(
                f"SELECT {COLUMNS} FROM files_uploads WHERE id = ?", upload_id
            )
        if row is None or row["created_by"] != user_id:
            raise Problem(404, "upload_not_found", f"no upload {upload_id[:64]}")
        if row["file_id"] is None and row["expires_at"] < time.time():
            await self.delete(row)
            raise Problem(410, "upload_expired", "this upload expired; start a new one")
        return row

    async def set_length(self, row: Row, length: int) -> Row:
        """Fix a deferred length (``Upload-Length`` on a later request)."""
        if row["length"] is not None:
            if row["length"] != length:
                raise Problem(409, "length_fixed", "this upload's length is already set")
            return row
        if length < row["upload_offset"]:
            raise Problem(409, "length_below_offset", "the length is below the bytes received")
        self._check_size(length)
        await self._check_quota(row["owner_id"], length, exclude=row["id"])
        await self.store.execute(
            "UPDATE files_uploads SET length = ? WHERE id = ?", length, row["id"]
        )
        return row | {"length": length}

    async def delete(self, row: Row) -> None:
        """Terminate an upload: its bytes and its row are gone."""
        await self.area.delete(row["id"])
        await self.store.execute("DELETE FROM files_uploads WHERE id = ?", row["id"])
        self._hashed.pop(row["id"], None)

    async def sweep(self) -> int:
        """Delete this node's expired unfinished uploads and old finished ones; returns how many."""
        rows = await self.store.fetchall(
            f"SELECT {COLUMNS} FROM files_uploads WHERE expires_at < ? AND node = ? LIMIT 500",
            time.time(),
            self.node_id,
        )
        for row in rows:
            if row["id"] not in self._locks:
                await self.delete(row)
        return len(rows)

    # -- bytes ------------------------------------------------------------------------------

    async def append(
        self,
        row: Row,
        offset: int,
        chunks: AsyncIterator[bytes],
        *,
        checksum: Checksum | None = None,
        declared: int | None = None,
        limit: int | None = None,
    ) -> Row:
        """Write a body at ``offset``; returns the row with its new offset (finished if full).

        ``declared`` is the body's Content-Length when known: refused early if it cannot fit;
        ``limit`` caps the upload's total size below the configured maximum.
        A body cut off by the client keeps what arrived, unless it carried a checksum.
        """
        lock = self._locks.setdefault(row["id"], asyncio.Lock())
        if lock.locked():
            raise Problem(423, "upload_locked", "another request is writing to this upload")
        try:
            async with lock:
                return await self._append(row, offset, chunks, checksum, declared, limit)
        finally:
            if not lock.locked():
                self._locks.pop(row["id"], None)

    async def _append(
        self,
        row: Row,
        offset: int,
        chunks: AsyncIterator[bytes],
        checksum: Checksum | None,
        declared: int | None,
        limit: int | None,
    ) -> Row:
        row = await self.get(row["id"], row["created_by"])  # fresh offset, under the lock
        if row["file_id"] is not None:
            raise Problem(409, "upload_complete", "this upload is already complete")
        if offset != row["upload_offset"]:
            raise Problem(
                409,
                "offset_mismatch",
                f"Upload-Offset {offset} does not match the upload's offset {row['upload_offset']}",
                headers={"Upload-Offset": str(row["upload_offset"])},
            )
        room = await self._room(row)
        if limit is not None:
            room = min(room, limit - offset)
        if declared is not None and declared > room:
            raise self._too_big(row)
        path = self.area.path(row["id"])
        hashed = self._hashed.get(row["id"])
        if hashed is None or hashed.offset != offset:
            hashed = None if offset else _Hashed()
        check = CHECKSUMS[checksum.algorithm]() if checksum else None
        fd = await on_io_thread(os.open, path, os.O_WRONLY | os.O_CREAT, 0o600)
        written, failure = 0, None
        try:
            await on_io_thread(os.ftruncate, fd, offset)  # drop any unacknowledged tail
            written, failure = await self._stream(fd, offset, room, chunks, hashed, check)
            if checksum and check and failure is None and check.digest() != checksum.digest:
                failure = Problem(
                    460, "checksum_mismatch", "the body does not match Upload-Checksum"
                )
            if failure is not None and (checksum or failure.status == 413):
                written = 0
                await on_io_thread(os.ftruncate, fd, offset)
            await on_io_thread(os.fsync, fd)
        finally:
            os.close(fd)
        new_offset = offset + written
        if written:
            expires = time.time() + self.config.upload_expiry_seconds
            await self.store.execute(
                "UPDATE files_uploads SET upload_offset = ?, expires_at = ? WHERE id = ?",
                new_offset,
                expires,
                row["id"],
            )
            row = row | {"upload_offset": new_offset, "expires_at": expires}
            self._progress(row, new_offset)
        if hashed is not None and failure is None:
            hashed.offset = new_offset
            self._hashed[row["id"]] = hashed
        else:
            self._hashed.pop(row["id"], None)
        if failure is not None:
            raise failure
        if row["length"] is not None and new_offset == row["length"]:
            await self.finish(row)
            row = row | {"file_id": row["id"]}
        return row

    async def _stream(
        self,
        fd: int,
        offset: int,
        room: int,
        chunks: AsyncIterator[bytes],
        hashed: _Hashed | None,
        check: Any,
    ) -> tuple[int, Problem | None]:
        """Copy the body to ``fd`` while the next buffer fills: each buffer is written on a
        writer thread and hashed on a hasher thread at the same time."""
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[Any]] = []
        buffered: list[bytes] = []
        size = written = 0
        failure: Problem | None = None
        hashers = [h for h in (hashed.hasher if hashed else None, check) if h is not None]

        def digest(data: bytes) -> None:
            for hasher in hashers:
                hasher.update(data)

        async def flush() -> None:
            nonlocal pending, buffered, size, written
            data = b"".join(buffered) if len(buffered) > 1 else buffered[0]
            buffered, size = [], 0
            for future in pending:
                await future
            pending = [loop.run_in_executor(FILE_IO, os.pwrite, fd, data, offset + written)]
            if hashers:
                pending.append(loop.run_in_executor(self._hasher, digest, data))
            written += len(data)

        try:
            async for chunk in chunks:
                if written + size + len(chunk) > room:
                    failure = Problem(
                        413, "upload_too_large", "the body goes past the allowed size"
                    )
                    break
                buffered.append(chunk)
                size += len(chunk)
                if size >= WRITE_BYTES:
                    await flush()
        except (OSError, asyncio.IncompleteReadError, EOFError) as exc:
            failure = Problem(400, "body_incomplete", f"the body was cut off: {exc}")
        except Exception as exc:  # aiohttp's payload errors when the client vanishes
            if type(exc).__module__.split(".")[0] != "aiohttp":
                raise
            failure = Problem(400, "body_incomplete", f"the body was cut off: {exc}")
        finally:
            if buffered:
                await flush()
            for future in pending:
                await future  # never close the file under a running write
        return written, failure

    async def _room(self, row: Row) -> int:
        """How many more bytes this upload may take."""
        if row["length"] is not None:
            return int(row["length"]) - int(row["upload_offset"])
        limit = self.config.max_file_bytes
        if self.config.quota_bytes:
            used = await self._committed(row["owner_id"], exclude=row["id"])
            limit = min(limit, self.config.quota_bytes - used)
        return max(0, limit - int(row["upload_offset"]))

    def _too_big(self, row: Row) -> Problem:
        if row["length"] is not None:
            return Problem(413, "upload_too_large", "the body goes past Upload-Length")
        return Problem(413, "quota_exceeded", "the body exceeds the size limit or your quota")

    # -- limits -----------------------------------------------------------------------------

    def _check_size(self, length: int) -> None:
        if length > self.config.max_file_bytes:
            raise Problem(
                413,
                "file_too_large",
                f"files may be at most {self.config.max_file_bytes} bytes",
                max_bytes=self.config.max_file_bytes,
            )

    async def _committed(self, owner_id: str, exclude: str = "") -> int:
        """Bytes the owner's files and open uploads hold or have reserved."""
        reserved = await self.store.fetchval(
            "SELECT COALESCE(SUM(COALESCE(length, upload_offset)), 0) FROM files_uploads"
            " WHERE owner_id = ? AND file_id IS NULL AND id <> ?",
            owner_id,
            exclude,
        )
        return await self.tree.used_bytes(owner_id) + int(reserved)

    async def _check_quota(self, owner_id: str, length: int, exclude: str = "") -> None:
        quota = self.config.quota_bytes
        if not quota:
            return
        used = await self._committed(owner_id, exclude)
        if used + length > quota:
            raise Problem(
                413,
                "quota_exceeded",
                f"this needs {length} bytes; {max(0, quota - used)} of {quota} are free",
                used=used,
                quota=quota,
            )

    # -- completion -------------------------------------------------------------------------

    async def finish(self, row: Row) -> Row:
        """Turn a complete upload into a file (idempotent: the file's id is the upload's)."""
        node = await self.tree.get(row["id"])
        if node is None:
            partial = self.area.path(row["id"])
            hashed = self._hashed.pop(row["id"], None)
            if partial.exists():
                head, digest = await on_io_thread(
                    _head_and_digest, partial, None if hashed is None else hashed.hasher
                )
                await self.blobs.put(row["id"], partial)
            else:  # a crash came between storing the bytes and recording the file
                async with self.blobs.local_copy(row["id"]) as stored:
                    head, digest = await on_io_thread(_head_and_digest, stored, None)
            mime = sniff(head, row["name"])
            node = await self.tree.insert(
                node_id=row["id"],
                owner_id=row["owner_id"],
                parent_id=await self._live_parent(row),
                kind="file",
                name=row["name"],
                created_by=row["created_by"],
                conflict="rename",
                fields={
                    "size": row["length"],
                    "mime": mime,
                    "sha256": digest,
                    "thumbs": "pending" if needs_processing(mime) else "none",
                },
            )
        await self.store.execute(
            "UPDATE files_uploads SET file_id = ? WHERE id = ?", node["id"], row["id"]
        )
        await self._finished(row, node)
        return node

    async def complete(self, row: Row) -> Row:
        """Finish an upload of unknown length with what it received (plain form uploads)."""
        row = await self.set_length(row, int(row["upload_offset"]))
        return await self.finish(row)

    async def _live_parent(self, row: Row) -> str:
        """The upload's folder, or the owner's root if it was trashed or deleted meanwhile."""
        parent = row["parent_id"]
        if not parent:
            return ""
        folder = await self.tree.get(parent)
        return parent if folder is not None and folder["trashed_at"] is None else ""


def _head_and_digest(path: Path, hasher: Any | None) -> tuple[bytes, str]:
    """The first bytes (for sniffing) and the SHA-256 (computed now unless already running)."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        if hasher is None:
            hasher = hashlib.sha256(head)
            while block := fh.read(1 << 20):
                hasher.update(block)
    return head, hasher.hexdigest()
