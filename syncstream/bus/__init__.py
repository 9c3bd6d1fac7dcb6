"""The event bus: in-process by default, Redis between nodes."""

from __future__ import annotations

from collections.abc import Callable

from .base import Event, EventBus, Listener, Unsubscribe
from .memory import MemoryBus
from .redis import RedisBus


def create_bus(
    node_id: str, redis_url: str, prefix: str, on_fire: Callable[[str], None] | None = None
) -> EventBus:
    """The in-process bus, or the Redis bus when ``redis_url`` is set."""
    if redis_url:
        return RedisBus(node_id, redis_url, prefix, on_fire)
    return MemoryBus(node_id, on_fire)


__all__ = ["Event", "EventBus", "Listener", "MemoryBus", "RedisBus", "Unsubscribe", "create_bus"]
