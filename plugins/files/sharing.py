"""Sharing: shares with users, public links (made by owners, opened by anyone with them)."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import (
    Call,
    Problem,
    Row,
    ScopedApi,
    hash_password,
    iso,
    iso_or_none,
    verify_password,
)

from .download import send
from .endpoints import ID, ContentQuery, owned_node, served
from .search import FolderQuery
from .service import FilesService
from .tree import public


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


def register_sharing(api: ScopedApi, service: FilesService, public_url: str) -> None:
    """Shares and the owner's side of links, under ``/api/files/{file_id}/``."""
    store = service.store

    # -- shares -----------------------------------------------------------------------------

    @api.route("GET", f"/{ID}/shares")
    async def list_shares(call: Call[None]) -> dict[str, Any]:
        """Who this item is shared with (owner only)."""
        node = await owned_node(service, call.user, call.param("file_id"))
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
        node = await owned_node(service, call.user, call.param("file_id"))
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
        node = await owned_node(service, call.user, call.param("file_id"))
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
        node = await owned_node(service, call.user, call.param("file_id"))
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
        node = await owned_node(service, call.user, call.param("file_id"))
        rows = await store.fetchall(
            "SELECT * FROM files_links WHERE node_id = ? AND revoked_at IS NULL"
            " ORDER BY created_at DESC",
            node["id"],
        )
        return {"links": [link_public(r, public_url) for r in rows]}

    @api.route("GET", "/links", auth="admin")
    async def all_links(call: Call[None]) -> dict[str, Any]:
        """Every live public link, newest first, with its item and owner (admin)."""
        rows = await store.fetchall(
            "SELECT l.*, n.name, n.kind, u.username AS owner FROM files_links l"
            " JOIN files_nodes n ON n.id = l.node_id JOIN users u ON u.id = n.owner_id"
            " WHERE l.revoked_at IS NULL AND (l.expires_at IS NULL OR l.expires_at > ?)"
            " ORDER BY l.created_at DESC LIMIT 500",
            time.time(),
        )
        return {"links": [{**link_public(r, public_url), "name": r["name"], "kind": r["kind"],
                           "owner": r["owner"]} for r in rows]}  # fmt: skip


def register_public_links(api: ScopedApi, service: FilesService) -> None:
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
        """Revoke a link to your file (or, as an admin, anyone's); it stops working at once."""
        row = await store.fetchone(
            "SELECT token, node_id, created_by FROM files_links WHERE token = ?",
            call.param("token")[:64],
        )
        node = None if row is None else await tree.get(row["node_id"])
        mine = node is not None and node["owner_id"] == call.user.id
        if row is None or node is None or not (mine or call.user.is_admin):
            raise Problem(404, "link_not_found", "no such link")
        await store.execute(
            "UPDATE files_links SET revoked_at = ? WHERE token = ?", time.time(), row["token"]
        )
        await service.audit.record("file.link_revoked", actor_id=call.user.id, target=node["id"])


def _starts_at_zero(request: web.Request) -> bool:
    """True unless the request resumes a download (a Range not starting at byte 0)."""
    header = request.headers.get("Range", "")
    return not header or header.replace(" ", "").startswith("bytes=0-")
