"""A short-lived cache of token checks, emptied at once by revocation and ban events.

Authenticated requests would otherwise cost a database round trip each. Entries live
``ttl`` seconds; ``auth.tokens_revoked``, ``user.banned`` and ``user.role_changed`` on the
bus (from any node) drop the affected entries immediately, so revocation still takes effect
at once. Only if the bus between nodes is down can another node serve a stale entry, for at
most ``ttl`` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from ..bus import Event, EventBus


class SessionCache:
    def __init__(self, bus: EventBus, ttl: float, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._rows: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        if ttl > 0:
            bus.listen("auth.tokens_revoked", self._on_revoked)
            for event_type in ("user.banned", "user.unbanned", "user.role_changed"):
                bus.listen(event_type, self._on_user_changed)

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._rows.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._rows[key]
            return None
        return entry[1]

    def put(self, key: str, row: dict[str, Any]) -> None:
        if self.ttl <= 0:
            return
        self._rows[key] = (time.monotonic() + self.ttl, row)
        self._rows.move_to_end(key)
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)

    def _drop(self, field: str, values: set[Any]) -> None:
        for key in [k for k, (_, row) in self._rows.items() if row[field] in values]:
            del self._rows[key]

    def _on_revoked(self, event: Event) -> None:
        self._drop("token_id", set(event.data.get("token_ids") or ()))

    def _on_user_changed(self, event: Event) -> None:
        self._drop("id", {event.data.get("user_id")})
