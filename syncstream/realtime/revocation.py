"""Revoking live access to topics, on every node at once.

Permission to read a topic is checked when a socket subscribes; a revocation is how a later
change (a member kicked from a room, a participant out of a call, an admin demoted) reaches
the sockets already subscribed. It names a user (or every user), topic patterns (a topic, or
a prefix ending in ``*``) and a reason, and comes in two kinds:

- **drop**: every matching subscription of the user goes (a kick, a ban, a leave);
- **recheck**: every matching subscription is checked again with its namespace's
  ``can_subscribe`` and goes only if that now fails (a room made private: who may still read it
  is for the namespace to say, not for the caller to list). A changed role is a recheck of
  all the user's topics that carries the new role: the sockets take it first.

The node that revokes applies it at once, then sends it to the other nodes as an ephemeral
publication on :data:`NOTICE_TOPIC` through the realtime engine. In a cluster that notice
travels on the same Redis connection as every topic's publications, so each node drops the
subscriptions before it sees anything published after ``revoke`` returned. A subscription
under recheck holds its publications until the check has answered: they are then sent, or
dropped with it.

A dropped subscription gets a server frame
``{"op": "unsubscribe", "topic": T, "data": {"reason": R}}``.

:class:`Revocation` is what is revoked; :class:`Revoker` applies revocations to this node's
sockets and tells the other nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast, get_args

import structlog

from .. import jsoncodec
from ..auth.service import Role
from .engine import Broker, Publication
from .wire import CLOSE_UNAUTHORIZED

if TYPE_CHECKING:
    from .hub import Hub

log = structlog.get_logger(__name__)

# Not a client topic (client topics start with a letter): only nodes publish or hear it.
NOTICE_TOPIC = "_gateway:revoke"
MAX_PATTERNS = 32


@dataclass(frozen=True, slots=True)
class Revocation:
    """Whose subscriptions (``user_id``; None: everyone's) to which topics end, and why."""

    patterns: tuple[str, ...]
    reason: str
    user_id: str | None = None
    recheck: bool = False
    origin: str = ""  # the node that revoked (it applied the revocation already)
    role: str | None = None  # the user's new role, taken by their sockets before a recheck

    @classmethod
    def of(
        cls,
        patterns: str | Iterable[str],
        reason: str,
        user_id: str | None,
        recheck: bool,
        origin: str,
        role: str | None = None,
    ) -> Revocation:
        found = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        if not found or len(found) > MAX_PATTERNS or not all(found):
            raise ValueError(f"a revocation names 1-{MAX_PATTERNS} non-empty topic patterns")
        if role is not None and (user_id is None or not recheck):
            raise ValueError("a new role is for one user's recheck")
        return cls(found, reason, user_id, recheck, origin, role)

    def matches(self, topic: str) -> bool:
        return any(
            topic.startswith(p[:-1]) if p.endswith("*") else topic == p for p in self.patterns
        )

    def notice(self) -> dict[str, Any]:
        """What goes to the other nodes."""
        return {
            "patterns": list(self.patterns),
            "reason": self.reason,
            "user_id": self.user_id,
            "recheck": self.recheck,
            "origin": self.origin,
            "role": self.role,
        }

    @classmethod
    def from_notice(cls, data: Any) -> Revocation:
        """A revocation from another node's notice (ValueError if it is not one)."""
        if not isinstance(data, dict):
            raise ValueError("a revocation notice is an object")
        patterns, user_id, role = data.get("patterns"), data.get("user_id"), data.get("role")
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ValueError("patterns: a list of strings")
        if user_id is not None and not isinstance(user_id, str):
            raise ValueError("user_id: a string or null")
        if role is not None and not isinstance(role, str):
            raise ValueError("role: a string or null")
        return cls.of(
            patterns,
            str(data.get("reason", "revoked")),
            user_id,
            bool(data.get("recheck", False)),
            str(data.get("origin", "")),
            role,
        )


class Revoker:
    """Applies revocations to this node's sockets (see the module's description)."""

    def __init__(self, node_id: str, broker: Broker, hub: Hub) -> None:
        self.node_id = node_id
        self.broker = broker
        self.hub = hub
        self.applied = 0  # revocations applied here: a subscribe's check may be stale

    async def revoke(self, revocation: Revocation) -> None:
        """Apply ``revocation`` here, then on every other node."""
        self.apply(revocation)
        await self.broker.publish(NOTICE_TOPIC, revocation.notice(), ephemeral=True)

    async def role_changed(self, user_id: str, role: Role) -> None:
        """Auth's hook, awaited before a role change returns: the user's sockets on every
        node take the new role and keep only the subscriptions it still allows (an admin
        demoted loses ``bus:*``, ``admin:*``, others' ``user:*``)."""
        await self.revoke(Revocation.of("*", "role_changed", user_id, True, self.node_id, role))

    def on_notice(self, pub: Publication) -> None:
        """Another node's revocation (this node's own were applied when made)."""
        if pub.topic != NOTICE_TOPIC:  # (published to a topic unsubscribed meanwhile)
            return
        try:
            frame = jsoncodec.loads(pub.frame)
            if frame.get("op") == "resync":  # the engine's own after a Redis restart
                return  # (what revocations were missed, the recheck on reconnect covers)
            revocation = Revocation.from_notice(frame.get("data"))
        except (ValueError, AttributeError):
            log.warning("realtime.bad_revocation", frame=pub.frame[:200])
            return
        if revocation.origin != self.node_id:
            self.apply(revocation)

    def apply(self, revocation: Revocation) -> None:
        self.applied += 1
        for client in list(self.hub.clients):
            if client.closing or (
                revocation.user_id is not None and client.user.id != revocation.user_id
            ):
                continue
            if revocation.role is not None:
                if client.user.role == revocation.role:
                    continue  # applied already (the notice and the bus event both come)
                if revocation.role not in get_args(Role):
                    client.close(CLOSE_UNAUTHORIZED, "role changed: reconnect")
                    continue
                user = dataclasses.replace(client.user, role=cast(Role, revocation.role))
                client.session = dataclasses.replace(client.session, user=user)
            for topic in [t for t in client.topics if revocation.matches(t)]:
                if revocation.recheck:
                    client.recheck(topic, revocation.reason)
                else:
                    client.revoke(topic, revocation.reason)
