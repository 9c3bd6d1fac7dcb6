"""Messages: send (idempotent), edit, delete, react; history, sync, read receipts.

Each change takes the room's next ``seq`` inside one transaction with the change itself, so
sequence numbers have no gaps and no duplicates on any node. The same transaction queues the
change's event in the outbox (published after commit, see ``outbox.py``). A retried send
(same client key, per user and room) returns the stored message and is not broadcast again.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from syncstream.sdk import Problem, Queries, Row, Store, User, iso, iso_or_none, new_id

from .outbox import Outbox

COLUMNS = (
    "id, room_id, seq, version, user_id, client_key, text, reply_to, mentions, attachments,"
    " reactions, created_at, edited_at, deleted_at"
)
MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_.-]{1,31})")
MAX_REACTION = 32


def message_public(row: Row, usernames: dict[str, str] | None = None) -> dict[str, Any]:
    deleted = row["deleted_at"] is not None
    out: dict[str, Any] = {
        "id": row["id"],
        "room_id": row["room_id"],
        "seq": row["seq"],
        "version": row["version"],
        "user_id": row["user_id"],
        "text": "" if deleted else row["text"],
        "reply_to": row["reply_to"],
        "mentions": [] if deleted else json.loads(row["mentions"]),
        "attachments": [] if deleted else json.loads(row["attachments"]),
        "reactions": {} if deleted else json.loads(row["reactions"]),
        "created_at": iso(row["created_at"]),
        "edited_at": iso_or_none(row["edited_at"]),
        "deleted": deleted,
    }
    if row.get("client_key"):
        out["client_key"] = row["client_key"]
    if usernames is not None:
        out["username"] = usernames.get(row["user_id"])
    return out


async def next_seq(tx: Queries, room_id: str) -> int:
    """The room's next sequence number (the UPDATE locks the room row until commit)."""
    return int(
        await tx.fetchval(
            "UPDATE chat_rooms SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
            room_id,
        )
    )


class Messages:
    def __init__(self, store: Store, outbox: Outbox) -> None:
        self.store, self.outbox = store, outbox

    async def _queue(self, tx: Queries, row: Row, kind: str, names: dict[str, str]) -> None:
        """The change's event ``{"type": kind, "message"}`` goes out after commit."""
        event = {"type": kind, "message": message_public(row, names)}
        await self.outbox.add(tx, row["room_id"], row["version"], event)

    async def get(self, room_id: str, message_id: str) -> Row:
        row = await self.store.fetchone(
            f"SELECT {COLUMNS} FROM chat_messages WHERE id = ? AND room_id = ?",
            message_id[:64],
            room_id,
        )
        if row is None:
            raise Problem(404, "message_not_found", f"no message {message_id[:64]} in this room")
        return row

    async def existing(self, room_id: str, user_id: str, client_key: str) -> Row | None:
        return await self.store.fetchone(
            f"SELECT {COLUMNS} FROM chat_messages WHERE room_id = ? AND user_id = ?"
            " AND client_key = ?",
            room_id,
            user_id,
            client_key,
        )

    async def mentions(self, room_id: str, text: str) -> list[str]:
        """User ids of the room's members named as ``@username`` in ``text``."""
        names = {m.lower() for m in MENTION.findall(text)}
        if not names:
            return []
        marks = ", ".join("?" * len(names))
        rows = await self.store.fetchall(
            "SELECT u.id FROM users u JOIN chat_members m ON m.user_id = u.id"
            f" WHERE m.room_id = ? AND u.username_key IN ({marks})",
            room_id,
            *sorted(names),
        )
        return sorted(r["id"] for r in rows)

    async def send(
        self,
        room_id: str,
        user: User,
        text: str,
        *,
        client_key: str | None,
        reply_to: str | None,
        mentions: list[str],
        attachments: list[dict[str, Any]],
    ) -> Row:
        """Store a new message; the caller checked permissions, limits and idempotency."""
        if reply_to is not None:
            await self.get(room_id, reply_to)
        row: Row = {
            "id": new_id(),
            "room_id": room_id,
            "seq": 0,
            "version": 0,
            "user_id": user.id,
            "client_key": client_key,
            "text": text,
            "reply_to": reply_to,
            "mentions": json.dumps(mentions),
            "attachments": json.dumps(attachments),
            "reactions": "{}",
            "created_at": time.time(),
            "edited_at": None,
            "deleted_at": None,
        }
        async with self.store.transaction() as tx:
            row["seq"] = row["version"] = await next_seq(tx, room_id)
            await tx.execute(
                f"INSERT INTO chat_messages ({COLUMNS}) VALUES ({', '.join('?' * 14)})",
                *row.values(),
            )
            await tx.execute(
                "UPDATE chat_members SET last_sent_at = ?, last_read_seq = ?"
                " WHERE room_id = ? AND user_id = ?",
                row["created_at"],
                row["seq"],
                room_id,
                user.id,
            )
            await self._queue(tx, row, "message", {user.id: user.username})
        return row

    async def change(self, row: Row, **fields: Any) -> Row:
        """Apply ``fields`` to a message as the room's next change (a new version)."""
        names = await self.usernames({row["user_id"]})
        async with self.store.transaction() as tx:
            seq = await next_seq(tx, row["room_id"])
            assignments = ", ".join(f"{name} = ?" for name in fields)
            await tx.execute(
                f"UPDATE chat_messages SET {assignments}, version = ? WHERE id = ?",
                *fields.values(),
                seq,
                row["id"],
            )
            changed = await self._reread(tx, row)
            await self._queue(tx, changed, "update", names)
        return changed

    async def _reread(self, tx: Queries, row: Row) -> Row:
        changed = await tx.fetchone(f"SELECT {COLUMNS} FROM chat_messages WHERE id = ?", row["id"])
        assert changed is not None  # messages are never removed (a delete is a tombstone)
        return changed

    async def react(self, row: Row, user_id: str, emoji: str, on: bool) -> Row:
        if not emoji or len(emoji) > MAX_REACTION or any(c.isspace() for c in emoji):
            raise Problem(422, "invalid_reaction", "a reaction is one emoji or short code")
        names = await self.usernames({row["user_id"]})
        async with self.store.transaction() as tx:
            current = await tx.fetchval(
                "SELECT reactions FROM chat_messages WHERE id = ?", row["id"]
            )
            reactions: dict[str, list[str]] = json.loads(current)
            users = set(reactions.get(emoji, []))
            if (user_id in users) == on:
                return row  # nothing changes: no new version
            users = users | {user_id} if on else users - {user_id}
            if users:
                reactions[emoji] = sorted(users)
            else:
                reactions.pop(emoji, None)
            seq = await next_seq(tx, row["room_id"])
            await tx.execute(
                "UPDATE chat_messages SET reactions = ?, version = ? WHERE id = ?",
                json.dumps(reactions),
                seq,
                row["id"],
            )
            changed = await self._reread(tx, row)
            await self._queue(tx, changed, "update", names)
        return changed

    async def history(
        self,
        room_id: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        query: str,
        thread: str | None = None,
    ) -> list[Row]:
        """A page of messages by ``seq``: the newest before ``before`` or the oldest after
        ``after`` (always returned oldest first); ``query`` filters by words of the text,
        ``thread`` keeps a message and the replies to it."""
        where: list[str] = ["room_id = ?"]
        args: list[Any] = [room_id]
        if thread is not None:
            where.append("(id = ? OR reply_to = ?)")
            args += [thread, thread]
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        if after is not None:
            where.append("seq > ?")
            args.append(after)
        if query:
            for word in query.split()[:8]:
                escaped = word.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                where.append("LOWER(text) LIKE ? ESCAPE '\\' AND deleted_at IS NULL")
                args.append(f"%{escaped}%")
        order = "ASC" if after is not None and before is None else "DESC"
        rows = await self.store.fetchall(
            f"SELECT {COLUMNS} FROM chat_messages WHERE {' AND '.join(where)}"
            f" ORDER BY seq {order} LIMIT ?",
            *args,
            limit,
        )
        return rows if order == "ASC" else rows[::-1]

    async def changes(self, room_id: str, since: int, limit: int) -> list[Row]:
        """Every message created or changed after version ``since``, in version order."""
        return await self.store.fetchall(
            f"SELECT {COLUMNS} FROM chat_messages WHERE room_id = ? AND version > ?"
            " ORDER BY version LIMIT ?",
            room_id,
            since,
            limit,
        )

    async def mark_read(self, room_id: str, user_id: str, seq: int) -> int:
        """Move the member's read marker forward (never back); returns where it is."""
        await self.store.execute(
            "UPDATE chat_members SET last_read_seq = ? WHERE room_id = ? AND user_id = ?"
            " AND last_read_seq < ?",
            seq,
            room_id,
            user_id,
            seq,
        )
        return int(
            await self.store.fetchval(
                "SELECT last_read_seq FROM chat_members WHERE room_id = ? AND user_id = ?",
                room_id,
                user_id,
            )
        )

    async def usernames(self, user_ids: set[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        marks = ", ".join("?" * len(user_ids))
        rows = await self.store.fetchall(
            f"SELECT id, username FROM users WHERE id IN ({marks})", *sorted(user_ids)
        )
        return {r["id"]: r["username"] for r in rows}
