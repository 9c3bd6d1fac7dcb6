"""Figures and notifications for the dashboard, under ``/api/admin``."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Call, ScopedApi, Store

from .alerts import Notifier
from .analytics import MINUTE, QUARTER, Sample, history

RANGES = {"1h": (MINUTE, 3600), "24h": (MINUTE, 86_400), "7d": (QUARTER, 7 * 86_400)}


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    range: Literal["1h", "24h", "7d"] = "24h"
    node: str | None = Field(None, max_length=64)


class NotificationsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(30, ge=1, le=200)
    before: float | None = None


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    until: float | None = Field(None, description="Read up to this time (default: now)")


def register_dashboard(
    api: ScopedApi, store: Store, notifier: Notifier, latest: dict[str, Sample]
) -> None:
    @api.route("GET", "/stats", auth="admin")
    async def stats(call: Call[None]) -> dict[str, Any]:
        """The latest figures of every node (live updates: subscribe to admin:stats)."""
        return {"nodes": sorted(latest.values(), key=lambda s: s["node"])}

    @api.route("GET", "/stats/history", auth="admin", query=HistoryQuery)
    async def stats_history(call: Call[None]) -> dict[str, Any]:
        """Figures over the last hour or day (a row a minute) or week (a row a quarter)."""
        q: HistoryQuery = call.query
        span, seconds = RANGES[q.range]
        rows = await history(store, span, time.time() - seconds, q.node)
        return {"range": q.range, "resolution_seconds": span, "rows": rows}

    @api.route("GET", "/notifications", auth="admin", query=NotificationsQuery)
    async def notifications(call: Call[None]) -> dict[str, Any]:
        """Newest first, each marked unread or not for you, and your unread count."""
        q: NotificationsQuery = call.query
        return await notifier.page(call.user.id, q.limit, q.before)

    @api.route("POST", "/notifications/read", auth="admin", body=ReadIn)
    async def read(call: Call[ReadIn]) -> dict[str, Any]:
        """Mark notifications read up to a time (default: all of them)."""
        until = call.body.until if call.body.until is not None else time.time()
        until = max(until, await notifier.read_until(call.user.id))
        await notifier.mark_read(call.user.id, until)
        return {"read_until": until}
