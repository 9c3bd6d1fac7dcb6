"""Guestbook: the example plugin. Small on purpose; it shows every part of the contract.

- a manifest (``manifest.json``: name, version, off unless enabled), read before this import,
- imports from ``syncstream.sdk`` only,
- a config model (``plugins.guestbook.max_length``),
- a migration it owns (table ``guestbook_entries``),
- routes under ``/api/guestbook``,
- a bus event (``guestbook.signed``) that other plugins or nodes can listen to,
- a realtime namespace (``guestbook:<book>``) with presence, where entries appear live,
- a line in the startup banner and on the landing page.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Call, ErrorCode, Namespace, Plugin, PluginContext, Problem, new_id


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_length: int = Field(500, ge=1, le=10_000, description="Longest entry in characters")


class EntryIn(BaseModel):
    book: str = Field("main", pattern=r"^[a-z0-9-]{1,32}$")
    text: str = Field(min_length=1)


class PageQuery(BaseModel):
    book: str = Field("main", pattern=r"^[a-z0-9-]{1,32}$")
    limit: int = Field(20, ge=1, le=100)
    before: str | None = Field(None, max_length=64, description="Entry id to page back from")


# The codes this plugin answers with beyond the core's (docs/api/errors.md lists them).
CODES = (ErrorCode("invalid_entry", (422,), "an entry's text is empty or over max_length"),)

MIGRATIONS = [
    """
    CREATE TABLE guestbook_entries (
        id TEXT PRIMARY KEY,
        book TEXT NOT NULL,
        user_id TEXT NOT NULL,
        username TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX guestbook_entries_book ON guestbook_entries (book, id)
    """
]


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    ctx.gateway.register(Namespace("guestbook", presence=True))
    ctx.announce("Guestbook", "{url}/api/guestbook/entries")

    @ctx.api.route("POST", "/entries", body=EntryIn, status=201)
    async def sign(call: Call[EntryIn]) -> dict[str, Any]:
        """Sign a guestbook: stored, fired on the bus, and pushed to its live topic."""
        text = call.body.text.strip()
        if not text or len(text) > config.max_length:
            raise Problem(422, "invalid_entry", f"entries are 1-{config.max_length} characters")
        entry = {
            "id": new_id(),
            "book": call.body.book,
            "user_id": call.user.id,
            "username": call.user.username,
            "text": text,
            "created_at": time.time(),
        }
        await ctx.store.execute(
            "INSERT INTO guestbook_entries (id, book, user_id, username, text, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            *entry.values(),
        )
        await ctx.bus.fire("guestbook.signed", entry)
        await ctx.gateway.publish(f"guestbook:{call.body.book}", {"entry": entry})
        return entry

    @ctx.api.route("GET", "/entries", query=PageQuery)
    async def entries(call: Call[None]) -> dict[str, Any]:
        """Entries of a book, newest first; page with ``before``."""
        q: PageQuery = call.query
        rows = await ctx.store.fetchall(
            "SELECT id, book, user_id, username, text, created_at FROM guestbook_entries"
            " WHERE book = ? AND id < ? ORDER BY id DESC LIMIT ?",
            q.book,
            q.before or "~",
            q.limit,
        )
        return {"entries": rows, "next": rows[-1]["id"] if len(rows) == q.limit else None}


plugin = Plugin(setup=setup, config=Config, migrations=MIGRATIONS, error_codes=CODES)
