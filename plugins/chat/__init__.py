"""Chat: direct chats, group rooms and a room beside every live stream; messages with
replies, mentions, reactions, edits, deletes and attachments; history, unread counts, read
receipts, a sync that loses nothing across restarts and nodes; typing; moderation.

Realtime: subscribe to ``chat:<room id>`` for messages (and publish ``{"text", "client_key",
"reply_to", "attachments"}`` there to send), ``typing:<room id>`` for typing indicators.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from syncstream.sdk import Namespace, Plugin, PluginContext, Problem, Published, User

from .config import Config
from .error_codes import CODES
from .messages import message_public
from .routes import register
from .schema import MIGRATIONS
from .service import ChatService

TYPING_EVERY = 1.0  # a user's typing events per room at most this often (seconds)


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    chat = ChatService(
        config=config,
        store=ctx.store,
        auth=ctx.auth,
        bus=ctx.bus,
        gateway=ctx.gateway,
        audit=ctx.audit,
        services=ctx.services,
    )

    async def may_read(user: User, topic: str) -> bool:
        try:
            await chat.rooms.readable(user, topic.split(":", 1)[1])
        except Problem:
            return False
        return True

    async def on_message(user: User, topic: str, data: Any) -> Published:
        if not isinstance(data, dict) or not isinstance(data.get("text", ""), str):
            raise Problem(
                422, "invalid_message", "publish {text, client_key?, reply_to?, attachments?}"
            )
        attachments = data.get("attachments") or []
        if not isinstance(attachments, list) or not all(isinstance(a, str) for a in attachments):
            raise Problem(422, "invalid_message", "attachments are a list of file ids")
        row, _ = await chat.send(
            user, topic.split(":", 1)[1], data.get("text", ""),
            client_key=data.get("client_key"), reply_to=data.get("reply_to"),
            attachments=attachments,
        )  # fmt: skip
        return Published(None, {"message": message_public(row)})

    last_typing: dict[tuple[str, str], float] = {}

    async def on_typing(user: User, topic: str, data: Any) -> Any:
        room_id = topic.split(":", 1)[1]
        await chat.rooms.joined(user, room_id)
        typing = not (isinstance(data, dict) and data.get("typing") is False)
        now = time.monotonic()
        key = (user.id, room_id)
        if typing and now - last_typing.get(key, 0.0) < TYPING_EVERY:
            return Published(None, {"throttled": True})
        last_typing[key] = now if typing else 0.0
        if len(last_typing) > 100_000:
            last_typing.clear()
        return {
            "user_id": user.id,
            "username": user.username,
            "typing": typing,
            "expires_in": config.typing_seconds,
        }

    ctx.gateway.register(
        Namespace(
            "chat",
            can_subscribe=may_read,
            can_publish=may_read,
            on_publish=on_message,
            presence=True,
            presence_events=False,  # GET .../presence answers; no n^2 join storms in big rooms
        )
    )
    ctx.gateway.register(
        Namespace(
            "typing",
            can_subscribe=may_read,
            can_publish=may_read,
            on_publish=on_typing,
            ephemeral=True,
        )
    )
    register(ctx.api, chat)
    ctx.add_dashboard(Path(__file__).parent / "dashboard.js")
    ctx.background(chat.outbox.run())  # hands over what a broker outage left waiting


plugin = Plugin(setup=setup, config=Config, migrations=MIGRATIONS, error_codes=CODES)
