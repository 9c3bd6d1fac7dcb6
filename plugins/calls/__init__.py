"""Calls: ring users (direct or group), answer, hang up; WebRTC peer to peer (signals relayed
by the server) or through the server's SFU (group and recorded calls: see ``sfu/``), with
STUN/TURN servers (time-limited TURN credentials), host moderation and recording.

Realtime: invitations, call states and signals arrive on your ``user:<id>`` topic
(``call.invite``, ``call.state``, ``call.signal``); publish ``{"to": user id, "signal":
{"type": "offer" | "answer" | "candidate" | "restart" | "bye", ...}}`` (``"to": "sfu"`` on
calls through the SFU), ``{"media": {"audio": bool, "video": bool, "screen": bool}}`` or the
host's ``{"moderate": {...}}`` on ``call:<call id>``; ``call.speaker`` and ``call.recording``
arrive there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncstream.sdk import (
    SEAMS,
    Event,
    FileStore,
    Namespace,
    Plugin,
    PluginContext,
    Published,
    User,
    sfu_problem,
)

from .config import Config
from .error_codes import CODES
from .page import register_page
from .routes import register
from .schema import MIGRATIONS
from .service import CallService


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    service = CallService(
        ctx.store, ctx.auth, ctx.audit, ctx.bus, ctx.gateway, config,
        files=lambda: ctx.services.find(FileStore),
        scratch=ctx.data_dir / "calls" / "recordings",
    )  # fmt: skip

    async def on_publish(user: User, topic: str, data: Any) -> Published:
        reply = await service.signal(user, topic.split(":", 1)[1], data)
        return Published(None, reply)

    ctx.gateway.register(
        Namespace(
            "call",
            can_subscribe=lambda user, topic: service.may_listen(user, topic.split(":", 1)[1]),
            can_publish=lambda user, topic: True,
            on_publish=on_publish,
            presence=True,
        )
    )
    register(ctx.api, service)
    SEAMS.record("aiortc_frame_tap", True, sfu_problem())  # a warning when the SFU cannot run
    ctx.oversight.add_figures("calls", service.figures)
    ctx.oversight.add_user_facts("calls", service.user_facts)
    ctx.add_dashboard(Path(__file__).parent / "dashboard.js")

    async def on_banned(event: Event) -> None:
        await service.hang_up_user(str(event.data.get("user_id")))

    ctx.listen("user.banned", on_banned)
    register_page(ctx.app.router)
    ctx.announce("Call page", "{url}/call  (sign in there: call someone, answer calls)")
    ctx.on_cleanup(service.close)


plugin = Plugin(setup=setup, config=Config, migrations=MIGRATIONS, error_codes=CODES)
