"""The chat API under ``/api/chat``."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Call, Problem, ScopedApi, User, idempotency_key, json_response

from .messages import message_public
from .rooms import room_public
from .service import ChatService

ROOM = "/rooms/{room_id:[0-9a-f]{32}}"
MESSAGE = ROOM + "/messages/{message_id:[0-9a-f]{32}}"


class RoomIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    topic: str = Field("", max_length=500)
    visibility: Literal["public", "invite"] = "invite"
    members: list[str] = Field(default_factory=list, max_length=100, description="Usernames")


class RoomPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100)
    topic: str | None = Field(None, max_length=500)
    visibility: Literal["public", "invite"] | None = None
    slow_mode_seconds: float | None = Field(None, ge=0, le=3600)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field("", max_length=200_000)
    client_key: str | None = Field(None, max_length=64, description="Idempotency key")
    reply_to: str | None = Field(None, max_length=64)
    attachments: list[str] = Field(default_factory=list, max_length=100, description="File ids")


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=200_000)


class HistoryQuery(BaseModel):
    before: int | None = Field(
        None, ge=1, description="Messages before this seq (newest first page)"
    )
    after: int | None = Field(None, ge=0, description="Messages after this seq (oldest first)")
    limit: int = Field(50, ge=1, le=500)
    q: str = Field("", max_length=200, description="Words the text contains")
    thread: str | None = Field(None, max_length=64, description="A message and its replies")


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: int = Field(ge=0)


class SyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    positions: dict[str, int] = Field(
        default_factory=dict, description="Room id -> the last version seen (0: none)"
    )


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["online", "away"]


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["moderator", "member"]


class ModerationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["mute", "unmute", "kick", "ban", "unban"]
    username: str = Field(max_length=64)
    seconds: float | None = Field(None, gt=0, le=10 * 365 * 86400, description="None: for ever")
    reason: str = Field("", max_length=500)


def register(api: ScopedApi, chat: ChatService) -> None:
    rooms, messages = chat.rooms, chat.messages

    async def user_named(username: str) -> User:
        user = await chat.auth.find_user(username)
        if user is None:
            raise Problem(404, "user_not_found", f"no user {username[:64]!r}")
        return user

    @api.route("POST", "/rooms", body=RoomIn, status=201)
    async def create_room(call: Call[RoomIn]) -> dict[str, Any]:
        """A group room; you own it. ``members`` are added at once."""
        members = [await user_named(name) for name in call.body.members]
        room = await rooms.create_group(
            call.user, call.body.name, call.body.topic, call.body.visibility, members
        )
        return room_public(room, await rooms.member(room["id"], call.user.id))

    @api.route("GET", "/rooms")
    async def my_rooms(call: Call[None]) -> dict[str, Any]:
        """Your rooms, most recently active first, with unread counts."""
        rows = await rooms.rooms_of(call.user.id)
        return {"rooms": [room_public(r, r) | {"unread": r["unread"]} for r in rows]}

    @api.route("GET", "/rooms/public")
    async def public_rooms(call: Call[None]) -> dict[str, Any]:
        """Public group rooms anyone may join."""
        rows = await chat.store.fetchall(
            "SELECT r.*, (SELECT COUNT(*) FROM chat_members m WHERE m.room_id = r.id) AS members"
            " FROM chat_rooms r WHERE r.kind = 'group' AND r.visibility = 'public'"
            " ORDER BY r.last_seq DESC LIMIT 200"
        )
        return {"rooms": [room_public(r) | {"members": r["members"]} for r in rows]}

    @api.route("POST", "/direct/{username}")
    async def direct(call: Call[None]) -> dict[str, Any]:
        """Your direct chat with a user (made on first use, one per pair)."""
        other = await user_named(call.param("username"))
        room = await rooms.direct(call.user, other)
        return room_public(room, await rooms.member(room["id"], call.user.id)) | {
            "with": {"id": other.id, "username": other.username}
        }

    @api.route("GET", "/streams/{stream}")
    async def stream_room(call: Call[None]) -> dict[str, Any]:
        """The chat room beside a live stream (public: join it to write)."""
        room = await rooms.stream_room(call.param("stream")[:64])
        return room_public(room, await rooms.member(room["id"], call.user.id))

    @api.route("GET", ROOM)
    async def get_room(call: Call[None]) -> dict[str, Any]:
        room, member = await rooms.readable(call.user, call.param("room_id"))
        count = await chat.store.fetchval(
            "SELECT COUNT(*) FROM chat_members WHERE room_id = ?", room["id"]
        )
        return room_public(room, member) | {"members": count}

    @api.route("PATCH", ROOM, body=RoomPatch)
    async def patch_room(call: Call[RoomPatch]) -> dict[str, Any]:
        """Name, topic and visibility (owner); slow mode (moderators)."""
        body = call.body.model_dump(exclude_none=True)
        needed = "owner" if {"name", "visibility"} & set(body) else "moderator"
        room, member = await rooms.joined(call.user, call.param("room_id"), needed)  # type: ignore[arg-type]
        if room["kind"] != "group" and {"name", "visibility"} & set(body):
            raise Problem(409, "not_a_group", "only group rooms have a name and visibility")
        if body:
            assignments = ", ".join(f"{k} = ?" for k in body)
            await chat.store.execute(
                f"UPDATE chat_rooms SET {assignments} WHERE id = ?", *body.values(), room["id"]
            )
            await chat.audit.record(
                "chat.room_changed", actor_id=call.user.id, target=room["id"], **body
            )
            if body.get("visibility") == "invite":  # readers who are not members lose it
                await chat.revoke(room["id"], None, "room_private", recheck=True)
        room = await rooms.get(room["id"])
        await chat.gateway.publish(
            f"chat:{room['id']}", {"type": "room", "room": room_public(room)}
        )
        return room_public(room, member)

    @api.route("POST", ROOM + "/join")
    async def join(call: Call[None]) -> dict[str, Any]:
        """Join a public room."""
        room = await rooms.get(call.param("room_id"))
        if room["visibility"] != "public" or room["kind"] == "direct":
            raise Problem(404, "room_not_found", "no such public room")
        await rooms.add_member(room, call.user.id)
        await chat.gateway.publish(f"chat:{room['id']}", {"type": "join", "user_id": call.user.id})
        return room_public(room, await rooms.member(room["id"], call.user.id))

    @api.route("POST", ROOM + "/leave")
    async def leave(call: Call[None]) -> None:
        """Leave a room (direct chats cannot be left; block the user instead)."""
        room, _ = await rooms.joined(call.user, call.param("room_id"))
        if room["kind"] == "direct":
            raise Problem(409, "direct_room", "direct chats cannot be left; block instead")
        await rooms.remove_member(room["id"], call.user.id)
        await chat.revoke(room["id"], call.user.id, "left")
        await chat.gateway.publish(f"chat:{room['id']}", {"type": "leave", "user_id": call.user.id})

    @api.route("GET", ROOM + "/members")
    async def members(call: Call[None]) -> dict[str, Any]:
        room, _ = await rooms.readable(call.user, call.param("room_id"))
        rows = await chat.store.fetchall(
            "SELECT u.id, u.username, m.role, m.joined_at, m.last_read_seq FROM chat_members m"
            " JOIN users u ON u.id = m.user_id WHERE m.room_id = ? ORDER BY u.username LIMIT 1000",
            room["id"],
        )
        return {"members": rows}

    @api.route("POST", ROOM + "/members", body=MemberIn, status=201)
    async def invite(call: Call[MemberIn]) -> dict[str, Any]:
        """Add a user (moderators; any member may add to a public room)."""
        room, member = await rooms.joined(call.user, call.param("room_id"))
        if room["visibility"] != "public" and member["role"] == "member" and not call.user.is_admin:
            raise Problem(403, "forbidden", "only moderators invite to this room")
        other = await user_named(call.body.username)
        await rooms.add_member(room, other.id)
        await chat.gateway.publish(f"chat:{room['id']}", {"type": "join", "user_id": other.id})
        return {"user_id": other.id, "username": other.username, "role": "member"}

    @api.route("PUT", ROOM + "/members/{username}/role", body=RoleIn)
    async def set_role(call: Call[RoleIn]) -> dict[str, Any]:
        """Make a member a moderator or a member again (owner)."""
        room, _ = await rooms.joined(call.user, call.param("room_id"), "owner")
        other = await user_named(call.param("username"))
        changed = await chat.store.execute(
            "UPDATE chat_members SET role = ? WHERE room_id = ? AND user_id = ?"
            " AND role <> 'owner'",
            call.body.role,
            room["id"],
            other.id,
        )
        if not changed:
            raise Problem(404, "member_not_found", "that user is not a (non-owner) member")
        await chat.audit.record(
            "chat.role",
            actor_id=call.user.id,
            target=other.id,
            room_id=room["id"],
            role=call.body.role,
        )
        return {"user_id": other.id, "role": call.body.role}

    @api.route("POST", ROOM + "/moderation", body=ModerationIn)
    async def moderation(call: Call[ModerationIn]) -> dict[str, Any]:
        """Mute, unmute, kick, ban (optionally for ``seconds``) or unban a member."""
        body = call.body
        target = await user_named(body.username)
        await chat.moderate(
            call.user,
            call.param("room_id"),
            body.action,
            target,
            body.seconds,
            body.reason,
            call.ip,
        )
        return {"action": body.action, "user_id": target.id}

    @api.route("POST", ROOM + "/messages", body=MessageIn, status=201)
    async def send(call: Call[MessageIn]) -> Any:
        """Send a message. A retry with the same ``client_key`` (or ``Idempotency-Key``
        header) returns the stored message with 200 instead of sending it twice."""
        key = call.body.client_key or idempotency_key(call.request.headers)
        row, created = await chat.send(
            call.user, call.param("room_id"), call.body.text, client_key=key,
            reply_to=call.body.reply_to, attachments=call.body.attachments,
        )  # fmt: skip
        message = message_public(row, await messages.usernames({row["user_id"]}))
        return message if created else json_response(message, 200)

    @api.route("GET", ROOM + "/messages", query=HistoryQuery)
    async def history(call: Call[None]) -> dict[str, Any]:
        """A page of history by seq: ``before`` for older, ``after`` for newer; ``q`` searches."""
        q: HistoryQuery = call.query
        room, _ = await rooms.readable(call.user, call.param("room_id"))
        rows = await messages.history(
            room["id"], before=q.before, after=q.after, limit=q.limit, query=q.q, thread=q.thread
        )
        names = await messages.usernames({r["user_id"] for r in rows})
        return {"messages": [message_public(r, names) for r in rows], "last_seq": room["last_seq"]}

    @api.route("PATCH", MESSAGE, body=EditIn)
    async def edit(call: Call[EditIn]) -> dict[str, Any]:
        """Edit your message (marked edited)."""
        row = await chat.edit(
            call.user, call.param("room_id"), call.param("message_id"), call.body.text
        )
        return message_public(row)

    @api.route("DELETE", MESSAGE)
    async def delete(call: Call[None]) -> dict[str, Any]:
        """Delete a message (yours; moderators and admins any): a tombstone stays."""
        row = await chat.delete(call.user, call.param("room_id"), call.param("message_id"), call.ip)
        return message_public(row)

    for method, on in (("PUT", True), ("DELETE", False)):

        async def react(call: Call[None], on: bool = on) -> dict[str, Any]:
            row = await chat.react(
                call.user, call.param("room_id"), call.param("message_id"), call.param("emoji"), on
            )
            return message_public(row)

        api.route(
            method,
            MESSAGE + "/reactions/{emoji}",
            summary=f"{'Add' if on else 'Remove'} a reaction",
        )(react)

    @api.route("POST", ROOM + "/read", body=ReadIn)
    async def read(call: Call[ReadIn]) -> dict[str, Any]:
        """Move your read marker (a read receipt others see)."""
        return {"last_read_seq": await chat.read(call.user, call.param("room_id"), call.body.seq)}

    @api.route("POST", "/sync", body=SyncIn)
    async def sync(call: Call[SyncIn]) -> dict[str, Any]:
        """Everything you missed: per room, each message created or changed after the version
        you saw, in order, once. Rooms you are in but did not name start from 0."""
        mine = {r["id"]: r for r in await rooms.rooms_of(call.user.id)}
        out: dict[str, Any] = {}
        for room_id, room in mine.items():
            since = call.body.positions.get(room_id, 0)
            rows = await messages.changes(room_id, since, chat.config.sync_limit)
            names = await messages.usernames({r["user_id"] for r in rows})
            out[room_id] = {
                "changes": [message_public(r, names) for r in rows],
                "last_seq": room["last_seq"],
                "more": len(rows) == chat.config.sync_limit,
            }
        return {"rooms": out}

    @api.route("PUT", "/status", body=StatusIn)
    async def set_status(call: Call[StatusIn]) -> dict[str, Any]:
        """Online or away, as your rooms see you while you are connected."""
        await chat.set_status(call.user, call.body.status)
        return {"status": call.body.status}

    @api.route("GET", ROOM + "/presence")
    async def presence(call: Call[None]) -> dict[str, Any]:
        """Who of the room is online (devices), away or offline, and when last seen."""
        return {"members": await chat.presence(call.user, call.param("room_id"))}

    @api.route("PUT", "/blocks/{username}")
    async def block(call: Call[None]) -> dict[str, Any]:
        """Stop a user from sending you direct messages."""
        other = await user_named(call.param("username"))
        await chat.store.execute(
            "INSERT INTO chat_blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            call.user.id,
            other.id,
            time.time(),
        )
        return {"blocked": other.username}

    @api.route("DELETE", "/blocks/{username}")
    async def unblock(call: Call[None]) -> None:
        other = await user_named(call.param("username"))
        await chat.store.execute(
            "DELETE FROM chat_blocks WHERE user_id = ? AND blocked_id = ?", call.user.id, other.id
        )
