"""Rooms and who is in them: direct chats, groups, stream rooms; roles, bans, mutes, blocks.

Roles rank owner > moderator > member. Direct rooms have exactly two members and are unique
per pair (``direct_key`` is the two user ids, sorted). A stream's room is made on first use
and is public: any user may read and join it; the stream's owner owns it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from syncstream.sdk import (
    Auth,
    IntegrityError,
    Problem,
    Queries,
    Row,
    Store,
    User,
    iso,
    iso_or_none,
    new_id,
)

Role = Literal["owner", "moderator", "member"]
RANK = {"member": 1, "moderator": 2, "owner": 3}
ROOM_COLUMNS = (
    "id, kind, name, topic, visibility, direct_key, stream, created_by, created_at, last_seq,"
    " slow_mode_seconds"
)


def room_public(row: Row, member: Row | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "topic": row["topic"],
        "visibility": row["visibility"],
        "stream": row["stream"],
        "created_at": iso(row["created_at"]),
        "last_seq": row["last_seq"],
        "slow_mode_seconds": row["slow_mode_seconds"],
    }
    if member is not None:
        out["role"] = member["role"]
        out["last_read_seq"] = member["last_read_seq"]
        out["muted_until"] = iso_or_none(member["muted_until"])
    return out


class Rooms:
    def __init__(self, store: Store, auth: Auth, max_members: int) -> None:
        self.store, self.auth, self.max_members = store, auth, max_members

    async def get(self, room_id: str) -> Row:
        row = await self.store.fetchone(
            f"SELECT {ROOM_COLUMNS} FROM chat_rooms WHERE id = ?", room_id[:64]
        )
        if row is None:
            raise Problem(404, "room_not_found", f"no room {room_id[:64]}")
        return row

    async def member(self, room_id: str, user_id: str) -> Row | None:
        return await self.store.fetchone(
            "SELECT room_id, user_id, role, joined_at, last_read_seq, muted_until, last_sent_at"
            " FROM chat_members WHERE room_id = ? AND user_id = ?",
            room_id,
            user_id,
        )

    async def readable(self, user: User, room_id: str) -> tuple[Row, Row | None]:
        """The room and the caller's membership; public rooms are readable by anyone not
        banned from them (a ban removes the membership, so members need no look-up)."""
        room = await self.get(room_id)
        member = await self.member(room["id"], user.id)
        if member is None:
            if not (room["visibility"] == "public" and room["kind"] != "direct"):
                raise Problem(404, "room_not_found", f"no room {room_id[:64]}")
            await self.check_not_banned(room["id"], user.id)
        return room, member

    async def joined(self, user: User, room_id: str, role: Role = "member") -> tuple[Row, Row]:
        """The room if the caller is a member with at least ``role`` (403/404 otherwise)."""
        row = await self.store.fetchone(  # one query: this runs for every message sent
            f"SELECT {', '.join('r.' + c.strip() for c in ROOM_COLUMNS.split(','))},"
            " m.user_id AS member_id, m.role, m.joined_at, m.last_read_seq, m.muted_until,"
            " m.last_sent_at FROM chat_rooms r LEFT JOIN chat_members m"
            " ON m.room_id = r.id AND m.user_id = ? WHERE r.id = ?",
            user.id,
            room_id[:64],
        )
        if row is None:
            raise Problem(404, "room_not_found", f"no room {room_id[:64]}")
        room = {k: row[k] for k in (c.strip() for c in ROOM_COLUMNS.split(","))}
        if row["member_id"] is None:
            if room["visibility"] == "public" and room["kind"] != "direct":
                raise Problem(403, "not_a_member", "join the room first")
            raise Problem(404, "room_not_found", f"no room {room_id[:64]}")
        member = {"room_id": row["id"], "user_id": row["member_id"]} | {
            k: row[k] for k in ("role", "joined_at", "last_read_seq", "muted_until", "last_sent_at")
        }
        if RANK[member["role"]] < RANK[role] and not user.is_admin:
            raise Problem(403, "forbidden", f"this needs the {role} role in the room")
        return room, member

    async def create_group(
        self, user: User, name: str, topic: str, visibility: str, members: list[User]
    ) -> Row:
        room_id = new_id()
        now = time.time()
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO chat_rooms (id, kind, name, topic, visibility, created_by, created_at)"
                " VALUES (?, 'group', ?, ?, ?, ?, ?)",
                room_id,
                name,
                topic,
                visibility,
                user.id,
                now,
            )
            await tx.execute(
                "INSERT INTO chat_members (room_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
                room_id,
                user.id,
                "owner",
                now,
            )
            for other in members:
                if other.id != user.id:
                    await tx.execute(
                        "INSERT INTO chat_members (room_id, user_id, role, joined_at)"
                        " VALUES (?, ?, 'member', ?) ON CONFLICT DO NOTHING",
                        room_id,
                        other.id,
                        now,
                    )
        return await self.get(room_id)

    async def direct(self, user: User, other: User) -> Row:
        """The one direct room of two users, made on first use."""
        if other.id == user.id:
            raise Problem(422, "direct_with_self", "a direct chat needs another user")
        key = ":".join(sorted((user.id, other.id)))
        row = await self._by("direct_key", key)
        if row is not None:
            return row
        room_id, now = new_id(), time.time()

        async def create(tx: Queries) -> None:
            await tx.execute(
                "INSERT INTO chat_rooms (id, kind, visibility, direct_key, created_by,"
                " created_at) VALUES (?, 'direct', 'private', ?, ?, ?)",
                room_id,
                key,
                user.id,
                now,
            )
            await tx.executemany(
                "INSERT INTO chat_members (room_id, user_id, role, joined_at)"
                " VALUES (?, ?, 'member', ?)",
                [(room_id, user.id, now), (room_id, other.id, now)],
            )

        return await self._create_once("direct_key", key, create)

    async def stream_room(self, stream: str) -> Row:
        """The chat beside a live stream (made on first use, owned by the stream's owner)."""
        row = await self._by("stream", stream)
        if row is not None:
            return row
        owner = await self.store.fetchval(
            "SELECT user_id FROM stream_keys WHERE stream = ?", stream
        )
        if owner is None:
            raise Problem(404, "stream_not_found", f"no stream {stream[:64]}")
        room_id, now = new_id(), time.time()

        async def create(tx: Queries) -> None:
            await tx.execute(
                "INSERT INTO chat_rooms (id, kind, name, visibility, stream, created_by,"
                " created_at) VALUES (?, 'stream', ?, 'public', ?, ?, ?)",
                room_id,
                stream,
                stream,
                owner,
                now,
            )
            await tx.execute(
                "INSERT INTO chat_members (room_id, user_id, role, joined_at)"
                " VALUES (?, ?, 'owner', ?)",
                room_id,
                owner,
                now,
            )

        return await self._create_once("stream", stream, create)

    async def _by(self, column: str, value: str) -> Row | None:
        return await self.store.fetchone(
            f"SELECT {ROOM_COLUMNS} FROM chat_rooms WHERE {column} = ?", value
        )

    async def _create_once(
        self, column: str, value: str, create: Callable[[Queries], Awaitable[None]]
    ) -> Row:
        """Run ``create``; if another request made the room first, take that one."""
        try:
            async with self.store.transaction() as tx:
                await create(tx)
        except IntegrityError:
            pass
        found = await self._by(column, value)
        if found is None:
            raise Problem(500, "room_not_created", "the room could not be made")
        return found

    async def add_member(self, room: Row, user_id: str, role: Role = "member") -> None:
        if room["kind"] == "direct":
            raise Problem(409, "direct_room", "direct chats have exactly two members")
        await self.check_not_banned(room["id"], user_id)
        count = await self.store.fetchval(
            "SELECT COUNT(*) FROM chat_members WHERE room_id = ?", room["id"]
        )
        if int(count) >= self.max_members:
            raise Problem(409, "room_full", f"the room has {count} members, the most it may")
        await self.store.execute(
            "INSERT INTO chat_members (room_id, user_id, role, joined_at, last_read_seq)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            room["id"],
            user_id,
            role,
            time.time(),
            room["last_seq"],
        )

    async def remove_member(self, room_id: str, user_id: str) -> bool:
        return bool(
            await self.store.execute(
                "DELETE FROM chat_members WHERE room_id = ? AND user_id = ?", room_id, user_id
            )
        )

    async def check_not_banned(self, room_id: str, user_id: str) -> None:
        ban = await self.store.fetchone(
            "SELECT until, reason FROM chat_bans WHERE room_id = ? AND user_id = ?",
            room_id,
            user_id,
        )
        if ban is not None and (ban["until"] is None or ban["until"] > time.time()):
            raise Problem(403, "banned", "you are banned from this room", reason=ban["reason"])

    async def blocked(self, sender_id: str, recipient_id: str) -> bool:
        """True if ``recipient_id`` blocked ``sender_id``."""
        return bool(
            await self.store.fetchval(
                "SELECT 1 FROM chat_blocks WHERE user_id = ? AND blocked_id = ?",
                recipient_id,
                sender_id,
            )
        )

    async def other_member(self, room_id: str, user_id: str) -> str | None:
        value = await self.store.fetchval(
            "SELECT user_id FROM chat_members WHERE room_id = ? AND user_id <> ?", room_id, user_id
        )
        return None if value is None else str(value)

    async def rooms_of(self, user_id: str) -> list[Row]:
        """The user's rooms with their membership and unread count, most recent first."""
        return await self.store.fetchall(
            f"SELECT {', '.join('r.' + c.strip() for c in ROOM_COLUMNS.split(','))},"
            " m.role, m.last_read_seq, m.muted_until,"
            " (SELECT COUNT(*) FROM chat_messages x WHERE x.room_id = r.id"
            "  AND x.seq > m.last_read_seq AND x.deleted_at IS NULL AND x.user_id <> m.user_id)"
            " AS unread"
            " FROM chat_members m JOIN chat_rooms r ON r.id = m.room_id WHERE m.user_id = ?"
            " ORDER BY r.last_seq DESC, r.created_at DESC LIMIT 500",
            user_id,
        )
