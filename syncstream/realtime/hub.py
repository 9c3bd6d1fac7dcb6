"""The hub: which local sockets subscribe to which topic, and the fan-out of publications.

A publication arrives from the engine with its frame encoded once; the hub queues the same
bytes for every subscribed socket. What is queued for a socket in one turn of the event loop
goes out in one write at the end of it (a move's broadcast and the mover's reply cost one
system call, not two); a socket whose send buffer outgrows ``send_buffer_bytes`` is closed
as a slow consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..metrics import Metrics
from .engine import Publication
from .wire import CLOSE_SLOW_CONSUMER, text_frame

if TYPE_CHECKING:
    from .client import Client


class Hub:
    def __init__(
        self,
        metrics: Metrics,
        send_buffer_bytes: int,
        unheard: Callable[[Publication], None],
    ) -> None:
        self.metrics = metrics
        self.send_buffer_bytes = send_buffer_bytes
        self.unheard = unheard  # publications no local socket subscribes to (node notices)
        self.clients: set[Client] = set()
        self.topics: dict[str, set[Client]] = {}
        self._unflushed: list[Client] = []
        self._loop: asyncio.AbstractEventLoop  # set by start()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, client: Client, topic: str) -> bool:
        """``client`` gets ``topic``'s publications; True if it is the node's first."""
        subscribers = self.topics.setdefault(topic, set())
        subscribers.add(client)
        return len(subscribers) == 1

    def remove(self, client: Client, topic: str) -> bool:
        """``client`` gets no more of ``topic``; True if it was subscribed."""
        subscribers = self.topics.get(topic)
        if subscribers is None or client not in subscribers:
            return False
        subscribers.discard(client)
        if not subscribers:
            del self.topics[topic]
        return True

    def deliver(self, pub: Publication) -> None:
        """Engine callback: queue one publication for every local subscriber (the body of
        :meth:`Client.write`, inlined: this loop runs once per subscriber per publication)."""
        subscribers = self.topics.get(pub.topic)
        if not subscribers:
            self.unheard(pub)
            return
        wire = text_frame(pub.frame)
        unflushed = self._unflushed
        if not unflushed:
            self._loop.call_soon(self.flush)
        sent = 0
        for client in subscribers:
            pending = client.recovering.get(pub.topic)
            if pending is not None:
                pending.append(pub)
                continue
            if client.closing or client.transport.is_closing():
                continue  # a socket that went away is dropped by its own handler
            if not client.out:
                unflushed.append(client)
            client.out.append(wire)
            sent += 1
        self.metrics.ws_messages_out.inc(sent)

    def queued(self, client: Client) -> None:
        """``client`` has its first frame of this turn queued: it is flushed at the end."""
        if not self._unflushed:
            self._loop.call_soon(self.flush)
        self._unflushed.append(client)

    def flush(self) -> None:
        clients, self._unflushed = self._unflushed, []
        limit = self.send_buffer_bytes
        for client in clients:
            out, transport = client.out, client.transport
            if not out or client.closing or transport.is_closing():
                out.clear()
                continue
            # The list is kept and emptied: a new one per socket per turn would outlive
            # the young generation (it waits for the socket's next frame).
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
            if transport.get_write_buffer_size() > limit:
                client.close(CLOSE_SLOW_CONSUMER, "slow consumer: send buffer full")
                self.metrics.ws_slow_consumers.inc()
