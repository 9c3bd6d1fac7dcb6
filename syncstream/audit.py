"""The append-only audit log: who did what to what, from where, and when.

Every record is stored (table ``audit_log``, owned by the core) and fired on the bus as
``audit.<action>`` so dashboards and alerting see it live on every node.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .bus import EventBus
from .ids import new_id
from .store import Store

MIGRATIONS = [
    """
    CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        action TEXT NOT NULL,
        actor_id TEXT,
        target TEXT,
        ip TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX audit_log_time ON audit_log (time);
    CREATE INDEX audit_log_action ON audit_log (action, time);
    CREATE INDEX audit_log_actor ON audit_log (actor_id, time)
    """,
    "CREATE INDEX audit_log_target ON audit_log (target, time)",  # a user's activity
]


class Audit:
    """Records audit events; plugins use it through their context."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    async def record(
        self,
        action: str,
        *,
        actor_id: str | None = None,
        target: str | None = None,
        ip: str | None = None,
        **data: Any,
    ) -> str:
        """Store one audit record and fire ``audit.<action>``; returns its id."""
        record_id, now = new_id(), time.time()
        await self.store.execute(
            "INSERT INTO audit_log (id, time, action, actor_id, target, ip, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            record_id,
            now,
            action,
            actor_id,
            target,
            ip,
            json.dumps(data, default=str),
        )
        await self.bus.fire(
            f"audit.{action}",
            {"id": record_id, "actor_id": actor_id, "target": target, "ip": ip, **data},
        )
        return record_id

    async def query(
        self,
        *,
        action: str | None = None,
        actor_id: str | None = None,
        user_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first, filtered: ``action`` exact or a prefix ending in ``.`` (``auth.``),
        ``user_id`` as actor or target; ``until`` is exclusive (the next page's cursor)."""
        where, args = [], []
        if action is not None and action.endswith("."):
            where.append("substr(action, 1, ?) = ?")
            args += [len(action), action]
        elif action is not None:
            where.append("action = ?")
            args.append(action)
        if user_id is not None:
            where.append("(actor_id = ? OR target = ?)")
            args += [user_id, user_id]
        for clause, value in (("actor_id = ?", actor_id), ("time >= ?", since),
                              ("time < ?", until)):  # fmt: skip
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = "SELECT * FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self.store.fetchall(sql + " ORDER BY time DESC LIMIT ?", *args, limit)
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows
