"""The in-process bus: one node's listeners, called in the order they subscribed."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from .. import jsoncodec
from ..ids import new_id
from .base import Event, EventBus, Listener, Unsubscribe
from .patterns import Matcher, compile_pattern

log = structlog.get_logger(__name__)


class MemoryBus(EventBus):
    """Dispatches events to local listeners; sync listeners run inline, async ones as tasks."""

    def __init__(self, node_id: str, on_fire: Callable[[str], None] | None = None) -> None:
        self.node_id = node_id
        self._on_fire = on_fire
        self._listeners: list[tuple[str, Matcher, Listener]] = []
        self._by_type: dict[str, list[Listener]] = {}  # cache: event type -> its listeners
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)

    def listen(self, pattern: str, listener: Listener) -> Unsubscribe:
        entry = (pattern, compile_pattern(pattern), listener)
        self._listeners.append(entry)
        self._by_type.clear()

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
                self._by_type.clear()

        return unsubscribe

    async def fire(self, event_type: str, data: Mapping[str, Any] | None = None) -> Event:
        event, _ = self.make_event(event_type, data)
        self.dispatch(event)
        return event

    def make_event(self, event_type: str, data: Mapping[str, Any] | None) -> tuple[Event, str]:
        """A new event of this node and its JSON text (checked to be serialisable)."""
        event = Event(event_type, dict(data or {}), self.node_id, time.time(), new_id())
        try:
            text = jsoncodec.dumps(
                {
                    "type": event.type,
                    "data": event.data,
                    "origin": event.origin,
                    "time": event.time,
                    "id": event.id,
                }
            )
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"bus event {event_type!r} carries data that is not JSON: {exc}"
            ) from None
        return event, text

    def dispatch(self, event: Event) -> None:
        """Call every listener whose pattern matches (errors are logged, never raised)."""
        if self._on_fire is not None:
            self._on_fire(event.type)
        listeners = self._by_type.get(event.type)
        if listeners is None:
            listeners = [fn for _, match, fn in self._listeners if match(event.type)]
            self._by_type[event.type] = listeners
        for listener in listeners:
            try:
                result = listener(event)
                # (None first: isawaitable's ABC check is slow, and most listeners are sync)
                if result is not None and inspect.isawaitable(result):
                    task = asyncio.ensure_future(self._guard(result, event, listener))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception(
                    "bus.listener_failed", event_type=event.type, listener=_name(listener)
                )

    async def _guard(self, awaitable: Any, event: Event, listener: Listener) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("bus.listener_failed", event_type=event.type, listener=_name(listener))


def _name(listener: Listener) -> str:
    return getattr(listener, "__qualname__", repr(listener))
