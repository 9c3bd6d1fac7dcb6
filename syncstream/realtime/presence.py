"""Presence on this node's sockets: who is in a topic (across nodes, through the engine's
:class:`.engine.PresenceManager`), joins and leaves told to the topic, and the refresh that
keeps this node's entries from expiring — and rebuilds them after the broker came back."""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import structlog

from ..config import RealtimeSettings
from ..errors import Problem
from .engine import Broker, PresenceManager
from .hub import Hub
from .namespace import Namespaces

if TYPE_CHECKING:
    from .client import Client

log = structlog.get_logger(__name__)

PRESENCE_BATCH = 200  # sockets refreshed per turn of the event loop


class PresenceTracker:
    def __init__(
        self,
        settings: RealtimeSettings,
        manager: PresenceManager,
        broker: Broker,
        namespaces: Namespaces,
        hub: Hub,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.broker = broker
        self.namespaces = namespaces
        self.hub = hub
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._refresher: asyncio.Task[None] | None = None
        # After the broker came back (Redis restarted empty) presence lists only the nodes
        # that refreshed theirs since: until every node has had a refresh period, absence
        # means nothing and presence answers 503.
        self._settles_at = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._refresher = loop.create_task(self._refresh())

    def stop(self) -> None:
        if self._refresher:
            self._refresher.cancel()

    @staticmethod
    def info(client: Client) -> dict[str, Any]:
        return {"user_id": client.user.id, "username": client.user.username, "client_id": client.id}

    async def add(self, client: Client, topic: str) -> None:
        await self.manager.add(topic, client.id, self.info(client))

    async def remove(self, client: Client, topic: str) -> None:
        await self.manager.remove(topic, client.id)

    async def announce(self, client: Client, topic: str, what: str) -> None:
        """Tell the topic's subscribers that ``client`` joined or left."""
        await self.broker.publish(
            topic, {"presence": what, "user": self.info(client)}, ephemeral=True
        )

    async def members(self, topic: str) -> list[dict[str, Any]]:
        """Present users (one entry per user however many sockets they have)."""
        users: dict[str, dict[str, Any]] = {}
        for info in (await self.manager.list(topic)).values():
            entry = users.setdefault(
                info["user_id"],
                {"user_id": info["user_id"], "username": info["username"], "connections": 0},
            )
            entry["connections"] += 1
        return sorted(users.values(), key=lambda u: str(u["username"]))

    async def of(self, topic: str) -> list[dict[str, Any]]:
        """Who is in ``topic`` — 503 ``presence_recovering`` while it may still be missing
        sockets of other nodes after the broker came back (callers decide on absence)."""
        wait = self._settles_at - self._loop.time()
        if wait > 0:
            raise Problem(
                503, "presence_recovering",
                "presence is being rebuilt after the realtime broker came back; retry shortly",
                headers={"Retry-After": str(math.ceil(wait))}, retry_after=math.ceil(wait),
            )  # fmt: skip
        return await self.members(topic)

    def rebuild(self) -> asyncio.Task[None]:
        """The broker is back and may have lost presence (Redis restarted empty): this
        node's entries are written again now, and answers wait a refresh period for the
        other nodes to do the same."""
        self._settles_at = self._loop.time() + self.settings.presence_ttl_seconds / 3
        return self._loop.create_task(self.refresh_once())

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_ttl_seconds / 3)
            await self.refresh_once()

    async def refresh_once(self) -> None:
        for n, client in enumerate(list(self.hub.clients), 1):
            if n % PRESENCE_BATCH == 0:  # 2,000 sockets in one go held the loop ~8 ms
                await asyncio.sleep(0)
            for topic in list(client.topics):
                namespace = self.namespaces.holding(topic)
                if namespace is not None and namespace.presence:
                    try:
                        await self.add(client, topic)
                    except Exception:
                        log.exception("presence.refresh_failed", topic=topic)
