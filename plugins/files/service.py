"""The files plugin's service: what routes, other plugins and bus listeners call.

It ties the tree, permissions, uploads and processing together, fires ``file.*`` events and
pushes upload progress to the uploader's other devices on ``uploads:<user id>``. It is also
the :class:`syncstream.filestore.FileStore` other plugins get.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import structlog

from syncstream.sdk import Audit, Auth, EventBus, Gateway, Problem, Row, Store, User

from .access import Access
from .config import Config
from .names import clean_name, name_key
from .processing import Processor
from .search import Finder
from .storage import BlobStore, UploadArea
from .tree import ROOT, Tree, public
from .uploads import Uploads

log = structlog.get_logger(__name__)


class FilesService:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        bus: EventBus,
        gateway: Gateway,
        audit: Audit,
        users: Auth,
        blobs: BlobStore,
        area: UploadArea,
        scratch: Path,
    ) -> None:
        self.config, self.store, self.bus, self.gateway, self.audit = (
            config,
            store,
            bus,
            gateway,
            audit,
        )
        self.users, self.blobs, self.area = users, blobs, area
        self.tree = Tree(store)
        self.finder = Finder(store)
        self.access = Access(store, self.tree)
        self.processor = Processor(store, blobs, scratch, config, self._processed)
        self.uploads = Uploads(
            store, self.tree, area, blobs, config, bus.node_id, self._uploaded, self._progress
        )
        self._progress_sent: dict[str, float] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._figures: dict[str, float] = {}
        self._figures_at = -1e9

    # -- events -----------------------------------------------------------------------------

    async def _uploaded(self, upload: Row, node: Row) -> None:
        self._progress_sent.pop(upload["id"], None)
        self.processor.submit(node)
        info = public(node)
        await self._publish_progress(upload, int(node["size"]), done=info)
        await self.audit.record(
            "file.uploaded", actor_id=upload["created_by"], target=node["id"],
            name=node["name"], size=int(node["size"]),
        )  # fmt: skip
        await self.bus.fire("file.uploaded", {"file": info, "user_id": upload["created_by"]})

    async def _processed(self, node: Row, result: dict[str, Any]) -> None:
        await self.bus.fire("file.processed", {"file_id": node["id"], **result})

    def _progress(self, upload: Row, offset: int) -> None:
        """Throttled: at most one progress event per upload every ``progress_seconds``."""
        now = time.monotonic()
        if now - self._progress_sent.get(upload["id"], 0.0) < self.config.progress_seconds:
            return
        self._progress_sent[upload["id"]] = now
        self._spawn(self._publish_progress(upload, offset))

    async def _publish_progress(
        self, upload: Row, offset: int, done: dict[str, Any] | None = None
    ) -> None:
        data: dict[str, Any] = {
            "upload_id": upload["id"],
            "name": upload["name"],
            "offset": offset,
            "length": upload["length"],
        }
        if done is not None:
            data["file"] = done
        await self.gateway.publish(f"uploads:{upload['created_by']}", data, ephemeral=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- changes ----------------------------------------------------------------------------

    async def trash(self, user: User, node: Row) -> None:
        await self.tree.trash(node)
        await self.audit.record("file.trashed", actor_id=user.id, target=node["id"])
        await self.bus.fire("file.trashed", {"file_id": node["id"], "user_id": user.id})

    async def purge(self, node: Row, actor_id: str | None) -> int:
        """Delete a node and its subtree for good, bytes and thumbnails included."""
        file_ids = await self.tree.purge(node)
        for file_id in file_ids:
            await self.blobs.delete(file_id)
            await self.processor.forget(file_id)
        await self.audit.record(
            "file.deleted", actor_id=actor_id, target=node["id"], files=len(file_ids)
        )
        await self.bus.fire(
            "file.deleted",
            {"file_id": node["id"], "owner_id": node["owner_id"], "files": file_ids},
        )
        return len(file_ids)

    async def user_facts(self, user_id: str) -> dict[str, Any]:
        """What the operator sees of a user's files."""
        row = await self.store.fetchone(
            "SELECT COUNT(*) AS files, COALESCE(SUM(size), 0) AS bytes FROM files_nodes"
            " WHERE owner_id = ? AND kind = 'file'",
            user_id,
        )
        links = await self.store.fetchval(
            "SELECT COUNT(*) FROM files_links l JOIN files_nodes n ON n.id = l.node_id"
            " WHERE n.owner_id = ? AND l.revoked_at IS NULL",
            user_id,
        )
        assert row is not None
        return {"files": int(row["files"]), "bytes": int(row["bytes"]), "live_links": int(links)}

    async def figures(self) -> dict[str, float]:
        """Storage used by everyone (a table scan: recomputed at most once a minute)."""
        now = time.monotonic()
        if now - self._figures_at > 60:
            row = await self.store.fetchone(
                "SELECT COUNT(*) AS files, COALESCE(SUM(size), 0) AS bytes FROM files_nodes"
                " WHERE kind = 'file'"
            )
            assert row is not None
            self._figures = {"files": float(row["files"]), "bytes": float(row["bytes"])}
            self._figures_at = now
        return self._figures

    async def purge_expired_trash(self) -> int:
        before = time.time() - self.config.trash_days * 86400
        count = 0
        for node in await self.tree.expired_trash(before):
            count += await self.purge(node, None)
        return count

    async def make_folders(self, owner_id: str, path: str, created_by: str) -> str:
        """The id of folder ``a/b/c`` under the owner's root, made where missing."""
        parent = ROOT
        for part in filter(None, path.split("/")):
            name = clean_name(part)
            row = await self.store.fetchone(
                "SELECT id, kind FROM files_nodes WHERE owner_id = ? AND parent_id = ?"
                " AND name_key = ? AND trashed_at IS NULL",
                owner_id,
                parent,
                name_key(name),
            )
            if row is None:
                row = await self.tree.insert(
                    owner_id=owner_id,
                    parent_id=parent,
                    kind="folder",
                    name=name,
                    created_by=created_by,
                    conflict="rename",
                )
            elif row["kind"] != "folder":
                raise Problem(409, "name_taken", f"{name!r} is a file, not a folder")
            parent = row["id"]
        return parent

    # -- FileStore --------------------------------------------------------------------------

    async def add(
        self,
        *,
        owner_id: str,
        source: Path,
        name: str,
        folder: str = "",
        created_by: str | None = None,
    ) -> dict[str, Any]:
        """Adopt a local file (see :class:`syncstream.filestore.FileStore`)."""
        if folder and len(folder) == 32 and folder.isalnum():
            parent = folder
            await self.tree.folder(owner_id, parent)
        else:
            parent = await self.make_folders(owner_id, folder, created_by or owner_id)
        size = (await asyncio.to_thread(source.stat)).st_size
        upload = await self.uploads.create(
            owner_id=owner_id,
            parent_id=parent,
            created_by=created_by or owner_id,
            name=name,
            length=size,
            metadata=json.dumps({"source": "service"}),
        )
        partial = self.area.path(upload["id"])
        await asyncio.to_thread(source.replace, partial)
        await self.store.execute(
            "UPDATE files_uploads SET upload_offset = ? WHERE id = ?", size, upload["id"]
        )
        node = await self.uploads.finish(upload | {"upload_offset": size})
        return public(node)

    async def readable(self, user_id: str, file_id: str) -> dict[str, Any]:
        node = await self.tree.get(file_id) if len(file_id) <= 64 else None
        if node is None or node["kind"] != "file":
            raise Problem(404, "file_not_found", f"no file {file_id[:64]}")
        level = await self.access.level(user_id, node)
        if level == "none":
            raise Problem(404, "file_not_found", f"no file {file_id[:64]}")
        return public(node, level)

    def local_copy(self, file_id: str) -> AbstractAsyncContextManager[Path]:
        return self.blobs.local_copy(file_id)

    # -- recordings -------------------------------------------------------------------------

    async def adopt_recording(self, record: dict[str, Any]) -> None:
        """A finished live recording becomes a file of the broadcaster in ``Recordings/``."""
        source = Path(record["path"])
        stamp = time.strftime("%Y-%m-%d %H-%M-%S", time.gmtime(record["started_at"]))
        name = f"{record['stream']} {stamp}.{record['format']}"
        try:
            info = await self.add(
                owner_id=record["owner_id"], source=source, name=name, folder="Recordings"
            )
        except Problem as problem:
            log.warning("files.recording_not_adopted", path=str(source), reason=problem.detail)
            return
        await self.bus.fire(
            "stream.recording.adopted", {"recording_id": record["id"], "file_id": info["id"]}
        )
        log.info("files.recording_adopted", stream=record["stream"], file_id=info["id"])

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.processor.close()
        self.uploads.close()
        await self.blobs.close()
