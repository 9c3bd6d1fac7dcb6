"""Blackjack: multiplayer tables (seven seats and any number of spectators) with the casino's
rules, a provably fair shoe, and chips accounted in a ledger as strictly as real money.

Realtime: subscribe to ``blackjack:<table id>`` for ``state`` events (the table as anyone may
see it: the hole card stays ``"??"`` until it is turned) and ``shoe_retired`` events (the
seed that proves the shoe's order). Seated players may also publish their steps there:
``{"bet": 50, "request_id": "...", "client_seed": "..."}`` (the seed optional),
``{"insurance": true, "request_id": "..."}`` or
``{"action": "hit" | "stand" | "double" | "split" | "surrender", "request_id": "..."}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from syncstream.sdk import Namespace, Plugin, PluginContext, Problem, Published, User

from .config import Config
from .error_codes import CODES
from .routes import register
from .schema import MIGRATIONS
from .service import BlackjackService
from .shoe import CLIENT_SEED
from .table import ACTIONS


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    service = BlackjackService(ctx.store, ctx.auth, ctx.bus, ctx.gateway, config)

    async def on_publish(user: User, topic: str, data: Any) -> Published:
        table_id = topic.split(":", 1)[1]
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not 1 <= len(request_id) <= 64:
            raise Problem(422, "invalid_message", "every step carries a request_id (1-64 chars)")
        if isinstance(data.get("bet"), int) and not isinstance(data["bet"], bool):
            client_seed = data.get("client_seed")
            if client_seed is not None and not (
                isinstance(client_seed, str) and re.fullmatch(CLIENT_SEED, client_seed)
            ):
                raise Problem(
                    422, "invalid_message", "a client_seed is 1-64 of A-Z a-z 0-9 . _ ~ -"
                )
            state = await service.step(
                user, table_id, "bet", request_id, data["bet"], client_seed=client_seed
            )
        elif isinstance(data.get("insurance"), bool):
            state = await service.step(
                user, table_id, "insurance", request_id, take=data["insurance"]
            )
        elif data.get("action") in ACTIONS:
            state = await service.step(user, table_id, data["action"], request_id)
        else:
            raise Problem(
                422, "invalid_message", f"publish bet, insurance or action ({', '.join(ACTIONS)})"
            )
        return Published(None, {"state": state})

    ctx.gateway.register(
        Namespace(
            "blackjack",
            can_publish=lambda user, topic: True,
            on_publish=on_publish,
            presence=True,
        )
    )
    register(ctx.api, service, ctx.audit)
    ctx.oversight.add_figures("blackjack", service.figures)
    ctx.oversight.add_user_facts("blackjack", service.user_facts)
    ctx.add_dashboard(Path(__file__).parent / "dashboard.js")
    ctx.announce("Blackjack", "{url}/api/blackjack/tables  (verify shoes: /api/blackjack/verify)")
    await service.start()
    ctx.on_cleanup(service.close)


plugin = Plugin(setup=setup, config=Config, migrations=MIGRATIONS, error_codes=CODES)
