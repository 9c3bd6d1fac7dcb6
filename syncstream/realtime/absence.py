"""Who has gone away from a topic: members with no presence on it (no subscribed socket on
any node) and no other sign of life for a grace period. Plugins use it to free a seat or
hang up for a player or a caller whose connection vanished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

import structlog

from .gateway import Gateway

log = structlog.get_logger(__name__)


class Absence:
    def __init__(self, gateway: Gateway, grace_seconds: float) -> None:
        self.gateway = gateway
        self.grace = grace_seconds
        self._seen: dict[tuple[str, str], float] = {}  # (topic, user id) -> monotonic time

    def seen(self, topic: str, user_id: str) -> None:
        """A sign of life other than presence (an HTTP call, say)."""
        self._seen[(topic, user_id)] = time.monotonic()

    async def absent(self, topic: str, members: Iterable[str]) -> list[str]:
        """The ``members`` gone from ``topic`` for longer than the grace period."""
        present = {p["user_id"] for p in await self.gateway.presence_of(topic)}
        now, gone = time.monotonic(), []
        for user_id in members:
            key = (topic, user_id)
            if user_id in present:
                self._seen[key] = now
            elif now - self._seen.setdefault(key, now) > self.grace:
                gone.append(user_id)
        return gone

    def forget(self, topic: str, user_id: str) -> None:
        self._seen.pop((topic, user_id), None)

    async def patrol(
        self,
        members: Callable[[], Iterable[tuple[str, list[str]]]],
        on_gone: Callable[[str, list[str]], Awaitable[None]],
    ) -> None:
        """Forever, every quarter of the grace period (5 s at most): for each ``(topic,
        member ids)`` that ``members()`` gives, ``on_gone(topic, ids gone)`` if any are
        (which should :meth:`forget` those it dealt with; the others are offered again)."""
        while True:
            await asyncio.sleep(min(self.grace / 4, 5.0))
            for topic, users in list(members()):
                try:
                    gone = await self.absent(topic, users)
                    if gone:
                        await on_gone(topic, gone)
                except Exception:
                    log.exception("absence.on_gone_failed", topic=topic)
