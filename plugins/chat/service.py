"""The chat service: every rule a message passes before it is stored and broadcast.

Sending over HTTP and over the WebSocket (``publish`` to ``chat:<room id>``) both come here.
A stored change is published on ``chat:<room id>`` as ``{"type": "message" | "update",
"message": ...}`` through the outbox (after commit, in version order, retried until the broker
takes it) and fired on the bus (``chat.message``, ``chat.mention``, ``chat.direct``).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from syncstream.sdk import (
    Audit,
    Auth,
    EventBus,
    FileStore,
    Gateway,
    IntegrityError,
    KeyedLimiter,
    Problem,
    Row,
    ServiceRegistry,
    Store,
    User,
    iso,
    iso_or_none,
)

from .config import Config
from .messages import Messages, message_public
from .outbox import Outbox
from .rooms import RANK, Rooms

CLIENT_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ChatService:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        auth: Auth,
        bus: EventBus,
        gateway: Gateway,
        audit: Audit,
        services: ServiceRegistry,
    ) -> None:
        self.config, self.store, self.auth, self.bus = config, store, auth, bus
        self.gateway, self.audit, self.services = gateway, audit, services
        self.rooms = Rooms(store, auth, config.max_group_members)
        self.outbox = Outbox(store, gateway)
        self.messages = Messages(store, self.outbox)
        self.limiter = KeyedLimiter(config.messages_per_second, config.message_burst)

    # -- sending ----------------------------------------------------------------------------

    async def send(
        self,
        user: User,
        room_id: str,
        text: str,
        *,
        client_key: str | None = None,
        reply_to: str | None = None,
        attachments: list[str] | None = None,
    ) -> tuple[Row, bool]:
        """Store and broadcast a message; (message, False) when it is a retry of one stored."""
        room, member = await self.rooms.joined(user, room_id)
        if client_key is not None and not CLIENT_KEY.match(client_key):
            raise Problem(422, "invalid_client_key", "client keys are 1-64 of A-Z a-z 0-9 _ . : -")
        if client_key is not None:
            existing = await self.messages.existing(room["id"], user.id, client_key)
            if existing is not None:
                return await self._retried(existing)
        now = time.time()  # (a ban removes the membership, so banned users never get here)
        if member["muted_until"] is not None and member["muted_until"] > now:
            raise Problem(403, "muted", "you are muted in this room", until=member["muted_until"])
        text = text.strip()
        files = attachments or []
        if not text and not files:
            raise Problem(422, "empty_message", "a message needs text or an attachment")
        if len(text) > self.config.max_message_chars:
            raise Problem(
                413,
                "message_too_long",
                f"messages are at most {self.config.max_message_chars} characters",
            )
        if len(files) > self.config.max_attachments:
            raise Problem(
                422, "too_many_attachments", f"at most {self.config.max_attachments} files"
            )
        slow = room["slow_mode_seconds"]
        if slow and RANK[member["role"]] < RANK["moderator"] and member["last_sent_at"]:
            wait = member["last_sent_at"] + slow - now
            if wait > 0:
                raise Problem(
                    429, "slow_mode", f"slow mode: wait {wait:.1f} s", retry_after=round(wait, 3)
                )
        wait = self.limiter.take(user.id)
        if wait > 0:
            raise Problem(
                429, "rate_limited", "too many messages", retry_after=round(wait, 3),
                headers={"Retry-After": str(max(1, round(wait)))},
            )  # fmt: skip
        recipient = None  # the other member of a direct chat
        if room["kind"] == "direct":
            recipient = await self.rooms.other_member(room["id"], user.id)
            if recipient is not None and await self.rooms.blocked(user.id, recipient):
                raise Problem(403, "blocked", "this user does not accept your messages")
        attached = [await self._attachment(user, file_id) for file_id in files]
        mentions = await self.messages.mentions(room["id"], text)
        try:
            row = await self.messages.send(
                room["id"], user, text, client_key=client_key, reply_to=reply_to,
                mentions=mentions, attachments=attached,
            )  # fmt: skip
        except IntegrityError:  # the same key won the race on another request (or node)
            if client_key is None:
                raise
            existing = await self.messages.existing(room["id"], user.id, client_key)
            if existing is None:
                raise
            return await self._retried(existing)
        await self.outbox.deliver(room["id"])
        message = message_public(row, {user.id: user.username})
        await self.bus.fire(
            "chat.message",
            {"room_id": room["id"], "room_kind": room["kind"], "message": message},
        )
        for user_id in mentions:
            if user_id != user.id:
                await self.bus.fire(
                    "chat.mention", {"user_id": user_id, "room_id": room["id"], "message": message}
                )
        if recipient is not None:
            await self.bus.fire(
                "chat.direct", {"user_id": recipient, "room_id": room["id"], "message": message}
            )
        return row, True

    async def _attachment(self, user: User, file_id: str) -> dict[str, Any]:
        files = self.services.find(FileStore)
        if files is None:
            raise Problem(422, "attachments_unavailable", "the files plugin is not enabled")
        info = await files.readable(user.id, str(file_id))
        return {"id": info["id"], "name": info["name"], "size": info["size"], "mime": info["mime"]}

    async def _retried(self, row: Row) -> tuple[Row, bool]:
        """A send retried with its key: the stored message, and its event handed over now
        if the first attempt stored it but could not publish it."""
        await self.outbox.deliver(row["room_id"])
        return row, False

    async def revoke(
        self, room_id: str, user_id: str | None, reason: str, *, recheck: bool = False
    ) -> None:
        """End live access to the room (its ``chat:`` and ``typing:`` topics) on every node:
        ``user_id``'s (None: everyone's, with ``recheck``: those who may no longer read it).
        Called after the change is stored and before it is announced."""
        topics = (f"chat:{room_id}", f"typing:{room_id}")
        await self.gateway.revoke(user_id, topics, reason, recheck=recheck)

    # -- changing ---------------------------------------------------------------------------

    async def edit(self, user: User, room_id: str, message_id: str, text: str) -> Row:
        room, _ = await self.rooms.joined(user, room_id)
        row = await self.messages.get(room["id"], message_id)
        if row["user_id"] != user.id:
            raise Problem(403, "not_your_message", "only the author may edit a message")
        if row["deleted_at"] is not None:
            raise Problem(409, "message_deleted", "a deleted message cannot be edited")
        text = text.strip()
        if not text:
            raise Problem(422, "empty_message", "an edit needs text (delete the message instead)")
        if len(text) > self.config.max_message_chars:
            raise Problem(413, "message_too_long", "the text is too long")
        mentions = await self.messages.mentions(room["id"], text)
        row = await self.messages.change(
            row, text=text, edited_at=time.time(), mentions=json.dumps(mentions)
        )
        await self.outbox.deliver(room["id"])
        return row

    async def delete(self, user: User, room_id: str, message_id: str, ip: str = "") -> Row:
        room = await self.rooms.get(room_id)
        member = await self.rooms.member(room["id"], user.id)
        if member is None and not user.is_admin:
            raise Problem(404, "room_not_found", f"no room {room_id[:64]}")
        row = await self.messages.get(room["id"], message_id)
        if row["deleted_at"] is not None:
            return row
        own = row["user_id"] == user.id
        moderator = member is not None and RANK[member["role"]] >= RANK["moderator"]
        if not (own or moderator or user.is_admin):
            raise Problem(403, "not_your_message", "only the author or a moderator may delete it")
        row = await self.messages.change(row, deleted_at=time.time())
        await self.outbox.deliver(room["id"])
        if not own:
            await self.audit.record(
                "chat.message_removed", actor_id=user.id, target=row["id"], ip=ip,
                room_id=room["id"], author_id=row["user_id"],
            )  # fmt: skip
        return row

    async def react(self, user: User, room_id: str, message_id: str, emoji: str, on: bool) -> Row:
        room, _ = await self.rooms.joined(user, room_id)
        row = await self.messages.get(room["id"], message_id)
        if row["deleted_at"] is not None:
            raise Problem(409, "message_deleted", "a deleted message takes no reactions")
        changed = await self.messages.react(row, user.id, emoji, on)
        if changed["version"] != row["version"]:
            await self.outbox.deliver(room["id"])
        return changed

    async def read(self, user: User, room_id: str, seq: int) -> int:
        room, _ = await self.rooms.joined(user, room_id)
        seq = min(seq, int(room["last_seq"]))
        position = await self.messages.mark_read(room["id"], user.id, seq)
        await self.gateway.publish(
            f"chat:{room['id']}",
            {"type": "read", "user_id": user.id, "seq": position},
            ephemeral=True,
        )
        return position

    # -- presence ---------------------------------------------------------------------------

    async def set_status(self, user: User, status: str) -> None:
        """``online`` or ``away`` (shown to the user's rooms); also a last-seen mark."""
        await self.store.execute(
            "INSERT INTO chat_status (user_id, status, last_seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET status = excluded.status,"
            " last_seen_at = excluded.last_seen_at",
            user.id,
            status,
            time.time(),
        )
        for room in (await self.rooms.rooms_of(user.id))[:200]:
            await self.gateway.publish(
                f"chat:{room['id']}",
                {"type": "status", "user_id": user.id, "status": status},
                ephemeral=True,
            )

    async def presence(self, user: User, room_id: str) -> list[dict[str, Any]]:
        """Each member: online (with how many devices), away or offline, and last seen."""
        room, _ = await self.rooms.readable(user, room_id)
        online = {
            p["user_id"]: p["connections"]
            for p in await self.gateway.presence_of(f"chat:{room['id']}")
        }
        rows = await self.store.fetchall(
            "SELECT u.id, u.username, s.status, s.last_seen_at, m.last_sent_at"
            " FROM chat_members m JOIN users u ON u.id = m.user_id"
            " LEFT JOIN chat_status s ON s.user_id = u.id WHERE m.room_id = ?"
            " ORDER BY u.username LIMIT 1000",
            room["id"],
        )
        out = []
        for row in rows:
            devices = online.get(row["id"], 0)
            state = "offline" if not devices else (row["status"] or "online")
            seen = max(row["last_seen_at"] or 0, row["last_sent_at"] or 0) or None
            out.append(
                {
                    "user_id": row["id"],
                    "username": row["username"],
                    "state": state,
                    "devices": devices,
                    "last_seen_at": iso(time.time()) if devices else iso_or_none(seen),
                }
            )
        return out

    # -- moderation -------------------------------------------------------------------------

    async def moderate(
        self,
        user: User,
        room_id: str,
        action: str,
        target: User,
        seconds: float | None,
        reason: str,
        ip: str,
    ) -> None:
        """Mute, unmute, kick, ban or unban ``target`` (moderators act on lower ranks only)."""
        room, member = await self.rooms.joined(user, room_id, "moderator")
        if room["kind"] == "direct":
            raise Problem(409, "direct_room", "direct chats have no moderation; block instead")
        theirs = await self.rooms.member(room["id"], target.id)
        if (
            theirs is not None
            and RANK[theirs["role"]] >= RANK[member["role"]]
            and not user.is_admin
        ):
            raise Problem(403, "forbidden", "you may only moderate members of a lower rank")
        until = time.time() + seconds if seconds else None
        if action in ("mute", "unmute"):
            if theirs is None:
                raise Problem(404, "member_not_found", "that user is not in the room")
            await self.store.execute(
                "UPDATE chat_members SET muted_until = ? WHERE room_id = ? AND user_id = ?",
                (until or time.time() + 100 * 365 * 86400) if action == "mute" else None,
                room["id"],
                target.id,
            )
        elif action == "kick":
            if not await self.rooms.remove_member(room["id"], target.id):
                raise Problem(404, "member_not_found", "that user is not in the room")
            await self.revoke(room["id"], target.id, "kicked")
        elif action == "ban":
            await self.rooms.remove_member(room["id"], target.id)
            await self.store.execute(
                "INSERT INTO chat_bans (room_id, user_id, until, banned_by, reason, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO UPDATE SET"
                " until = excluded.until, reason = excluded.reason",
                room["id"], target.id, until, user.id, reason, time.time(),
            )  # fmt: skip
            await self.revoke(room["id"], target.id, "banned")
        elif action == "unban":
            await self.store.execute(
                "DELETE FROM chat_bans WHERE room_id = ? AND user_id = ?", room["id"], target.id
            )
        await self.audit.record(
            f"chat.{action}", actor_id=user.id, target=target.id, ip=ip, room_id=room["id"],
            seconds=seconds, reason=reason,
        )  # fmt: skip
        await self.gateway.publish(
            f"chat:{room['id']}",
            {"type": "moderation", "action": action, "user_id": target.id, "by": user.id},
        )
        await self.bus.fire(
            f"chat.{action}", {"room_id": room["id"], "user_id": target.id, "by": user.id}
        )
