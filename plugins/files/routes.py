"""The files and folders API under ``/api/files``: listing, search, trash, downloads.

Sharing and links are in :mod:`.sharing`, form uploads in :mod:`.forms`, tus in :mod:`.tus`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Call, Problem, Row, ScopedApi, iso

from .download import send
from .endpoints import ID, ContentQuery, owned_node, served
from .forms import upload_form
from .processing import thumbnail_key
from .s3 import S3Error
from .search import FolderQuery, SearchQuery
from .service import FilesService
from .sharing import register_public_links, register_sharing
from .tree import ROOT, public


class FolderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=1024)
    parent_id: str = Field("", max_length=64)


class NodePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=1024)
    parent_id: str | None = Field(None, max_length=64, description="'' moves to the root")


class DeleteQuery(BaseModel):
    permanent: bool = Field(False, description="Delete for good instead of moving to the trash")


class ThumbnailQuery(BaseModel):
    size: int = Field(128, ge=1, le=4096)


def register(api: ScopedApi, service: FilesService, public_url: str) -> None:
    """Every ``/api/files`` JSON route (static paths first: ``{file_id}`` matches ids only)."""
    tree, access, store = service.tree, service.access, service.store

    # -- listing, folders, usage -----------------------------------------------------------

    @api.route("GET", "", query=FolderQuery)
    async def listing(call: Call[None]) -> dict[str, Any]:
        """A folder's contents (folders first), paginated; ``parent`` '' is your root."""
        q: FolderQuery = call.query
        owner_id, parent = await access.folder(call.user, q.parent, "read")
        rows, cursor = await service.finder.page(
            q, where=["n.owner_id = ?", "n.parent_id = ?"], args=[owner_id, parent]
        )
        return {"items": [public(r) for r in rows], "next_cursor": cursor}

    @api.route("POST", "", status=201)
    async def form(call: Call[None]) -> dict[str, Any]:
        """Plain ``multipart/form-data`` upload of small files (fields ``parent_id``, ``file``)."""
        return await upload_form(call, service)

    @api.route("POST", "/folders", body=FolderIn, status=201)
    async def create_folder(call: Call[FolderIn]) -> dict[str, Any]:
        """Create a folder (409 ``name_taken`` if the name exists there)."""
        owner_id, parent = await access.folder(call.user, call.body.parent_id, "write")
        node = await tree.insert(
            owner_id=owner_id,
            parent_id=parent,
            kind="folder",
            name=call.body.name,
            created_by=call.user.id,
            conflict="fail",
        )
        return public(node)

    @api.route("GET", "/usage")
    async def usage(call: Call[None]) -> dict[str, Any]:
        """Bytes used (files and trash) and the quota."""
        used = await tree.used_bytes(call.user.id)
        return {"used": used, "quota": service.config.quota_bytes or None}

    @api.route("GET", "/search", query=SearchQuery)
    async def search(call: Call[None]) -> dict[str, Any]:
        """Find files by name words, type, size, date, folder and scope."""
        q: SearchQuery = call.query
        rows, cursor = await service.finder.search(call.user, q, access)
        items = [public(r, "owner" if r["owner_id"] == call.user.id else None) for r in rows]
        return {"items": items, "next_cursor": cursor}

    @api.route("GET", "/shared")
    async def shared_with_me(call: Call[None]) -> dict[str, Any]:
        """Files and folders others shared with you."""
        rows = await store.fetchall(
            "SELECT n.id, s.permission, s.created_at AS shared_at FROM files_shares s"
            " JOIN files_nodes n ON n.id = s.node_id WHERE s.user_id = ? AND n.trashed_at IS NULL"
            " ORDER BY s.created_at DESC LIMIT 500",
            call.user.id,
        )
        items = []
        for row in rows:
            node = await tree.get(row["id"])
            if node is not None:
                items.append(public(node, row["permission"]) | {"shared_at": iso(row["shared_at"])})
        return {"items": items}

    # -- trash ------------------------------------------------------------------------------

    @api.route("GET", "/trash")
    async def trash_list(call: Call[None]) -> dict[str, Any]:
        """What you trashed, newest first; purged after ``trash_days``."""
        return {"items": [public(r) for r in await tree.trash_roots(call.user.id)]}

    @api.route("DELETE", "/trash")
    async def empty_trash(call: Call[None]) -> dict[str, Any]:
        """Delete everything in your trash for good."""
        count = 0
        for node in await tree.trash_roots(call.user.id):
            count += await service.purge(node, call.user.id)
        return {"deleted_files": count}

    # -- links (public) ---------------------------------------------------------------------

    register_public_links(api, service)
    register_sharing(api, service, public_url)

    # -- one node ---------------------------------------------------------------------------

    @api.route("GET", f"/{ID}")
    async def get_node(call: Call[None]) -> dict[str, Any]:
        """A file or folder with its path from the root and your access level."""
        node, level = await access.node(call.user, call.param("file_id"), "read")
        chain = await tree.chain(node["id"])
        path = [{"id": r["id"], "name": r["name"]} for r in reversed(chain[1:])]
        return public(node, level) | {"path": path}

    @api.route("PATCH", f"/{ID}", body=NodePatch)
    async def patch_node(call: Call[NodePatch]) -> dict[str, Any]:
        """Rename and/or move (within the owner's tree)."""
        node, level = await access.node(call.user, call.param("file_id"), "write")
        if node["trashed_at"] is not None:
            raise Problem(409, "in_trash", "restore this item first")
        if call.body.parent_id is not None and call.body.parent_id != node["parent_id"]:
            target = call.body.parent_id
            if target == ROOT and level != "owner":
                raise Problem(403, "owner_only", "only the owner may move items to their root")
            if target:
                await access.node(call.user, target, "write")
            node = await tree.move(node, target)
        if call.body.name is not None and call.body.name != node["name"]:
            node = await tree.rename(node, call.body.name)
        return public(node, level)

    @api.route("DELETE", f"/{ID}", query=DeleteQuery)
    async def delete_node(call: Call[None]) -> dict[str, Any] | None:
        """Move to the trash, or with ``permanent=true`` delete for good (the owner, or an
        admin: audited)."""
        if call.user.is_admin and call.query.permanent:  # an operator removes content
            found = await tree.get(call.param("file_id")[:64])
            if found is None:
                raise Problem(404, "file_not_found", "no such file or folder")
            return {"deleted_files": await service.purge(found, call.user.id)}
        node, level = await access.node(call.user, call.param("file_id"), "write")
        if call.query.permanent:
            if level != "owner":
                raise Problem(403, "owner_only", "only the owner may delete for good")
            return {"deleted_files": await service.purge(node, call.user.id)}
        if node["trashed_at"] is not None:
            raise Problem(409, "in_trash", "already in the trash")
        await service.trash(call.user, node)
        return None

    @api.route("POST", f"/{ID}/restore")
    async def restore(call: Call[None]) -> dict[str, Any]:
        """Bring an item back from the trash (to the root if its folder is gone)."""
        node = await owned_node(service, call.user, call.param("file_id"))
        return public(await tree.restore(node), "owner")

    async def content(call: Call[None]) -> web.StreamResponse:
        node, _ = await access.node(call.user, call.param("file_id"), "read")
        if node["kind"] != "file":
            raise Problem(422, "not_a_file", "folders have no content; download their files")
        return await send(call.request, served(node, service), inline=call.query.inline)

    for method in ("GET", "HEAD"):
        api.route(method, f"/{ID}/content", query=ContentQuery, summary="Download (ranges)")(
            content
        )

    @api.route("GET", f"/{ID}/thumbnail", query=ThumbnailQuery)
    async def thumbnail(call: Call[None]) -> web.StreamResponse:
        """A JPEG thumbnail (nearest size at or above ``size``); a placeholder while pending."""
        node, _ = await access.node(call.user, call.param("file_id"), "read")
        return await thumbnail_response(call.request, service, node, call.query.size)


PLACEHOLDER = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128">'
    b'<rect width="128" height="128" rx="12" fill="#e5e7eb"/>'
    b'<path d="M40 84l18-22 14 16 10-12 16 18z" fill="#9ca3af"/>'
    b'<circle cx="82" cy="46" r="8" fill="#9ca3af"/></svg>'
)


async def thumbnail_response(
    request: web.Request, service: FilesService, node: Row, size: int
) -> web.StreamResponse:
    """The stored JPEG (with an ETag for revalidation) or, until there is one, a placeholder."""
    state = node["thumbs"] if node["kind"] == "file" else "none"
    if state == "ready":
        chosen = service.processor.thumbnail_size(size)
        etag = f'"{node["sha256"][:32]}-{chosen}"'
        headers = {"Cache-Control": "private, max-age=86400", "ETag": etag, "X-Thumbnail": "ready"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        try:
            key = thumbnail_key(node["id"], chosen)
            body = b"".join([block async for block in service.blobs.read(key)])
        except (OSError, S3Error):
            body = b""  # a size added to the config later: not made for this file
        if body:
            return web.Response(body=body, content_type="image/jpeg", headers=headers)
    if state == "pending":
        headers = {"Cache-Control": "no-store", "X-Thumbnail": "pending", "Retry-After": "2"}
    else:
        headers = {"Cache-Control": "private, max-age=3600", "X-Thumbnail": state}
    return web.Response(body=PLACEHOLDER, content_type="image/svg+xml", headers=headers)
