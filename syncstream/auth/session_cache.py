"""A short-lived cache of token checks, emptied at once by revocation and ban events.

Authenticated requests would otherwise cost a database round trip each. A check's
:class:`Session` is kept ``ttl`` seconds, or until its token expires if that comes first, and
handed out as it is (it is immutable): a request that hits the cache pays a dictionary lookup.
``auth.tokens_revoked``, ``user.banned`` and ``user.role_changed`` on the bus (from any node)
drop the affected entries immediately, so revocation still takes effect at once. Only if the
bus between nodes is down can another node serve a stale entry, for at most ``ttl`` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from ..bus import Event, EventBus
from .models import Session


class SessionCache:
    def __init__(self, bus: EventBus, ttl: float, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        # token digest -> (monotonic deadline, session)
        self._entries: OrderedDict[str, tuple[float, Session]] = OrderedDict()
        if ttl > 0:
            bus.listen("auth.tokens_revoked", self._on_revoked)
            for event_type in ("user.banned", "user.unbanned", "user.role_changed"):
                bus.listen(event_type, self._on_user_changed)

    def get(self, key: str) -> Session | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, session: Session, expires_at: float) -> None:
        """Keep ``session`` for ``ttl`` seconds, but not past ``expires_at`` (Unix seconds,
        the token's expiry): an expired token is then checked, and refused, by the store."""
        if self.ttl <= 0:
            return
        lifetime = min(self.ttl, expires_at - time.time())
        self._entries[key] = (time.monotonic() + lifetime, session)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _drop(self, dropped: Callable[[Session], bool]) -> None:
        """Forget every entry whose session ``dropped(session)`` is true."""
        for key in [k for k, (_, session) in self._entries.items() if dropped(session)]:
            del self._entries[key]

    def _on_revoked(self, event: Event) -> None:
        token_ids = set(event.data.get("token_ids") or ())
        self._drop(lambda session: session.token_id in token_ids)

    def _on_user_changed(self, event: Event) -> None:
        user_id = event.data.get("user_id")
        self._drop(lambda session: session.user.id == user_id)
