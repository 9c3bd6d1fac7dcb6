"""Topic namespaces: families of topics (``<namespace>:<name>``) and who may do what on them.

Plugins register their namespaces with their permission checks; the core's are ``user:<user
id>`` (that user's private feed), ``broadcast:<name>`` (any user reads, admins publish) and
``bus:<pattern>`` (admins watch bus events live, see :mod:`.bridge`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..auth import User
from ..errors import Problem
from .wire import TOPIC_RE

Check = Callable[[User, str], "bool | Awaitable[bool]"]
PublishHook = Callable[[User, str, Any], Awaitable[Any]]


def anyone(user: User, topic: str) -> bool:
    return True


def admins(user: User, topic: str) -> bool:
    return user.is_admin


async def allowed(check: Check, user: User, topic: str) -> bool:
    result = check(user, topic)
    if isinstance(result, bool):  # most checks are plain; isawaitable's ABC check is slow
        return result
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


@dataclass(frozen=True)
class Published:
    """What an ``on_publish`` hook may return instead of plain data: ``data`` for the
    subscribers (None: nothing is broadcast, e.g. a retried message) and ``reply`` fields
    for the publisher's reply."""

    data: Any
    reply: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Namespace:
    """A family of topics and who may do what on them.

    ``on_publish`` may validate or rewrite what a client publishes (raise :class:`Problem` to
    refuse); the returned value (or :class:`Published`) is what subscribers get. ``presence``
    tracks subscribers; with ``presence_events`` off, joins and leaves are not broadcast and
    the subscribe reply carries no member list (big rooms: every join would reach everyone,
    n^2 frames in a connection storm) — the ``presence`` op still answers. ``ephemeral``
    publications from clients are delivered but not kept for resume (typing indicators).
    ``history`` keeps fewer publications per topic for resumes than ``realtime.history_size``
    (topics whose every event is a full snapshot need only the last few).
    """

    name: str
    can_subscribe: Check = anyone
    can_publish: Check = admins
    on_publish: PublishHook | None = None
    presence: bool = False
    presence_events: bool = True
    ephemeral: bool = False
    history: int | None = None


class Namespaces(dict[str, Namespace]):
    """The registered namespaces by name."""

    def register(self, namespace: Namespace) -> None:
        if namespace.name in self:
            raise ValueError(f"realtime namespace {namespace.name!r} is already registered")
        self[namespace.name] = namespace

    def of(self, topic: Any) -> Namespace:
        """The namespace of a topic; 400/404 problems for malformed or unknown ones."""
        if not isinstance(topic, str) or not (match := TOPIC_RE.match(topic)):
            raise Problem(400, "invalid_topic", "topics look like 'namespace:name'")
        namespace = self.get(match.group(1))
        if namespace is None:
            raise Problem(404, "unknown_topic", f"no topic namespace {match.group(1)!r}")
        return namespace

    def holding(self, topic: str) -> Namespace | None:
        """The namespace of a topic already subscribed to (None if it is unknown)."""
        return self.get(topic.split(":", 1)[0])
