"""Accounts, for the operator: list (search, filters, sort, pages), one user's whole picture,
and what an operator may do to an account, each audited. Role changes and bans are the
core's ``PATCH /api/users/{id}`` (a ban revokes every token: sockets close, and the live
core and the calls plugin end the user's streams and calls on ``user.banned``)."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Audit, Auth, Call, Oversight, ScopedApi, iso, iso_or_none

from .activity import named

USER = "/users/{user_id:[0-9a-f]{32}}"
SORTS = {"username": "u.username_key", "created_at": "u.created_at", "last_seen": "u.last_seen_at"}


class UserQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    search: str = Field("", max_length=64, description="Part of the username")
    role: Literal["user", "admin"] | None = None
    banned: bool | None = None
    sort: Literal["username", "created_at", "last_seen"] = "username"
    order: Literal["asc", "desc"] = "asc"
    limit: int = Field(25, ge=1, le=200)
    offset: int = Field(0, ge=0, le=1_000_000)


class StreamKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


def register_users(api: ScopedApi, auth: Auth, audit: Audit, oversight: Oversight) -> None:
    store = auth.store

    @api.route("GET", "/users", auth="admin", query=UserQuery)
    async def list_users(call: Call[None]) -> dict[str, Any]:
        """Accounts: search by name, filter by role and ban, sort, page."""
        q: UserQuery = call.query
        where, args = ["u.username_key LIKE ?"], list[Any]([f"%{q.search.lower()}%"])
        if q.role is not None:
            where.append("u.role = ?")
            args.append(q.role)
        if q.banned is not None:
            where.append("u.banned = ?")
            args.append(int(q.banned))
        clause = " AND ".join(where)
        total = await store.fetchval(f"SELECT COUNT(*) FROM users u WHERE {clause}", *args)
        rows = await store.fetchall(
            "SELECT u.id, u.username, u.role, u.banned, u.created_at, u.last_seen_at,"
            " (SELECT COUNT(*) FROM tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL"
            "  AND t.expires_at > ?) AS sessions"
            f" FROM users u WHERE {clause}"
            f" ORDER BY {SORTS[q.sort]} {q.order.upper()} NULLS LAST, u.id LIMIT ? OFFSET ?",
            time.time(), *args, q.limit, q.offset,
        )  # fmt: skip
        return {"users": [_user_row(r) for r in rows], "total": int(total)}

    @api.route("GET", USER, auth="admin")
    async def get_user(call: Call[None]) -> dict[str, Any]:
        """One user: account, sessions, what every plugin knows, recent activity."""
        user = await auth.get_user(call.param("user_id"))
        sessions = await auth.list_tokens(user.id)
        return {
            "user": user.public(),
            "sessions": [{**s, "created_at": iso(s["created_at"]),
                          "last_used_at": iso(s["last_used_at"]),
                          "expires_at": iso(s["expires_at"])} for s in sessions],
            "facts": await oversight.user_facts(user.id),
            "activity": await named(auth, await audit.query(user_id=user.id, limit=20)),
        }  # fmt: skip

    @api.route("POST", USER + "/password", auth="admin")
    async def reset_password(call: Call[None]) -> dict[str, Any]:
        """A new random password (shown once); every session of the user ends."""
        user = await auth.get_user(call.param("user_id"))
        password = secrets.token_urlsafe(12)
        await auth.reset_password(user.id, password, via="admin", actor_id=call.user.id,
                                  ip=call.ip)  # fmt: skip
        return {"password": password}

    @api.route("POST", USER + "/revoke-tokens", auth="admin")
    async def revoke_tokens(call: Call[None]) -> dict[str, Any]:
        """End every session of the user (their sockets close at once)."""
        user = await auth.get_user(call.param("user_id"))
        count = len(await auth.list_tokens(user.id))
        await auth.revoke_all(user.id, reason="revoked_by_admin")
        await audit.record("admin.tokens_revoked", actor_id=call.user.id, target=user.id,
                           ip=call.ip, count=count)  # fmt: skip
        return {"revoked": count}

    @api.route("POST", USER + "/stream-key", auth="admin", body=StreamKeyIn)
    async def rotate_stream_key(call: Call[StreamKeyIn]) -> dict[str, Any]:
        """A new stream key for one of the user's streams (the old key stops working)."""
        user = await auth.get_user(call.param("user_id"))
        stream, key = await auth.rotate_stream_key(user, call.body.stream)
        await audit.record("admin.stream_key_rotated", actor_id=call.user.id, target=user.id,
                           ip=call.ip, stream=stream)  # fmt: skip
        return {"stream": stream, "key": key}


def _user_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "username": row["username"], "role": row["role"],
            "banned": bool(row["banned"]), "created_at": iso(row["created_at"]),
            "last_seen_at": iso_or_none(row["last_seen_at"]),
            "sessions": int(row["sessions"])}  # fmt: skip
