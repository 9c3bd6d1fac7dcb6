"""Notifications for the operators: what happened (streams starting and ending, failed media
jobs) and what needs a look (disk almost full, an HTTP error spike, many failed logins).

Each is stored (``admin_notifications``), pushed to open dashboards on ``admin:notifications``
and sent to the configured webhooks. Bus events are acted on by the node that fired them
only, so a cluster raises each notification once; conditions a node measures itself (disk,
errors) are that node's. An alert of one kind waits ``cooldown_seconds`` before it repeats.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from syncstream.sdk import Event, EventBus, Gateway, Store, new_id

from .config import Alerts
from .webhooks import Webhooks

TOPIC = "admin:notifications"
TITLE_CHARS = 200


def duration(seconds: float) -> str:
    """A span as people say it: "42 s", "3.5 min", "2 h 5 min"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}".removesuffix(".0") + " min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _text(value: Any, default: str) -> str:
    """A value fit for a title: a non-empty string, else ``default`` (never a dict or None)."""
    return value.strip() if isinstance(value, str) and value.strip() else default


def _field(parent: Any, *path: str) -> Any:
    """``parent[path[0]][path[1]]…``, or None where an event lacks it."""
    for key in path:
        parent = parent.get(key) if isinstance(parent, dict) else None
    return parent


def job_failed_title(job: Any) -> str:
    """ "Media job convert of talk.mov failed: <the reason>" from a job as the API shows it."""
    op = _text(_field(job, "operation", "op"), "").replace("_", " ")
    name = _text(_field(job, "input", "name"), "")
    why = _text(_field(job, "error", "detail"), _text(_field(job, "error", "code"), "no reason"))
    what = " of ".join(part for part in (op, name) if part)
    return clip(f"Media job {what} failed: {why}" if what else f"A media job failed: {why}")


def clip(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


class Notifier:
    def __init__(
        self, store: Store, gateway: Gateway, bus: EventBus, alerts: Alerts, webhooks: Webhooks
    ) -> None:
        self.store, self.gateway, self.bus = store, gateway, bus
        self.alerts, self.webhooks = alerts, webhooks
        self._last: dict[str, float] = {}  # kind -> when it last alerted
        self._failed_logins: deque[float] = deque()
        self._disk_low = False
        self._unlisten = [
            bus.listen("stream.started", self._on_stream),
            bus.listen("stream.ended", self._on_stream),
            bus.listen("media.job.failed", self._on_job_failed),
            bus.listen("audit.auth.login_failed", self._on_login_failed),
        ]

    async def close(self) -> None:
        for unlisten in self._unlisten:
            unlisten()

    async def notify(
        self, kind: str, severity: str, title: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        notification = {"id": new_id(), "time": time.time(), "kind": kind,
                        "severity": severity, "title": title, "data": data,
                        "node": self.bus.node_id}  # fmt: skip
        await self.store.execute(
            "INSERT INTO admin_notifications (id, time, kind, severity, title, data, node)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            notification["id"], notification["time"], kind, severity, title, json.dumps(data),
            self.bus.node_id,
        )  # fmt: skip
        await self.gateway.publish(TOPIC, {"type": "notification", **notification})
        self.webhooks.deliver(notification)
        return notification

    def _mine(self, event: Event) -> bool:
        return event.origin == self.bus.node_id

    def _cooled(self, kind: str, now: float) -> bool:
        """Whether an alert of ``kind`` may go out now (and note that it does)."""
        if now - self._last.get(kind, float("-inf")) < self.alerts.cooldown_seconds:
            return False
        self._last[kind] = now
        return True

    async def _on_stream(self, event: Event) -> None:
        if not self._mine(event) or not self.alerts.streams:
            return
        data = dict(event.data)
        name = _text(data.get("stream"), "a stream")
        if event.type == "stream.started":
            title = f"{_text(data.get('owner'), 'Someone')} went live: {name}"
        else:
            seconds = data.get("duration_seconds")
            took = f" after {duration(seconds)}" if isinstance(seconds, int | float) else ""
            reason = _text(data.get("reason"), "")
            title = f"Stream {name} ended{took}" + (f" ({reason})" if reason else "")
        await self.notify(event.type, "info", clip(title), data)

    async def _on_job_failed(self, event: Event) -> None:
        if not self._mine(event):
            return
        job = event.data.get("job")
        data = {"job_id": _field(job, "id"), "user_id": event.data.get("user_id"),
                "operation": _field(job, "operation", "op"), "file": _field(job, "input", "name"),
                "error": _field(job, "error")}  # fmt: skip
        await self.notify("job.failed", "warning", job_failed_title(job), data)

    async def _on_login_failed(self, event: Event) -> None:
        if not self._mine(event):
            return
        now, window = event.time, self.alerts.failed_logins_window_seconds
        self._failed_logins.append(now)
        while self._failed_logins and self._failed_logins[0] < now - window:
            self._failed_logins.popleft()
        count = len(self._failed_logins)
        if count >= self.alerts.failed_logins and self._cooled("logins.failed", now):
            await self.notify(
                "logins.failed", "critical",
                f"{count} failed logins in {duration(window)} on {self.bus.node_id}",
                {"count": count, "window_seconds": window},
            )  # fmt: skip

    async def check(self, sample: dict[str, Any]) -> None:
        """Alerts from this node's latest figures."""
        now = sample["time"]
        free = sample["disk_free_percent"]
        if free < self.alerts.disk_free_percent and not self._disk_low:
            self._disk_low = True
            await self.notify("disk.low", "critical",
                              f"Disk almost full on {self.bus.node_id}: {free:.1f} % free",
                              {"free_percent": free})  # fmt: skip
        elif free > self.alerts.disk_free_percent + 2:
            self._disk_low = False  # re-armed once it has room again
        per_minute = sample.get("errors_per_s", 0) * 60
        if per_minute >= self.alerts.errors_per_minute and self._cooled("errors.spike", now):
            await self.notify("errors.spike", "critical",
                              f"{per_minute:.0f} server errors a minute on {self.bus.node_id}",
                              {"errors_per_minute": round(per_minute, 1)})  # fmt: skip

    async def page(self, admin_id: str, limit: int, before: float | None) -> dict[str, Any]:
        """Newest first, with what this admin has not read yet."""
        rows = await self.store.fetchall(
            "SELECT * FROM admin_notifications WHERE time < ? ORDER BY time DESC LIMIT ?",
            before if before is not None else float("inf"), limit,
        )  # fmt: skip
        read_until = await self.read_until(admin_id)
        unread = await self.store.fetchval(
            "SELECT COUNT(*) FROM admin_notifications WHERE time > ?", read_until
        )
        return {
            "notifications": [{**r, "data": json.loads(r["data"]), "unread": r["time"] > read_until}
                              for r in rows],
            "unread": int(unread),
        }  # fmt: skip

    async def read_until(self, admin_id: str) -> float:
        value = await self.store.fetchval(
            "SELECT read_until FROM admin_reads WHERE admin_id = ?", admin_id
        )
        return float(value) if value is not None else 0.0

    async def mark_read(self, admin_id: str, until: float) -> None:
        await self.store.execute(
            "INSERT INTO admin_reads (admin_id, read_until) VALUES (?, ?) ON CONFLICT (admin_id)"
            " DO UPDATE SET read_until = excluded.read_until",
            admin_id, until,
        )  # fmt: skip
