"""The bridge between the event bus and the sockets: ``bus:<pattern>`` topics (admins watch
bus events live: each event matching the pattern is an ``event`` frame, numbered per
socket, not kept for resume) and the bus events that end sockets or change what they may
read (a ban, revoked tokens, a changed role)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..bus import Event, EventBus
from .hub import Hub
from .revocation import Revocation, Revoker
from .wire import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, bus_event_frame

if TYPE_CHECKING:
    from .client import Client


class BusBridge:
    def __init__(self, bus: EventBus, hub: Hub, revoker: Revoker, node_id: str) -> None:
        self.bus = bus
        self.hub = hub
        self.revoker = revoker
        self.node_id = node_id
        self._watching: dict[tuple[Client, str], Callable[[], None]] = {}
        self._unlisten: list[Callable[[], None]] = []

    def start(self) -> None:
        self._unlisten = [
            self.bus.listen("user.banned", self._on_banned),
            self.bus.listen("auth.tokens_revoked", self._on_revoked),
            self.bus.listen("user.role_changed", self._on_role_changed),
        ]

    def stop(self) -> None:
        for unlisten in self._unlisten:
            unlisten()

    def subscribe(self, client: Client, topic: str) -> dict[str, Any]:
        """Forward the bus events ``topic`` (``bus:<pattern>``) names to ``client``."""
        pattern = topic.split(":", 1)[1]
        seq = 0

        def forward(event: Event) -> None:
            nonlocal seq
            seq += 1
            client.write(bus_event_frame(topic, seq, event))

        self._watching[(client, topic)] = self.bus.listen(pattern, forward)
        return {"seq": 0, "epoch": "", "recovered": False}

    def unsubscribe(self, client: Client, topic: str) -> bool:
        """Stop forwarding; False if ``topic`` is not one of the client's bus topics."""
        unlisten = self._watching.pop((client, topic), None)
        if unlisten is None:
            return False
        unlisten()
        return True

    def _on_banned(self, event: Event) -> None:
        for client in list(self.hub.clients):
            if client.user.id == event.data.get("user_id"):
                client.close(CLOSE_FORBIDDEN, "account banned")

    def _on_revoked(self, event: Event) -> None:
        revoked = set(event.data.get("token_ids") or ())
        for client in list(self.hub.clients):
            if client.session.token_id in revoked:
                client.close(CLOSE_UNAUTHORIZED, "token revoked")

    def _on_role_changed(self, event: Event) -> None:
        """A role change the auth hook did not see (made by another process); sockets
        that have the role already are left alone."""
        user_id, role = event.data.get("user_id"), event.data.get("role")
        if isinstance(user_id, str) and isinstance(role, str):
            self.revoker.apply(
                Revocation.of("*", "role_changed", user_id, True, self.node_id, role)
            )
