"""The activity log (the core's append-only audit log), for the operator: filtered pages and
exports (CSV or NDJSON, streamed a page at a time)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from syncstream.sdk import Audit, Auth, Call, Problem, ScopedApi, iso, unix

EXPORT_MAX = 100_000
EXPORT_PAGE = 1000
COLUMNS = ("id", "time", "action", "actor_id", "actor", "target", "target_user", "ip", "data")


class ActivityQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(None, max_length=64, description="A username: as actor or target")
    action: str | None = Field(
        None, pattern=r"^[a-z_]+(\.[a-z_]+)*\.?$", max_length=64,
        description="An action (auth.login_failed) or a prefix ending in a dot (auth.)",
    )  # fmt: skip
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(50, ge=1, le=500)
    before: float | None = Field(None, description="Next page: the time of the last row seen")

    @model_validator(mode="after")
    def _ordered(self) -> ActivityQuery:
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class ExportQuery(ActivityQuery):
    format: Literal["csv", "ndjson"] = "csv"
    limit: int = Field(EXPORT_MAX, ge=1, le=EXPORT_MAX)


def register_activity(api: ScopedApi, auth: Auth, audit: Audit) -> None:
    async def user_id(q: ActivityQuery) -> str | None:
        if not q.user:
            return None
        user = await auth.find_user(q.user)
        if user is None:
            raise Problem(404, "user_not_found", f"no user {q.user!r}")
        return user.id

    async def rows(
        q: ActivityQuery, user_id: str | None, limit: int, until: float | None
    ) -> list[dict[str, Any]]:
        bounds = [x for x in (unix(q.until) if q.until else None, until) if x is not None]
        found = await audit.query(
            action=q.action, user_id=user_id, since=unix(q.since) if q.since else None,
            until=min(bounds) if bounds else None, limit=limit,
        )  # fmt: skip
        return await named(auth, found)

    @api.route("GET", "/activity", auth="admin", query=ActivityQuery)
    async def activity(call: Call[None]) -> dict[str, Any]:
        """Audit records newest first: filter by user, action (or prefix) and time."""
        q: ActivityQuery = call.query
        found = await rows(q, await user_id(q), q.limit, q.before)
        return {
            "activity": [{**r, "time_iso": iso(r["time"])} for r in found],
            "next": found[-1]["time"] if len(found) == q.limit else None,
        }

    @api.route("GET", "/activity/export", auth="admin", query=ExportQuery)
    async def export(call: Call[None]) -> web.StreamResponse:
        """The filtered log as a CSV or NDJSON download (up to 100,000 records)."""
        q: ExportQuery = call.query
        who = await user_id(q)  # before the response starts: an unknown user is a 404
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8" if q.format == "csv"
            else "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="activity.{q.format}"',
        })  # fmt: skip
        await response.prepare(call.request)
        if q.format == "csv":
            await response.write(_csv_line(COLUMNS))
        sent, cursor = 0, q.before
        while sent < q.limit:
            page = await rows(q, who, min(EXPORT_PAGE, q.limit - sent), cursor)
            for r in page:
                record = {**r, "time": iso(r["time"])}
                if q.format == "csv":
                    await response.write(_csv_line(
                        [record[c] if c != "data" else json.dumps(record[c]) for c in COLUMNS]
                    ))  # fmt: skip
                else:
                    await response.write(json.dumps(record).encode() + b"\n")
            sent += len(page)
            if len(page) < EXPORT_PAGE:
                break
            cursor = page[-1]["time"]
        await response.write_eof()
        return response


def _csv_line(values: Any) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else v for v in values])
    return out.getvalue().encode()


async def named(auth: Auth, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit records with ``actor`` and (when the target is an account) ``target_user``."""
    ids = {r[k] for r in records for k in ("actor_id", "target") if r[k]}
    names: dict[str, str] = {}
    if ids:
        marks = ", ".join("?" * len(ids))
        rows = await auth.store.fetchall(
            f"SELECT id, username FROM users WHERE id IN ({marks})", *ids
        )
        names = {r["id"]: r["username"] for r in rows}
    return [{**r, "actor": names.get(r["actor_id"] or ""),
             "target_user": names.get(r["target"] or "")} for r in records]  # fmt: skip
