"""The cluster realtime engine: per-topic sequence, history and presence in Redis.

A publication is one Lua script: next seq, frame built around the caller's JSON, history
(a sorted set scored by seq, trimmed), expiry, and PUBLISH — so every node receives the same
publications in the same order with the same seqs. Keys carry a ``{topic}`` hash tag so a
topic's keys live in one slot of a Redis Cluster.

Subscriptions use their own connection without redis-py's silent reconnects: a lost connection
surfaces here, and after reconnecting the node replays each subscribed topic's history from
the last seq it delivered — or, if the history lost it (Redis restarted empty), tells the
topic's subscribers to resync (see :mod:`.engine`). Commands that fail raise
:class:`BrokerUnavailable` (503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .engine import (
    Broker,
    BrokerUnavailable,
    HistoryResult,
    PresenceManager,
    Publication,
    PublicationHandler,
    history_kept,
    is_recovered,
)
from .memory_engine import encode, new_epoch
from .wire import ephemeral_frame, event_frame, resync_frame

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 5.0  # silence on the subscription connection before it is checked

# KEYS: seq, epoch, history. ARGV: new epoch, ttl. Returns the topic's epoch (made if missing).
_EPOCH = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[2])
  redis.call('DEL', KEYS[1], KEYS[3])
end
"""

# After _EPOCH. KEYS[4]: the highest version published in order. ARGV[3]: topic JSON,
# ARGV[4]: history size, ARGV[5]: channel. One publication of data JSON ``data``, its frame
# as wire.event_frame builds it.
_ONE = """
local function publish(data)
  local seq = redis.call('INCR', KEYS[1])
  local frame = '{"op":"event","topic":' .. ARGV[3] .. ',"seq":' .. seq .. ',"epoch":"'
    .. epoch .. '","data":' .. data .. '}'
  local size = tonumber(ARGV[4])
  if size > 0 then
    redis.call('ZADD', KEYS[3], seq, frame)
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(size + 1))
    redis.call('EXPIRE', KEYS[3], ARGV[2])
  end
  redis.call('PUBLISH', ARGV[5], seq .. ':' .. epoch .. ':' .. frame)
  return seq
end
local function expire()
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
"""

# ARGV[6]: data JSON.
_PUBLISH = (
    _EPOCH
    + _ONE
    + """
local seq = publish(ARGV[6])
expire()
return {seq, epoch}
"""
)

# ARGV[6], ARGV[7], ...: version, data JSON pairs. Returns {epoch, version, seq, ...} of
# the items published (those above the last version, which then moves up).
_PUBLISH_ORDERED = (
    _EPOCH
    + _ONE
    + """
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
local out = {epoch}
for i = 6, #ARGV, 2 do
  local version = tonumber(ARGV[i])
  if version > last then
    last = version
    table.insert(out, version)
    table.insert(out, publish(ARGV[i + 1]))
  end
end
redis.call('SET', KEYS[4], last, 'EX', ARGV[2])
expire()
return out
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
        self,
        url: str,
        prefix: str,
        node_id: str,
        history_size: int,
        history_ttl_seconds: int,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.url = url
        self.heartbeat = heartbeat
        self.prefix = prefix
        self.node_id = node_id
        self.history_size = history_size
        self.ttl = history_ttl_seconds
        self._channel_prefix = f"{prefix}:rt:ch:"
        self._redis: Redis | None = None
        self._listener: Redis | None = None  # subscriptions: no silent reconnects
        self._pubsub: PubSub | None = None
        self._topics: set[str] = set()
        # (seq, epoch) of the last publication delivered per subscribed topic
        self._seen: dict[str, tuple[int, str]] = {}
        self._handler: PublicationHandler | None = None
        self._node_channel = self.node_channel(node_id)
        self._node_messages: Callable[[str], None] | None = None
        self._reconnected: list[Callable[[], None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.losses = 0  # times the subscription connection was lost
        self.reconnects = 0  # times it came back

    def node_channel(self, node_id: str) -> str:
        """The channel a node's control messages reach it on (see :mod:`.redis_control`)."""
        return f"{self.prefix}:rt:node:{node_id}"

    def on_node_message(self, callback: Callable[[str], None] | None) -> None:
        """Hand messages on this node's channel to ``callback`` (None: drop them)."""
        self._node_messages = callback

    def _keys(self, topic: str) -> list[str]:
        base = f"{self.prefix}:rt:{{{topic}}}"
        return [f"{base}:seq", f"{base}:epoch", f"{base}:history", f"{base}:version"]

    @property
    def redis(self) -> Redis:
        assert self._redis is not None, "the broker is not started"
        return self._redis

    async def start(self, handler: PublicationHandler) -> None:
        self._handler = handler
        self._redis = Redis.from_url(self.url, decode_responses=True, socket_connect_timeout=2)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise ConnectionError(f"cannot reach Redis at {self.url}: {exc}") from exc
        self._listener = Redis.from_url(
            self.url, decode_responses=True, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        self._publish = self._redis.register_script(_PUBLISH)
        self._publish_ordered = self._redis.register_script(_PUBLISH_ORDERED)
        self._history = self._redis.register_script(_HISTORY)
        self._position = self._redis.register_script(_POSITION)
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._connected.wait(), 10)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for client in (self._listener, self._redis):
            if client is not None:
                await client.aclose()

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        try:
            if self._pubsub is not None:
                await self._pubsub.subscribe(self._channel_prefix + topic)
            if topic not in self._seen:  # where a replay after a lost connection starts
                self._note(topic, *await self.position(topic))
        except (RedisError, OSError) as exc:
            self._topics.discard(topic)
            raise BrokerUnavailable(exc) from exc

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        self._seen.pop(topic, None)
        if self._pubsub is not None:
            # A lost connection forgets it anyway: the reader resubscribes what is wanted.
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._channel_prefix + topic)

    async def publish(
        self, topic: str, data: Any, *, ephemeral: bool = False, history: int | None = None
    ) -> Publication:
        topic_json, data_json = encode(topic), encode(data)
        channel = self._channel_prefix + topic
        try:
            if ephemeral:
                frame = ephemeral_frame(topic_json, data_json)
                await self.redis.publish(channel, "0::" + frame)
                return Publication(topic, 0, "", frame)
            seq, epoch = await self._publish(
                keys=self._keys(topic),
                args=[*self._common(topic, topic_json, history), data_json],
            )
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(exc) from exc
        seq = int(seq)
        return Publication(topic, seq, epoch, event_frame(topic_json, seq, epoch, data_json))

    async def publish_ordered(
        self, topic: str, items: Sequence[tuple[int, Any]], *, history: int | None = None
    ) -> list[Publication]:
        topic_json = encode(topic)
        encoded = {version: encode(data) for version, data in items}
        try:
            epoch, *made = await self._publish_ordered(
                keys=self._keys(topic),
                args=[
                    *self._common(topic, topic_json, history),
                    *(x for version, data_json in encoded.items() for x in (version, data_json)),
                ],
            )
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(exc) from exc
        return [
            Publication(topic, seq, epoch, event_frame(topic_json, seq, epoch, encoded[version]))
            for version, seq in zip(made[::2], made[1::2], strict=True)
        ]

    def _common(self, topic: str, topic_json: str, history: int | None) -> list[Any]:
        """The arguments every publishing script starts with."""
        kept = history_kept(self.history_size, history)
        return [new_epoch(), self.ttl, topic_json, kept, self._channel_prefix + topic]

    async def history(self, topic: str, since: int, epoch: str | None) -> HistoryResult:
        try:
            top, current, items = await self._history(
                keys=self._keys(topic), args=[new_epoch(), self.ttl, since]
            )
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(exc) from exc
        pubs = [
            Publication(topic, int(float(score)), current, frame)
            for frame, score in zip(items[::2], items[1::2], strict=True)
        ]
        recovered = is_recovered(since, epoch, current, int(top), len(pubs))
        return HistoryResult(pubs if recovered else [], int(top), current, recovered)

    async def position(self, topic: str) -> tuple[int, str]:
        try:
            top, epoch = await self._position(keys=self._keys(topic), args=[new_epoch(), self.ttl])
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(exc) from exc
        return int(top), str(epoch)

    async def _read(self) -> None:
        """Deliver publications of subscribed topics; on a lost connection, reconnect,
        resubscribe and recover what the topics published meanwhile."""
        assert self._listener is not None
        delay, lost = 0.1, False
        while True:
            # Subscribe confirmations and PING answers come through too: every word from
            # Redis counts as a sign of life (ignoring the PONG made an idle node think its
            # connection lost every two heartbeats).
            self._pubsub = self._listener.pubsub(ignore_subscribe_messages=False)
            try:
                # The node's own channel (control messages) also keeps the connection in
                # subscribe mode with no topics.
                await self._pubsub.subscribe(self._node_channel)
                if self._topics:
                    await self._pubsub.subscribe(*(self._channel_prefix + t for t in self._topics))
                if lost:  # subscribed again: what arrives from now on is not missed
                    await self._recover()
                    for callback in self._reconnected:
                        callback()
                    self.reconnects += 1
                    log.info("realtime.redis_back", topics=len(self._topics))
                    lost = False
                self._connected.set()
                delay = 0.1
                await self._listen(self._pubsub)
            except (RedisError, OSError, BrokerUnavailable) as exc:
                if not lost:
                    self.losses += 1
                lost = True
                log.warning("realtime.redis_lost", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                pubsub, self._pubsub = self._pubsub, None
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self, pubsub: PubSub) -> None:
        """Hand messages over until the connection fails — or goes silent: a frozen Redis
        or a lost network keeps the socket open, so after ``heartbeat`` seconds without a
        word a PING goes out, and no answer within as long again counts as a lost
        connection."""
        loop = asyncio.get_running_loop()
        heard, pinged = loop.time(), False
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self.heartbeat))
            now = loop.time()
            if message is not None:
                heard, pinged = now, False
                if message["type"] == "message":
                    self._receive(message["channel"], message["data"])
            elif now - heard > self.heartbeat:
                if pinged:
                    raise RedisConnectionError("Redis did not answer a PING in time")
                await pubsub.ping()
                heard, pinged = now, True

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnected.append(callback)

    async def _recover(self) -> None:
        """Replay each subscribed topic's publications since the last one delivered, or
        tell its subscribers to resync where the history no longer has them."""
        for topic in list(self._topics):
            seen = self._seen.get(topic)
            if seen is None:
                continue  # subscribed while Redis was away: its subscribe failed
            result = await self.history(topic, *seen)
            if topic not in self._topics:
                continue  # unsubscribed meanwhile
            if result.recovered:
                for pub in result.publications:
                    self._deliver(pub)
            else:
                self._note(topic, result.top_seq, result.epoch)
                frame = resync_frame(encode(topic), result.top_seq, result.epoch)
                if self._handler is not None:
                    self._handler(Publication(topic, 0, result.epoch, frame))

    def _note(self, topic: str, seq: int, epoch: str) -> None:
        seen = self._seen.get(topic)
        if seen is None or seen[1] != epoch or seen[0] < seq:
            self._seen[topic] = (seq, epoch)

    def _deliver(self, pub: Publication) -> None:
        """Hand a sequenced publication over once (a replay and the live feed overlap)."""
        seen = self._seen.get(pub.topic)
        if seen is not None and seen[1] == pub.epoch and pub.seq <= seen[0]:
            return
        self._seen[pub.topic] = (pub.seq, pub.epoch)
        if self._handler is not None:
            self._handler(pub)

    def _receive(self, channel: str, raw: str) -> None:
        topic = channel[len(self._channel_prefix) :]
        if topic not in self._topics:
            if channel == self._node_channel and self._node_messages is not None:
                self._node_messages(raw)
            return
        seq, epoch, frame = raw.split(":", 2)
        if seq == "0":  # ephemeral
            if self._handler is not None:
                self._handler(Publication(topic, 0, epoch, frame))
        else:
            self._deliver(Publication(topic, int(seq), epoch, frame))


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
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, client_id, entry)
                pipe.expire(key, self.ttl * 2)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(exc) from exc

    async def remove(self, topic: str, client_id: str) -> None:
        try:
            await self._redis.hdel(self._key(topic), client_id)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(exc) from exc

    async def list(self, topic: str) -> dict[str, dict[str, Any]]:
        key = self._key(topic)
        try:
            raw = await self._redis.hgetall(key)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(exc) from exc
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
