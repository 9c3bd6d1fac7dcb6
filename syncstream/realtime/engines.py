"""Pick the realtime engine: memory for one node, Redis for several."""

from __future__ import annotations

from .engine import Broker, PresenceManager
from .memory_engine import MemoryBroker, MemoryPresence
from .redis_engine import RedisBroker, RedisPresence


def create_engine(
    redis_url: str,
    prefix: str,
    node_id: str,
    history_size: int,
    history_ttl_seconds: int,
    presence_ttl_seconds: int,
) -> tuple[Broker, PresenceManager]:
    if redis_url:
        return (
            RedisBroker(redis_url, prefix, node_id, history_size, history_ttl_seconds),
            RedisPresence(redis_url, prefix, presence_ttl_seconds),
        )
    return MemoryBroker(history_size, history_ttl_seconds), MemoryPresence(presence_ttl_seconds)
