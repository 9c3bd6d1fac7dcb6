"""The realtime engine interface (after Centrifugo's broker / presence-manager split).

The gateway talks only to these two interfaces. The memory implementations serve one node;
the Redis ones let every node see every publication, with one sequence and history per topic.

A publication's wire frame (an ``event``, see :mod:`.wire`) is built once
(``Publication.frame``) and written unchanged to every subscribed socket on every node.

When a node loses its broker connection it cannot know what it missed. On reconnect it replays
what the topic's history still has; where the history does not cover the gap (the broker
restarted empty: a new epoch), every local subscriber gets a ``resync`` frame and must reload
the topic's state (from the store that owns it) before trusting the live feed again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Problem

RETRY_AFTER_SECONDS = 1  # what a 503 broker_unavailable tells the client to wait


@dataclass(frozen=True, slots=True)
class Publication:
    """One event on a topic as delivered to the gateway. ``seq`` is 0 for ephemeral events."""

    topic: str
    seq: int
    epoch: str
    frame: str


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """What a resuming client missed.

    ``recovered`` is False when the history no longer holds every publication after ``since``
    (or the epoch changed: the history was lost) — the client must then reload its state.
    ``top_seq`` is the topic's current seq, ``epoch`` its current epoch.
    """

    publications: list[Publication]
    top_seq: int
    epoch: str
    recovered: bool


class BrokerUnavailable(Problem):
    """The broker (Redis) does not answer: ``503 broker_unavailable`` with ``Retry-After``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(
            503,
            "broker_unavailable",
            f"the realtime broker does not answer ({type(error).__name__}); retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            retry_after=RETRY_AFTER_SECONDS,
        )


# Called on each node for every publication on a topic that node subscribed to.
PublicationHandler = Callable[[Publication], None]


class Broker(ABC):
    """Per-topic sequence numbers, bounded history, and delivery to every interested node."""

    @abstractmethod
    async def start(self, handler: PublicationHandler) -> None:
        """Begin delivering publications of subscribed topics to ``handler``."""

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def subscribe(self, topic: str) -> None:
        """This node wants ``topic``'s publications (the gateway reference-counts its sockets)."""

    @abstractmethod
    async def unsubscribe(self, topic: str) -> None: ...

    @abstractmethod
    async def publish(
        self, topic: str, data: Any, *, ephemeral: bool = False, history: int | None = None
    ) -> Publication:
        """Assign the next seq (unless ephemeral), keep it in history, deliver it everywhere.

        ``history``: keep at most this many of the topic's publications for resumes (never
        more than the engine's own size)."""

    @abstractmethod
    async def publish_ordered(
        self, topic: str, items: Sequence[tuple[int, Any]], *, history: int | None = None
    ) -> list[Publication]:
        """Publish ``(version, data)`` items, in one atomic step, skipping every item whose
        version is not above the highest version this topic published before.

        For changes a store numbers and hands over from an outbox: two nodes (or a retry)
        handing over the same change publish it once, and a stale hand-over never goes
        out after a newer one. Returns the publications made."""

    @abstractmethod
    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time this node's lost connection to the broker is back (its
        topics' missed publications replayed or marked for resync by then). Notices that
        keep no history (revocations) may have been missed meanwhile: the gateway rechecks."""

    @abstractmethod
    async def history(self, topic: str, since: int, epoch: str | None) -> HistoryResult:
        """Publications with seq > ``since`` if the history (of the same epoch) still has them."""

    @abstractmethod
    async def position(self, topic: str) -> tuple[int, str]:
        """The topic's current (top seq, epoch)."""


class PresenceManager(ABC):
    """Who is subscribed to a topic, across nodes. Entries expire unless refreshed."""

    @abstractmethod
    async def add(self, topic: str, client_id: str, info: dict[str, Any]) -> None:
        """Add or refresh a client's entry (``info`` holds user id, name, node...)."""

    @abstractmethod
    async def remove(self, topic: str, client_id: str) -> None: ...

    @abstractmethod
    async def list(self, topic: str) -> dict[str, dict[str, Any]]:
        """Live entries by client id."""

    @abstractmethod
    async def close(self) -> None: ...


def history_kept(engine_size: int, wanted: int | None) -> int:
    """How many publications a topic keeps: the engine's size, or less if its namespace asks."""
    return engine_size if wanted is None else min(engine_size, wanted)


def is_recovered(since: int, client_epoch: str | None, epoch: str, top: int, found: int) -> bool:
    """Whether ``found`` publications after ``since`` are everything the client missed."""
    if client_epoch is None:
        return since == 0 and found == top
    if client_epoch != epoch or since > top:
        return False
    return found == top - since
