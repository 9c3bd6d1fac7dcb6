"""Listing and search: one query builder for folder listings, name search and filters.

Names are matched word by word with prefixes (``holi vid`` finds ``Holiday_video.mp4``) through
SQLite FTS5 or a PostgreSQL ``tsvector``; filters narrow by type, size, date, folder (with
everything below it) and scope (own files, shared with me, both). Pages are keyset-paginated
on the sort column and id, so page 500 costs what page 1 does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Dialect, Problem, Row, Store, User, unix

from .tree import COLUMNS

if TYPE_CHECKING:
    from .access import Access

TERM = re.compile(r"[^\W_]+")
MAX_TERMS = 8
ARCHIVES = (
    "application/zip",
    "application/gzip",
    "application/x-tar",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-bzip2",
    "application/x-xz",
)
DOCUMENTS = (
    "application/pdf",
    "application/json",
    "application/xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)
SORT_COLUMNS = {
    "name": "name_key",
    "created": "created_at",
    "modified": "modified_at",
    "size": "size",
}

FileType = Literal["any", "folder", "file", "image", "video", "audio", "document", "archive"]


class ListQuery(BaseModel):
    """Filters shared by folder listings and search."""

    model_config = ConfigDict(extra="forbid")

    type: FileType = "any"
    min_size: int | None = Field(None, ge=0)
    max_size: int | None = Field(None, ge=0)
    after: datetime | None = Field(None, description="Created at or after (ISO 8601)")
    before: datetime | None = Field(None, description="Created before (ISO 8601)")
    sort: Literal["name", "created", "modified", "size"] = "name"
    order: Literal["asc", "desc"] = "asc"
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=600)


class FolderQuery(ListQuery):
    parent: str = Field("", max_length=64, description="Folder id; empty for your root")


class SearchQuery(ListQuery):
    q: str = Field("", max_length=200, description="Words of the name (prefixes match)")
    folder: str = Field("", max_length=64, description="Only inside this folder (any depth)")
    scope: Literal["mine", "shared", "all"] = "mine"
    sort: Literal["name", "created", "modified", "size"] = "created"
    order: Literal["asc", "desc"] = "desc"


def terms(text: str) -> list[str]:
    return TERM.findall(text.lower())[:MAX_TERMS]


def encode_cursor(row: Row, sort: str) -> str:
    """Where the next page starts: (kind,) sort value, id of the last row."""
    key = [row[SORT_COLUMNS[sort]], row["id"]]
    if sort == "name":
        key.insert(0, row["kind"])
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> list[Any]:
    bad = Problem(422, "invalid_cursor", "the cursor is not one this server gave")
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise bad from None
    if not isinstance(key, list) or len(key) != (3 if sort == "name" else 2):
        raise bad
    if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in key):
        raise bad
    return key


class Finder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dialect: Dialect = store.dialect

    async def page(
        self,
        query: ListQuery,
        *,
        where: list[str],
        args: list[Any],
        prefix: str = "",
        prefix_args: tuple[Any, ...] = (),
    ) -> tuple[list[Row], str | None]:
        """One page of live nodes matching ``where`` plus the query's filters."""
        where = [*where, "n.trashed_at IS NULL"]
        args = list(args)
        self._filters(query, where, args)
        column = SORT_COLUMNS[query.sort]
        desc = query.order == "desc"
        direction, op = ("DESC", "<") if desc else ("ASC", ">")
        order = f"n.{column} {direction}, n.id {direction}"
        if query.sort == "name":
            order = f"n.kind DESC, {order}"  # folders first, as every file manager does
        if query.cursor:
            key = decode_cursor(query.cursor, query.sort)
            after = f"(n.{column}, n.id) {op} (?, ?)"
            if query.sort == "name":
                after = f"(n.kind < ? OR (n.kind = ? AND {after}))"
                key.insert(0, key[0])
            where.append(after)
            args += key
        cols = ", ".join(f"n.{c.strip()}" for c in COLUMNS.split(","))
        sql = (
            f"{prefix} SELECT {cols}, n.name_key FROM files_nodes n WHERE {' AND '.join(where)}"
            f" ORDER BY {order} LIMIT ?"
        )
        rows = await self.store.fetchall(sql, *prefix_args, *args, query.limit + 1)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return rows, encode_cursor(rows[-1], query.sort) if more else None

    def _filters(self, query: ListQuery, where: list[str], args: list[Any]) -> None:
        kind_filters = {
            "folder": "n.kind = 'folder'",
            "file": "n.kind = 'file'",
            "image": "n.mime LIKE 'image/%'",
            "video": "n.mime LIKE 'video/%'",
            "audio": "n.mime LIKE 'audio/%'",
            "document": (
                f"(n.mime LIKE 'text/%' OR n.mime IN ({', '.join('?' * len(DOCUMENTS))}))"
            ),
            "archive": f"n.mime IN ({', '.join('?' * len(ARCHIVES))})",
        }
        if query.type in kind_filters:
            where.append(kind_filters[query.type])
            args += {"document": DOCUMENTS, "archive": ARCHIVES}.get(query.type, ())
        if query.min_size is not None:
            where.append("n.kind = 'file' AND n.size >= ?")
            args.append(query.min_size)
        if query.max_size is not None:
            where.append("n.kind = 'file' AND n.size <= ?")
            args.append(query.max_size)
        if query.after is not None:
            where.append("n.created_at >= ?")
            args.append(unix(query.after))
        if query.before is not None:
            where.append("n.created_at < ?")
            args.append(unix(query.before))

    def name_match(self, text: str) -> tuple[str, str] | None:
        """(SQL condition, argument) matching names by word prefixes; None if no words."""
        words = terms(text)
        if not words:
            return None
        if self.dialect == "sqlite":
            expr = " ".join(f'"{w}"*' for w in words)
            return "n.rowid IN (SELECT rowid FROM files_fts WHERE files_fts MATCH ?)", expr
        return "n.name_tsv @@ to_tsquery('simple', ?)", " & ".join(f"{w}:*" for w in words)

    async def search(
        self, user: User, q: SearchQuery, access: Access
    ) -> tuple[list[Row], str | None]:
        """Search in the caller's scope (own files, shared with them, or both)."""
        where: list[str] = []
        args: list[Any] = []
        prefix = ""
        prefix_args: list[Any] = []
        shared = (
            "shared(id) AS (SELECT node_id FROM files_shares WHERE user_id = ?"
            " UNION SELECT c.id FROM files_nodes c JOIN shared s ON c.parent_id = s.id)"
        )
        ctes: list[str] = []
        if q.scope == "mine":
            where.append("n.owner_id = ?")
            args.append(user.id)
        else:
            ctes.append(shared)
            prefix_args.append(user.id)
            if q.scope == "shared":
                where.append("n.id IN (SELECT id FROM shared) AND n.owner_id <> ?")
                args.append(user.id)
            else:
                where.append("(n.owner_id = ? OR n.id IN (SELECT id FROM shared))")
                args.append(user.id)
        if q.folder:
            await access.node(user, q.folder, "read")
            ctes.append(
                "below(id) AS (SELECT id FROM files_nodes WHERE parent_id = ?"
                " UNION SELECT c.id FROM files_nodes c JOIN below b ON c.parent_id = b.id)"
            )
            prefix_args.append(q.folder)
            where.append("n.id IN (SELECT id FROM below)")
        match = self.name_match(q.q)
        if match is not None:
            where.append(match[0])
            args.append(match[1])
        if ctes:
            prefix = "WITH RECURSIVE " + ", ".join(ctes)
        return await self.page(
            q, where=where, args=args, prefix=prefix, prefix_args=tuple(prefix_args)
        )
