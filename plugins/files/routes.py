"""The JSON API of the files plugin under ``/api/files`` (tus lives in :mod:`.tus`)."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, Field

from syncstream import Call, Problem, User
from syncstream.api import ScopedApi
from syncstream.auth.passwords import hash_password, verify_password
from syncstream.store import Row
from syncstream.times import iso, iso_or_none

from .download import Served, send
from .search import FolderQuery, SearchQuery
from .service import FilesService
from .tree import ROOT, public

ID = r"{file_id:[0-9a-f]{32}}"


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


class ContentQuery(BaseModel):
    inline: bool = Field(False, description="Show in the browser (safe types only)")


class ThumbnailQuery(BaseModel):
    size: int = Field(128, ge=1, le=4096)


class ShareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    permission: Literal["read", "write"] = "read"


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_in_seconds: float | None = Field(None, gt=0, le=10 * 365 * 86400)
    password: str | None = Field(None, min_length=1, max_length=256)
    max_downloads: int | None = Field(None, ge=1, le=1_000_000)


class LinkBrowse(FolderQuery):
    pass


def served(node: Row, service: FilesService) -> Served:
    return Served(
        path=service.blobs.path(node["id"]),
        size=int(node["size"]),
        mime=node["mime"],
        name=node["name"],
        sha256=node["sha256"],
        modified=float(node["modified_at"]),
    )


def link_public(row: Row, base: str) -> dict[str, Any]:
    return {
        "token": row["token"],
        "url": f"{base}/api/files/links/{row['token']}",
        "node_id": row["node_id"],
        "created_at": iso(row["created_at"]),
        "expires_at": iso_or_none(row["expires_at"]),
        "has_password": row["password_hash"] is not None,
        "max_downloads": row["max_downloads"],
        "downloads": row["downloads"],
    }


def register(api: ScopedApi, service: FilesService, public_url: str) -> None:
    """Every ``/api/files`` JSON route (static paths first: ``{file_id}`` matches ids only)."""
    tree, access, store = service.tree, service.access, service.store

    async def owned_node(user: User, file_id: str) -> Row:
        node, level = await access.node(user, file_id, "read")
        if level != "owner":
            raise Problem(403, "owner_only", "only the owner may do this")
        return node

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
    async def upload_form(call: Call[None]) -> dict[str, Any]:
        """Plain ``multipart/form-data`` upload of small files (fields ``parent_id``, ``file``)."""
        return await form_upload(call, service)

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
        return await run_search(service, call.user, q)

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

    register_link_routes(api, service, public_url)

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
        """Move to the trash, or with ``permanent=true`` delete for good (owner only)."""
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
        node = await owned_node(call.user, call.param("file_id"))
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
        return await thumbnail_response(service, node, call.query.size)

    # -- shares -----------------------------------------------------------------------------

    @api.route("GET", f"/{ID}/shares")
    async def list_shares(call: Call[None]) -> dict[str, Any]:
        """Who this item is shared with (owner only)."""
        node = await owned_node(call.user, call.param("file_id"))
        rows = await store.fetchall(
            "SELECT s.user_id, u.username, s.permission, s.created_at FROM files_shares s"
            " JOIN users u ON u.id = s.user_id WHERE s.node_id = ? ORDER BY u.username",
            node["id"],
        )
        return {
            "shares": [
                {
                    "user_id": r["user_id"],
                    "username": r["username"],
                    "permission": r["permission"],
                    "created_at": iso(r["created_at"]),
                }
                for r in rows
            ]
        }

    @api.route("PUT", f"/{ID}/shares/{{username}}", body=ShareIn)
    async def put_share(call: Call[ShareIn]) -> dict[str, Any]:
        """Share with a user (read or write; inherited by everything inside a folder)."""
        node = await owned_node(call.user, call.param("file_id"))
        if node["trashed_at"] is not None:
            raise Problem(409, "in_trash", "restore this item first")
        target = await service.users.find_user(call.param("username"))
        if target is None:
            raise Problem(404, "user_not_found", "no such user")
        if target.id == call.user.id:
            raise Problem(422, "share_with_self", "you own this already")
        await store.execute(
            "INSERT INTO files_shares (node_id, user_id, permission, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (node_id, user_id)"
            " DO UPDATE SET permission = excluded.permission",
            node["id"],
            target.id,
            call.body.permission,
            call.user.id,
            time.time(),
        )
        await service.audit.record(
            "file.shared",
            actor_id=call.user.id,
            target=node["id"],
            ip=call.ip,
            with_user=target.id,
            permission=call.body.permission,
        )
        event = {
            "file_id": node["id"],
            "name": node["name"],
            "owner_id": node["owner_id"],
            "user_id": target.id,
            "permission": call.body.permission,
        }
        await service.bus.fire("file.shared", event)
        return {"user_id": target.id, "username": target.username, **call.body.model_dump()}

    @api.route("DELETE", f"/{ID}/shares/{{username}}")
    async def delete_share(call: Call[None]) -> None:
        """Stop sharing with a user; effective at once."""
        node = await owned_node(call.user, call.param("file_id"))
        target = await service.users.find_user(call.param("username"))
        removed = 0
        if target is not None:
            removed = await store.execute(
                "DELETE FROM files_shares WHERE node_id = ? AND user_id = ?", node["id"], target.id
            )
        if not removed:
            raise Problem(404, "share_not_found", "this item is not shared with that user")
        await service.audit.record(
            "file.unshared",
            actor_id=call.user.id,
            target=node["id"],
            with_user=call.param("username"),
        )

    # -- links (owner side) -----------------------------------------------------------------

    @api.route("POST", f"/{ID}/links", body=LinkIn, status=201)
    async def create_link(call: Call[LinkIn]) -> dict[str, Any]:
        """A public link, with optional expiry, password and download limit."""
        node = await owned_node(call.user, call.param("file_id"))
        if node["trashed_at"] is not None:
            raise Problem(409, "in_trash", "restore this item first")
        body = call.body
        row: Row = {
            "token": secrets.token_urlsafe(18),
            "node_id": node["id"],
            "created_by": call.user.id,
            "created_at": time.time(),
            "expires_at": time.time() + body.expires_in_seconds
            if body.expires_in_seconds
            else None,
            "password_hash": await hash_password(body.password) if body.password else None,
            "max_downloads": body.max_downloads,
            "downloads": 0,
        }
        await store.execute(
            f"INSERT INTO files_links ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            *row.values(),
        )
        await service.audit.record("file.link_created", actor_id=call.user.id, target=node["id"])
        await service.bus.fire(
            "file.shared", {"file_id": node["id"], "owner_id": node["owner_id"], "link": True}
        )
        return link_public(row, public_url)

    @api.route("GET", f"/{ID}/links")
    async def list_links(call: Call[None]) -> dict[str, Any]:
        """The item's live public links."""
        node = await owned_node(call.user, call.param("file_id"))
        rows = await store.fetchall(
            "SELECT * FROM files_links WHERE node_id = ? AND revoked_at IS NULL"
            " ORDER BY created_at DESC",
            node["id"],
        )
        return {"links": [link_public(r, public_url) for r in rows]}


async def run_search(service: FilesService, user: User, q: SearchQuery) -> dict[str, Any]:
    where: list[str] = []
    args: list[Any] = []
    prefix = ""
    prefix_args: list[Any] = []
    shared = (
        "shared(id) AS (SELECT node_id FROM files_shares WHERE user_id = ?"
        " UNION SELECT c.id FROM files_nodes c JOIN shared s ON c.parent_id = s.id)"
    )
    ctes: list[str] = []
    if q.scope == "mine":
        where.append("n.owner_id = ?")
        args.append(user.id)
    else:
        ctes.append(shared)
        prefix_args.append(user.id)
        if q.scope == "shared":
            where.append("n.id IN (SELECT id FROM shared) AND n.owner_id <> ?")
            args.append(user.id)
        else:
            where.append("(n.owner_id = ? OR n.id IN (SELECT id FROM shared))")
            args.append(user.id)
    if q.folder:
        await service.access.node(user, q.folder, "read")
        ctes.append(
            "below(id) AS (SELECT id FROM files_nodes WHERE parent_id = ?"
            " UNION SELECT c.id FROM files_nodes c JOIN below b ON c.parent_id = b.id)"
        )
        prefix_args.append(q.folder)
        where.append("n.id IN (SELECT id FROM below)")
    match = service.finder.name_match(q.q)
    if match is not None:
        where.append(match[0])
        args.append(match[1])
    if ctes:
        prefix = "WITH RECURSIVE " + ", ".join(ctes)
    rows, cursor = await service.finder.page(
        q, where=where, args=args, prefix=prefix, prefix_args=tuple(prefix_args)
    )
    items = [public(r, "owner" if r["owner_id"] == user.id else None) for r in rows]
    return {"items": items, "next_cursor": cursor}


async def form_upload(call: Call[None], service: FilesService) -> dict[str, Any]:
    """Stream each ``file`` part of a multipart form into an upload, then into a file."""
    try:
        reader = await call.request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise Problem(415, "unsupported_media_type", "send multipart/form-data") from None
    parent_id = ""
    files: list[dict[str, Any]] = []
    limit = service.config.multipart_max_bytes
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise Problem(422, "invalid_form", "nested multipart is not supported")
        if part.name == "parent_id" and part.filename is None:
            parent_id = (await part.text())[:64]
            continue
        if part.name != "file" or part.filename is None:
            raise Problem(422, "invalid_form", f"unexpected form field {str(part.name)[:40]!r}")
        owner_id, parent = await service.access.folder(call.user, parent_id, "write")
        upload = await service.uploads.create(
            owner_id=owner_id,
            parent_id=parent,
            created_by=call.user.id,
            name=part.filename,
            length=None,
        )
        try:
            upload = await service.uploads.append(upload, 0, _part_chunks(part), limit=limit)
            node = await service.uploads.complete(upload)
        except BaseException:
            await service.uploads.delete(upload)
            raise
        files.append(public(node, "owner" if owner_id == call.user.id else "write"))
    if not files:
        raise Problem(422, "invalid_form", "the form has no 'file' part")
    return {"files": files}


async def _part_chunks(part: BodyPartReader) -> Any:
    while chunk := await part.read_chunk(1 << 20):
        yield chunk


PLACEHOLDER = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128">'
    b'<rect width="128" height="128" rx="12" fill="#e5e7eb"/>'
    b'<path d="M40 84l18-22 14 16 10-12 16 18z" fill="#9ca3af"/>'
    b'<circle cx="82" cy="46" r="8" fill="#9ca3af"/></svg>'
)


async def thumbnail_response(service: FilesService, node: Row, size: int) -> web.StreamResponse:
    state = node["thumbs"] if node["kind"] == "file" else "none"
    if state == "ready":
        sizes = service.processor.sizes
        chosen = next((s for s in sizes if s >= size), sizes[-1])
        path = service.processor.thumbnail_path(node["id"], chosen)
        if path.exists():
            return web.FileResponse(
                path,
                headers={
                    "Content-Type": "image/jpeg",
                    "Cache-Control": "private, max-age=86400",
                    "X-Thumbnail": "ready",
                },
            )
    if state == "pending":
        headers = {"Cache-Control": "no-store", "X-Thumbnail": "pending", "Retry-After": "2"}
    else:
        headers = {"Cache-Control": "private, max-age=3600", "X-Thumbnail": state}
    return web.Response(body=PLACEHOLDER, content_type="image/svg+xml", headers=headers)


def register_link_routes(api: ScopedApi, service: FilesService, public_url: str) -> None:
    """Public links: anyone with the token (and the password, if set) may read."""
    store, tree = service.store, service.tree

    async def live_link(request: web.Request) -> tuple[Row, Row]:
        token = request.match_info["token"]
        row = await store.fetchone("SELECT * FROM files_links WHERE token = ?", token[:64])
        now = time.time()
        if row is None or row["revoked_at"] is not None:
            raise Problem(404, "link_not_found", "no such link, or it was revoked")
        if row["expires_at"] is not None and row["expires_at"] < now:
            raise Problem(410, "link_expired", "this link has expired")
        node = await tree.get(row["node_id"])
        if node is None or node["trashed_at"] is not None:
            raise Problem(404, "link_not_found", "the shared item is gone")
        if row["password_hash"] is not None:
            given = request.headers.get("Link-Password", "")
            if not given or not await verify_password(row["password_hash"], given):
                raise Problem(401, "link_password_required", "send the password as Link-Password")
        return row, node

    async def within(link_node: Row, file_id: str) -> Row:
        node = await tree.get(file_id)
        if node is None or node["trashed_at"] is not None:
            raise Problem(404, "file_not_found", "no such file in this link")
        if node["id"] != link_node["id"]:
            chain = {r["id"] for r in await tree.chain(node["id"])}
            if link_node["id"] not in chain:
                raise Problem(404, "file_not_found", "no such file in this link")
        return node

    @api.route("GET", "/links/{token}", auth="public", query=LinkBrowse)
    async def open_link(call: Call[None]) -> dict[str, Any]:
        """What a link shares; for a folder, a page of the folder (``parent`` inside it)."""
        link, node = await live_link(call.request)
        info: dict[str, Any] = {
            "item": public(node),
            "expires_at": iso_or_none(link["expires_at"]),
            "downloads_left": None
            if link["max_downloads"] is None
            else max(0, link["max_downloads"] - link["downloads"]),
        }
        if node["kind"] == "folder":
            q: LinkBrowse = call.query
            parent = node if not q.parent else await within(node, q.parent)
            if parent["kind"] != "folder":
                raise Problem(422, "not_a_folder", "parent is a file")
            rows, cursor = await service.finder.page(
                q, where=["n.parent_id = ?"], args=[parent["id"]]
            )
            info |= {"items": [public(r) for r in rows], "next_cursor": cursor}
        return info

    async def link_download(call: Call[None]) -> web.StreamResponse:
        link, node = await live_link(call.request)
        file_id = call.request.match_info.get("file_id")
        if file_id:
            node = await within(node, file_id)
        if node["kind"] != "file":
            raise Problem(422, "not_a_file", "folders have no content; download their files")
        starts_download = call.request.method == "GET" and _starts_at_zero(call.request)
        if starts_download and link["max_downloads"] is not None:
            counted = await store.execute(
                "UPDATE files_links SET downloads = downloads + 1 WHERE token = ?"
                " AND downloads < max_downloads",
                link["token"],
            )
            if not counted:
                raise Problem(410, "link_exhausted", "this link's download limit is reached")
        elif starts_download:
            await store.execute(
                "UPDATE files_links SET downloads = downloads + 1 WHERE token = ?", link["token"]
            )
        return await send(call.request, served(node, service), inline=call.query.inline)

    for method in ("GET", "HEAD"):
        for path in ("/links/{token}/content", f"/links/{{token}}/files/{ID}/content"):
            api.route(method, path, auth="public", query=ContentQuery, summary="Download by link")(
                link_download
            )

    @api.route("DELETE", "/links/{token}")
    async def revoke_link(call: Call[None]) -> None:
        """Revoke a link you made; it stops working at once."""
        row = await store.fetchone(
            "SELECT token, node_id, created_by FROM files_links WHERE token = ?",
            call.param("token")[:64],
        )
        node = None if row is None else await tree.get(row["node_id"])
        if row is None or node is None or node["owner_id"] != call.user.id:
            raise Problem(404, "link_not_found", "no such link")
        await store.execute(
            "UPDATE files_links SET revoked_at = ? WHERE token = ?", time.time(), row["token"]
        )
        await service.audit.record("file.link_revoked", actor_id=call.user.id, target=node["id"])


def _starts_at_zero(request: web.Request) -> bool:
    """True unless the request resumes a download (a Range not starting at byte 0)."""
    header = request.headers.get("Range", "")
    return not header or header.replace(" ", "").startswith("bytes=0-")
