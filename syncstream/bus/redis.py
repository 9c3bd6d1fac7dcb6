"""The Redis bus: local dispatch at once, and every other node's listeners via pub/sub.

While Redis is away, fired events wait in a bounded backlog (local listeners got them at once)
and go out in order when it answers again: firing never fails because of the broker. Redis
pub/sub delivers only to who is subscribed at that moment, so the backlog waits until the
other nodes have subscribed again too: their readers retry with a backoff that doubles, so
each one's wait in progress is at most as long as Redis was away (capped at
``READ_RETRY_MAX``) — the flush waits that long once Redis answers. Events
other nodes fired while this node's subscription was down are not replayed (the bus carries
notifications; state lives in the store and the realtime engine's history).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import jsoncodec
from .base import Event
from .memory import MemoryBus

log = structlog.get_logger(__name__)

BACKLOG = 10_000  # events kept for Redis while it is away (the oldest go first)
READ_RETRY_MAX = 5.0  # the longest wait of a reader between two tries to subscribe again


class RedisBus(MemoryBus):
    """Publishes each event on ``<prefix>:bus``; a reader dispatches other nodes' events here."""

    def __init__(
        self,
        node_id: str,
        url: str,
        prefix: str,
        on_fire: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(node_id, on_fire)
        self.url = url
        self.channel = f"{prefix}:bus"
        self._redis: Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._backlog: deque[str] = deque(maxlen=BACKLOG)
        self._flusher: asyncio.Task[None] | None = None
        self._lost_at: float | None = None  # when the reader lost Redis (loop time)
        self._subscribed_since_loss = True

    async def start(self) -> None:
        self._redis = Redis.from_url(self.url, decode_responses=True)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise ConnectionError(f"cannot reach Redis at {self.url}: {exc}") from exc
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def stop(self) -> None:
        for task in (self._reader, self._flusher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await super().stop()
        if self._redis is not None:
            await self._redis.aclose()

    async def fire(self, event_type: str, data: Mapping[str, Any] | None = None) -> Event:
        event, text = self.make_event(event_type, data)
        self.dispatch(event)
        assert self._redis is not None, "the bus is not started"
        if self._backlog:  # behind what waits already, to keep the order
            self._keep(text)
            return event
        try:
            await self._redis.publish(self.channel, text)
        except (RedisError, OSError) as exc:
            log.warning("bus.redis_unavailable", error=str(exc), backlog=len(self._backlog) + 1)
            self._keep(text)
        return event

    def _keep(self, text: str) -> None:
        if len(self._backlog) == BACKLOG:
            log.warning("bus.backlog_full", dropped=1)
        self._backlog.append(text)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        """Send the backlog in order once Redis answers again and the other nodes had time to
        subscribe again (see the module's docstring)."""
        assert self._redis is not None
        loop = asyncio.get_running_loop()
        delay = 0.1
        while True:
            try:
                await self._redis.ping()
                break
            except (RedisError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        if self._lost_at is not None:
            away = loop.time() - self._lost_at
            await asyncio.sleep(min(away, READ_RETRY_MAX) + 0.25)
            self._lost_at = None
        delay = 0.1
        while self._backlog:
            try:
                await self._redis.publish(self.channel, self._backlog[0])
            except (RedisError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._backlog.popleft()
            delay = 0.1

    async def _read(self) -> None:
        """Dispatch other nodes' events; reconnect with backoff when Redis goes away."""
        assert self._redis is not None
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                self._subscribed_since_loss = True
                delay = 0.1
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._receive(message["data"])
            except (RedisError, OSError) as exc:
                if self._subscribed_since_loss:  # the first failure of this outage
                    self._lost_at = asyncio.get_running_loop().time()
                    self._subscribed_since_loss = False
                log.warning("bus.redis_lost", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, READ_RETRY_MAX)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _receive(self, raw: str) -> None:
        try:
            item = jsoncodec.loads(raw)
            if item["origin"] == self.node_id:
                return
            event = Event(item["type"], item["data"], item["origin"], item["time"], item["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("bus.bad_message", size=len(raw))
            return
        self.dispatch(event)
