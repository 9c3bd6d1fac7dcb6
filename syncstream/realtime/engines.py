"""Pick the realtime engine: memory for one node, Redis for several."""

from __future__ import annotations

from typing import NamedTuple

from .control import ControlChannel
from .engine import Broker, PresenceManager
from .memory_engine import MemoryBroker, MemoryControl, MemoryPresence
from .redis_control import RedisControl
from .redis_engine import RedisBroker, RedisPresence


class Engine(NamedTuple):
    broker: Broker
    presence: PresenceManager
    control: ControlChannel


def create_engine(
    redis_url: str,
    prefix: str,
    node_id: str,
    history_size: int,
    history_ttl_seconds: int,
    presence_ttl_seconds: int,
) -> Engine:
    if redis_url:
        broker = RedisBroker(redis_url, prefix, node_id, history_size, history_ttl_seconds)
        return Engine(
            broker, RedisPresence(redis_url, prefix, presence_ttl_seconds), RedisControl(broker)
        )
    return Engine(
        MemoryBroker(history_size, history_ttl_seconds),
        MemoryPresence(presence_ttl_seconds),
        MemoryControl(node_id),
    )
