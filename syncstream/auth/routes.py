"""HTTP API of the auth service: ``/api/auth/*`` for everyone, ``/api/users/*`` for admins."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..api import Api, Call
from ..errors import Problem
from ..times import iso
from .models import Role
from .service import SESSION_KEY, Auth


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: str
    username: str
    role: Role
    banned: bool
    created_at: str


class TokenOut(BaseModel):
    token: str
    token_id: str
    expires_at: str
    user: UserOut


class PasswordChange(BaseModel):
    old_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class StreamKeyIn(BaseModel):
    stream: str | None = Field(None, max_length=32)


class StreamKeyOut(BaseModel):
    stream: str
    key: str
    rtmp_url: str


class UserList(BaseModel):
    users: list[UserOut]
    total: int


class UserQuery(BaseModel):
    search: str = Field("", max_length=64)
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0)


class UserPatch(BaseModel):
    role: Role | None = None
    banned: bool | None = None


def _token_out(user: Any, issued: Any) -> dict[str, Any]:
    return {
        "token": issued.token,
        "token_id": issued.id,
        "expires_at": iso(issued.expires_at),
        "user": user.public(),
    }


def register_routes(api: Api, auth: Auth, rtmp_url: str) -> None:
    """Add the auth and user-admin routes to ``api``."""

    @api.route(
        "POST", "/api/auth/register", auth="public", body=Credentials, response=TokenOut, status=201
    )
    async def register(call: Call[Credentials]) -> dict[str, Any]:
        """Create an account and log in."""
        if not auth.settings.registration:
            raise Problem(403, "registration_closed", "registration is closed on this server")
        auth.check_ip_rate(call.ip)
        user = await auth.create_user(call.body.username, call.body.password, ip=call.ip)
        issued = await auth.issue_token(
            user, ip=call.ip, user_agent=call.request.headers.get("User-Agent")
        )
        return _token_out(user, issued)

    @api.route("POST", "/api/auth/login", auth="public", body=Credentials, response=TokenOut)
    async def login(call: Call[Credentials]) -> dict[str, Any]:
        """Exchange a username and password for a bearer token."""
        user, issued = await auth.login(
            call.body.username,
            call.body.password,
            ip=call.ip,
            user_agent=call.request.headers.get("User-Agent"),
        )
        return _token_out(user, issued)

    @api.route("POST", "/api/auth/logout")
    async def logout(call: Call[None]) -> None:
        """Revoke the token used for this call."""
        await auth.revoke_token(call.user.id, call.request[SESSION_KEY].token_id, ip=call.ip)

    @api.route("GET", "/api/auth/me", response=UserOut)
    async def me(call: Call[None]) -> dict[str, Any]:
        """The caller's account."""
        return call.user.public()

    @api.route("GET", "/api/auth/tokens")
    async def tokens(call: Call[None]) -> dict[str, Any]:
        """The caller's active tokens (sessions)."""
        rows = await auth.list_tokens(call.user.id)
        current = call.request[SESSION_KEY].token_id
        return {
            "tokens": [
                {
                    **row,
                    "created_at": iso(row["created_at"]),
                    "expires_at": iso(row["expires_at"]),
                    "last_used_at": iso(row["last_used_at"]),
                    "current": row["id"] == current,
                }
                for row in rows
            ]
        }

    @api.route("DELETE", "/api/auth/tokens/{token_id}")
    async def revoke(call: Call[None]) -> None:
        """Revoke one of the caller's tokens (log out another device)."""
        await auth.revoke_token(call.user.id, call.param("token_id"), ip=call.ip)

    @api.route("POST", "/api/auth/password", body=PasswordChange)
    async def password(call: Call[PasswordChange]) -> None:
        """Change the password; every other token of the caller is revoked."""
        await auth.change_password(
            call.user,
            call.body.old_password,
            call.body.new_password,
            keep_token=call.request[SESSION_KEY].token_id,
            ip=call.ip,
        )

    @api.route("POST", "/api/auth/stream-key", body=StreamKeyIn, response=StreamKeyOut)
    async def stream_key(call: Call[StreamKeyIn]) -> dict[str, Any]:
        """Create or rotate the RTMP stream key of one of the caller's streams (shown once)."""
        stream, key = await auth.rotate_stream_key(call.user, call.body.stream)
        return {"stream": stream, "key": key, "rtmp_url": rtmp_url}

    @api.route("GET", "/api/auth/streams")
    async def streams(call: Call[None]) -> dict[str, Any]:
        """The caller's stream names (keys are never shown again)."""
        rows = await auth.list_streams(call.user.id)
        return {
            "streams": [{"stream": r["stream"], "created_at": iso(r["created_at"])} for r in rows]
        }

    @api.route("GET", "/api/users", auth="admin", query=UserQuery, response=UserList)
    async def list_users(call: Call[None]) -> dict[str, Any]:
        """Search accounts (admin)."""
        q: UserQuery = call.query
        users, total = await auth.list_users(q.search, q.limit, q.offset)
        return {"users": [u.public() for u in users], "total": total}

    @api.route("PATCH", "/api/users/{user_id}", auth="admin", body=UserPatch, response=UserOut)
    async def patch_user(call: Call[UserPatch]) -> dict[str, Any]:
        """Change an account's role or ban state (admin)."""
        user_id = call.param("user_id")
        if user_id == call.user.id and (call.body.banned or call.body.role == "user"):
            raise Problem(409, "cannot_demote_self", "admins cannot ban or demote themselves")
        user = await auth.get_user(user_id)
        if call.body.role is not None and call.body.role != user.role:
            user = await auth.set_role(user_id, call.body.role, actor=call.user, ip=call.ip)
        if call.body.banned is not None and call.body.banned != user.banned:
            user = await auth.set_banned(user_id, call.body.banned, actor=call.user, ip=call.ip)
        return user.public()
