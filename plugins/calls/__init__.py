"""Calls: ring users (direct or group), answer, hang up, and WebRTC signaling relayed by the
server between the participants, with STUN/TURN servers (time-limited TURN credentials).

Realtime: invitations, call states and signals arrive on your ``user:<id>`` topic
(``call.invite``, ``call.state``, ``call.signal``); publish ``{"to": user id, "signal":
{"type": "offer" | "answer" | "candidate" | "restart" | "bye", ...}}`` or ``{"media":
{"audio": bool, "video": bool, "screen": bool}}`` on ``call:<call id>``.
"""

from __future__ import annotations

from typing import Any

from syncstream import Namespace, Plugin, PluginContext, User
from syncstream.filestore import FileStore
from syncstream.realtime import Published

from .config import Config
from .page import register_page
from .routes import register
from .schema import MIGRATIONS
from .service import CallService


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    service = CallService(
        ctx.store, ctx.auth, ctx.bus, ctx.gateway, config,
        files=lambda: ctx.services.find(FileStore),
        scratch=ctx.data_dir / "calls" / "recordings",
    )  # fmt: skip

    async def on_publish(user: User, topic: str, data: Any) -> Published:
        reply = await service.publish(user, topic.split(":", 1)[1], data)
        return Published(None, reply)

    ctx.gateway.register(
        Namespace(
            "call",
            can_subscribe=lambda user, topic: service.is_member(user, topic.split(":", 1)[1]),
            can_publish=lambda user, topic: True,
            on_publish=on_publish,
            presence=True,
        )
    )
    register(ctx.api, service)
    register_page(ctx.app.router)
    ctx.announce("Call page", "{url}/call#token=<token>&call=<call id>")
    ctx.on_cleanup(service.close)


plugin = Plugin(
    name="calls",
    version="0.1.0",
    description="Calls: ringing, answers, hang-ups, WebRTC signaling, STUN/TURN credentials",
    setup=setup,
    config=Config,
    migrations=MIGRATIONS,
)
