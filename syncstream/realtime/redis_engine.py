"""The cluster realtime engine: per-topic sequence, history and presence in Redis.

A publication is one Lua script: next seq, frame built around the caller's JSON, history
(a sorted set scored by seq, trimmed), expiry, and PUBLISH — so every node receives the same
publications in the same order with the same seqs. Keys carry a ``{topic}`` hash tag so a
topic's keys live in one slot of a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from .engine import (
    Broker,
    HistoryResult,
    PresenceManager,
    Publication,
    PublicationHandler,
    ephemeral_frame,
    event_frame,
    history_kept,
    is_recovered,
)
from .memory_engine import encode, new_epoch

log = structlog.get_logger(__name__)

# KEYS: seq, epoch, history. ARGV: new epoch, ttl. Returns the topic's epoch (made if missing).
_EPOCH = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[2])
  redis.call('DEL', KEYS[1], KEYS[3])
end
"""

_PUBLISH = (
    _EPOCH
    + """
local seq = redis.call('INCR', KEYS[1])
local frame = '{"op":"event","topic":' .. ARGV[3] .. ',"seq":' .. seq .. ',"epoch":"' .. epoch
  .. '","data":' .. ARGV[4] .. '}'
local size = tonumber(ARGV[5])
if size > 0 then
  redis.call('ZADD', KEYS[3], seq, frame)
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(size + 1))
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[6], seq .. ':' .. epoch .. ':' .. frame)
return {seq, epoch}
"""
)

_HISTORY = (
    _EPOCH
    + """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local items = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[3], '+inf', 'WITHSCORES')
return {seq, epoch, items}
"""
)

_POSITION = (
    _EPOCH
    + """
return {tonumber(redis.call('GET', KEYS[1]) or '0'), epoch}
"""
)


class RedisBroker(Broker):
    def __init__(
        self, url: str, prefix: str, node_id: str, history_size: int, history_ttl_seconds: int
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id
        self.history_size = history_size
        self.ttl = history_ttl_seconds
        self._channel_prefix = f"{prefix}:rt:ch:"
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._topics: set[str] = set()
        self._handler: PublicationHandler | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    def _keys(self, topic: str) -> list[str]:
        base = f"{self.prefix}:rt:{{{topic}}}"
        return [f"{base}:seq", f"{base}:epoch", f"{base}:history"]

    @property
    def redis(self) -> Redis:
        assert self._redis is not None, "the broker is not started"
        return self._redis

    async def start(self, handler: PublicationHandler) -> None:
        self._handler = handler
        self._redis = Redis.from_url(self.url, decode_responses=True)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise ConnectionError(f"cannot reach Redis at {self.url}: {exc}") from exc
        self._publish = self._redis.register_script(_PUBLISH)
        self._history = self._redis.register_script(_HISTORY)
        self._position = self._redis.register_script(_POSITION)
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._connected.wait(), 10)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        if self._pubsub is not None:
            await self._pubsub.subscribe(self._channel_prefix + topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(self._channel_prefix + topic)

    async def publish(
        self, topic: str, data: Any, *, ephemeral: bool = False, history: int | None = None
    ) -> Publication:
        topic_json, data_json = encode(topic), encode(data)
        channel = self._channel_prefix + topic
        if ephemeral:
            frame = ephemeral_frame(topic_json, data_json)
            await self.redis.publish(channel, "0::" + frame)
            return Publication(topic, 0, "", frame)
        seq, epoch = await self._publish(
            keys=self._keys(topic),
            args=[
                new_epoch(),
                self.ttl,
                topic_json,
                data_json,
                history_kept(self.history_size, history),
                channel,
            ],
        )
        seq = int(seq)
        return Publication(topic, seq, epoch, event_frame(topic_json, seq, epoch, data_json))

    async def history(self, topic: str, since: int, epoch: str | None) -> HistoryResult:
        top, current, items = await self._history(
            keys=self._keys(topic), args=[new_epoch(), self.ttl, since]
        )
        pubs = [
            Publication(topic, int(float(score)), current, frame)
            for frame, score in zip(items[::2], items[1::2], strict=True)
        ]
        recovered = is_recovered(since, epoch, current, int(top), len(pubs))
        return HistoryResult(pubs if recovered else [], int(top), current, recovered)

    async def position(self, topic: str) -> tuple[int, str]:
        top, epoch = await self._position(keys=self._keys(topic), args=[new_epoch(), self.ttl])
        return int(top), str(epoch)

    async def _read(self) -> None:
        """Deliver publications of subscribed topics; reconnect and resubscribe on failure."""
        delay = 0.1
        while True:
            self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                # A placeholder channel keeps the connection in subscribe mode with no topics.
                await self._pubsub.subscribe(f"{self.prefix}:rt:node:{self.node_id}")
                if self._topics:
                    await self._pubsub.subscribe(*(self._channel_prefix + t for t in self._topics))
                self._connected.set()
                delay = 0.1
                while True:
                    message = await self._pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._receive(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                log.warning("realtime.redis_lost", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                pubsub, self._pubsub = self._pubsub, None
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _receive(self, channel: str, raw: str) -> None:
        topic = channel[len(self._channel_prefix) :]
        seq, epoch, frame = raw.split(":", 2)
        if self._handler is not None and topic in self._topics:
            self._handler(Publication(topic, int(seq), epoch, frame))


class RedisPresence(PresenceManager):
    """A hash per topic: client id -> JSON info with its expiry time."""

    def __init__(self, url: str, prefix: str, ttl_seconds: int) -> None:
        self.prefix = prefix
        self.ttl = ttl_seconds
        self._redis = Redis.from_url(url, decode_responses=True)

    def _key(self, topic: str) -> str:
        return f"{self.prefix}:rt:{{{topic}}}:presence"

    async def add(self, topic: str, client_id: str, info: dict[str, Any]) -> None:
        key = self._key(topic)
        entry = json.dumps({"info": info, "expires": time.time() + self.ttl})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, client_id, entry)
            pipe.expire(key, self.ttl * 2)
            await pipe.execute()

    async def remove(self, topic: str, client_id: str) -> None:
        await self._redis.hdel(self._key(topic), client_id)

    async def list(self, topic: str) -> dict[str, dict[str, Any]]:
        key = self._key(topic)
        raw = await self._redis.hgetall(key)
        now = time.time()
        live: dict[str, dict[str, Any]] = {}
        expired = []
        for client_id, value in raw.items():
            entry = json.loads(value)
            if entry["expires"] < now:
                expired.append(client_id)
            else:
                live[str(client_id)] = entry["info"]
        if expired:
            await self._redis.hdel(key, *expired)
        return live

    async def close(self) -> None:
        await self._redis.aclose()
