"""The event bus: async publish/subscribe of named, JSON-serialisable events.

Event types are dotted (``chat.message``); listeners subscribe with patterns where ``*`` is
exactly one segment and ``**`` is any number of segments (``**`` alone matches everything).
The in-process backend serves one node; the Redis backend carries events between nodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """One bus event. ``origin`` is the node that fired it; ``time`` is Unix seconds (UTC)."""

    type: str
    data: JSON
    origin: str
    time: float
    id: str = field(default="")


Listener = Callable[[Event], Awaitable[None] | None]
Unsubscribe = Callable[[], None]


class EventBus(ABC):
    """Fire events and listen to them by pattern; listener errors are logged, never raised."""

    node_id: str

    @abstractmethod
    async def start(self) -> None:
        """Connect (Redis) and start delivering remote events."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop delivering; pending local deliveries finish first."""

    @abstractmethod
    def listen(self, pattern: str, listener: Listener) -> Unsubscribe:
        """Call ``listener`` for every event whose type matches ``pattern``."""

    @abstractmethod
    async def fire(self, event_type: str, data: Mapping[str, Any] | None = None) -> Event:
        """Publish an event to every matching listener on every node."""
