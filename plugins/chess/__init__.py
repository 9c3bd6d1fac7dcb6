"""Chess: challenges and open seeks, server-authoritative games with every rule
(python-chess), lichess-style clocks with lag compensation, spectators, takebacks, draw
offers and claims, games stored move by move, PGN export and an NDJSON game stream.

Realtime: subscribe to ``chess:<game id>`` for ``state`` events (full position, last move,
clocks, sequence number); players publish ``{"move": "e2e4", "ply": n, "lag_ms": x}`` or
``{"action": "resign" | "draw_offer" | ...}`` there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncstream.sdk import Namespace, Plugin, PluginContext, Problem, Published, ScopedApi, User

from . import lichess_routes
from .config import Config
from .error_codes import CODES
from .routes import ACTIONS, register
from .schema import MIGRATIONS
from .service import ChessService

# Every state event is a full snapshot, so a resume needs only the events of a short absence;
# after a longer one the client reads the game (GET). Kept per game: ~16 x 0.6 KB instead of
# the realtime default (200), which was half of a game's memory.
RESUME_HISTORY = 16


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    service = ChessService(
        ctx.store,
        ctx.auth,
        ctx.bus,
        ctx.gateway,
        clustered=ctx.settings.clustered,
        lease_seconds=config.lease_seconds,
    )

    async def on_publish(user: User, topic: str, data: Any) -> Published:
        game_id = topic.split(":", 1)[1]
        if not isinstance(data, dict):
            raise Problem(422, "invalid_message", "publish {move, ply?, lag_ms?} or {action}")
        if "move" in data:
            ply, lag = data.get("ply"), data.get("lag_ms", 0)
            if not isinstance(data["move"], str) or not (ply is None or isinstance(ply, int)):
                raise Problem(422, "invalid_message", "move is a string, ply an integer")
            lag_ms = int(lag) if isinstance(lag, (int, float)) and 0 <= lag <= 10_000 else 0
            state = await service.move(user, game_id, data["move"], ply, lag_ms)
        elif data.get("action") in ACTIONS:
            state = await service.act(user, game_id, data["action"])
        else:
            raise Problem(422, "invalid_message", f"actions: {', '.join(ACTIONS)}")
        return Published(None, {"state": state})

    ctx.gateway.register(
        Namespace(
            "chess",
            can_publish=lambda user, topic: True,
            on_publish=on_publish,
            presence=True,
            history=RESUME_HISTORY,
        )
    )
    register(ctx.api, service, ctx.audit, public_reads=config.public_reads)
    if config.lichess_api:  # lichess clients need lichess's paths, outside /api/chess
        lichess_routes.register(ScopedApi(ctx.api.api, "/api"), service)
    ctx.oversight.add_figures("chess", service.figures)
    ctx.oversight.add_user_facts("chess", service.user_facts)
    ctx.add_dashboard(Path(__file__).parent / "dashboard.js")
    await service.start()
    ctx.on_cleanup(service.close)

    async def end_streams(app: Any) -> None:
        await service.end_streams()

    ctx.app.on_shutdown.append(end_streams)  # before the server waits for open responses


plugin = Plugin(setup=setup, config=Config, migrations=MIGRATIONS, error_codes=CODES)
