"""One node's realtime engine: sequences, history, presence and the control channel in memory."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import jsoncodec
from .control import ControlChannel
from .engine import (
    Broker,
    HistoryResult,
    PresenceManager,
    Publication,
    PublicationHandler,
    history_kept,
    is_recovered,
)
from .wire import ephemeral_frame, event_frame

SWEEP_EVERY = 1000  # publications between sweeps of idle topics


def new_epoch() -> str:
    return secrets.token_hex(4)


def encode(value: Any) -> str:
    return jsoncodec.dumps(value)


@dataclass
class _Topic:
    epoch: str = field(default_factory=new_epoch)
    seq: int = 0
    version: int = 0  # the highest version published in order (publish_ordered)
    # (published at, seq, frame): a tuple of atoms, which the garbage collector stops tracking
    history: deque[tuple[float, int, str]] = field(default_factory=deque)


class MemoryBroker(Broker):
    def __init__(self, history_size: int, history_ttl_seconds: float) -> None:
        self.history_size = history_size
        self.ttl = history_ttl_seconds
        self._topics: dict[str, _Topic] = {}
        self._subscribed: set[str] = set()
        self._handler: PublicationHandler | None = None
        self._since_sweep = 0

    async def start(self, handler: PublicationHandler) -> None:
        self._handler = handler

    async def stop(self) -> None:
        self._handler = None

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """In process: there is no connection to lose, so ``callback`` is never due."""

    async def subscribe(self, topic: str) -> None:
        self._subscribed.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._subscribed.discard(topic)
        self._prune(topic, time.monotonic())

    def _state(self, topic: str) -> _Topic:
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic()
        return state

    async def publish(
        self, topic: str, data: Any, *, ephemeral: bool = False, history: int | None = None
    ) -> Publication:
        topic_json, data_json = encode(topic), encode(data)
        if ephemeral:
            pub = Publication(topic, 0, "", ephemeral_frame(topic_json, data_json))
        else:
            pub = self._sequenced(topic, topic_json, data_json, history)
        self._deliver(pub)
        return pub

    async def publish_ordered(
        self, topic: str, items: Sequence[tuple[int, Any]], *, history: int | None = None
    ) -> list[Publication]:
        state, topic_json = self._state(topic), encode(topic)
        pubs = []
        for version, data in items:
            if version > state.version:
                state.version = version
                pubs.append(self._sequenced(topic, topic_json, encode(data), history))
        for pub in pubs:
            self._deliver(pub)
        return pubs

    def _sequenced(
        self, topic: str, topic_json: str, data_json: str, history: int | None
    ) -> Publication:
        """The topic's next publication, kept in its history."""
        state = self._state(topic)
        state.seq += 1
        pub = Publication(
            topic,
            state.seq,
            state.epoch,
            event_frame(topic_json, state.seq, state.epoch, data_json),
        )
        kept = history_kept(self.history_size, history)
        if kept:
            state.history.append((time.monotonic(), pub.seq, pub.frame))
            while len(state.history) > kept:
                state.history.popleft()
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._sweep()
        return pub

    def _deliver(self, pub: Publication) -> None:
        if self._handler is not None and pub.topic in self._subscribed:
            self._handler(pub)

    def _prune(self, topic: str, now: float) -> None:
        state = self._topics.get(topic)
        if state is None:
            return
        while state.history and now - state.history[0][0] > self.ttl:
            state.history.popleft()
        if not state.history and topic not in self._subscribed:
            del self._topics[topic]  # a later publish starts a new epoch: resumes see the loss

    def _sweep(self) -> None:
        self._since_sweep = 0
        now = time.monotonic()
        for topic in list(self._topics):
            self._prune(topic, now)

    async def history(self, topic: str, since: int, epoch: str | None) -> HistoryResult:
        self._prune(topic, time.monotonic())
        state = self._state(topic)
        pubs = [
            Publication(topic, seq, state.epoch, frame)
            for _, seq, frame in state.history
            if seq > since
        ]
        recovered = is_recovered(since, epoch, state.epoch, state.seq, len(pubs))
        return HistoryResult(pubs if recovered else [], state.seq, state.epoch, recovered)

    async def position(self, topic: str) -> tuple[int, str]:
        state = self._state(topic)
        return state.seq, state.epoch


class MemoryPresence(PresenceManager):
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._topics: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}

    async def add(self, topic: str, client_id: str, info: dict[str, Any]) -> None:
        self._topics.setdefault(topic, {})[client_id] = (time.monotonic() + self.ttl, info)

    async def remove(self, topic: str, client_id: str) -> None:
        entries = self._topics.get(topic)
        if entries is not None:
            entries.pop(client_id, None)
            if not entries:
                del self._topics[topic]

    async def list(self, topic: str) -> dict[str, dict[str, Any]]:
        entries = self._topics.get(topic, {})
        now = time.monotonic()
        for client_id in [c for c, (expires, _) in entries.items() if expires < now]:
            del entries[client_id]
        return {client_id: info for client_id, (_, info) in entries.items()}

    async def close(self) -> None:
        self._topics.clear()


class MemoryControl(ControlChannel):
    """Control channels of one process: ``nodes`` (shared by the channels that should reach
    each other; by default each has its own) maps node ids to their channels."""

    def __init__(self, node_id: str, nodes: dict[str, MemoryControl] | None = None) -> None:
        super().__init__(node_id)
        self._nodes: dict[str, MemoryControl] = {} if nodes is None else nodes

    async def start(self) -> None:
        if self._nodes.setdefault(self.node_id, self) is not self:
            raise ValueError(f"node {self.node_id!r} has a control channel already")

    async def stop(self) -> None:
        if self._nodes.get(self.node_id) is self:
            del self._nodes[self.node_id]
        await super().stop()

    async def _send(self, node: str, message: str) -> bool:
        target = self._nodes.get(node)
        if target is None:
            return False
        # Delivered in a later turn of the loop, as from another node.
        asyncio.get_running_loop().call_soon(target._received, message)
        return True
