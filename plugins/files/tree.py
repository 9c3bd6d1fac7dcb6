"""The folder tree: nodes (files and folders), unique names per folder, trash and purge.

Every node sits in its owner's tree; ``parent_id`` '' is the root. Nodes inside a folder belong
to the folder's owner (a collaborator's upload into a shared folder counts against the owner's
quota; ``created_by`` says who made it). Trashing marks a whole subtree with one ``trash_id``
so restore brings back exactly what was trashed together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from syncstream.sdk import IntegrityError, Problem, Row, Store, iso, iso_or_none, new_id

from .names import clean_name, name_key, numbered

Kind = Literal["file", "folder"]
Conflict = Literal["rename", "fail"]
ROOT = ""
COLUMNS = (
    "id, owner_id, parent_id, kind, name, size, mime, sha256, meta, thumbs, created_by,"
    " created_at, modified_at, trashed_at, trash_id"
)
MAX_RENAME_TRIES = 20

SUBTREE = (
    "WITH RECURSIVE sub(id) AS (SELECT id FROM files_nodes WHERE id = ?"
    " UNION ALL SELECT n.id FROM files_nodes n JOIN sub ON n.parent_id = sub.id)"
)
CHAIN = (
    "WITH RECURSIVE chain(id, parent_id, depth) AS ("
    " SELECT id, parent_id, 0 FROM files_nodes WHERE id = ?"
    " UNION ALL SELECT n.id, n.parent_id, c.depth + 1 FROM files_nodes n"
    " JOIN chain c ON n.id = c.parent_id WHERE c.parent_id <> '')"
)


def public(row: Row, access: str | None = None) -> dict[str, Any]:
    """A node as the API shows it."""
    out: dict[str, Any] = {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "parent_id": row["parent_id"] or None,
        "owner_id": row["owner_id"],
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
        "modified_at": iso(row["modified_at"]),
    }
    if row["kind"] == "file":
        out |= {
            "size": row["size"],
            "mime": row["mime"],
            "sha256": row["sha256"],
            "meta": json.loads(row["meta"]),
            "thumbnails": row["thumbs"],
        }
    if row["trashed_at"] is not None:
        out["trashed_at"] = iso_or_none(row["trashed_at"])
    if access is not None:
        out["access"] = access
    return out


class Tree:
    """Queries and changes on ``files_nodes``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, node_id: str) -> Row | None:
        return await self.store.fetchone(f"SELECT {COLUMNS} FROM files_nodes WHERE id = ?", node_id)

    async def chain(self, node_id: str) -> list[Row]:
        """The node and its ancestors, nearest first."""
        return await self.store.fetchall(
            f"{CHAIN} SELECT n.id, n.name, n.parent_id, n.kind FROM chain c"
            " JOIN files_nodes n ON n.id = c.id ORDER BY c.depth",
            node_id,
        )

    async def folder(self, owner_id: str, folder_id: str) -> Row | None:
        """A live folder of ``owner_id`` (None for the root)."""
        if folder_id == ROOT:
            return None
        row = await self.get(folder_id)
        if row is None or row["kind"] != "folder" or row["trashed_at"] is not None:
            raise Problem(404, "folder_not_found", f"no folder {folder_id}")
        if row["owner_id"] != owner_id:
            raise Problem(404, "folder_not_found", f"no folder {folder_id}")
        return row

    async def insert(
        self,
        *,
        owner_id: str,
        parent_id: str,
        kind: Kind,
        name: str,
        created_by: str,
        conflict: Conflict,
        node_id: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Row:
        """Insert a node; a taken name is numbered (``rename``) or a 409 (``fail``)."""
        name = clean_name(name)
        now = time.time()
        values: dict[str, Any] = {
            "id": node_id or new_id(),
            "owner_id": owner_id,
            "parent_id": parent_id,
            "kind": kind,
            "name": name,
            "name_key": name_key(name),
            "size": 0,
            "mime": "",
            "sha256": "",
            "meta": "{}",
            "thumbs": "none",
            "created_by": created_by,
            "created_at": now,
            "modified_at": now,
        } | (fields or {})

        async def attempt(candidate: str) -> None:
            values["name"], values["name_key"] = candidate, name_key(candidate)
            cols = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            await self.store.execute(
                f"INSERT INTO files_nodes ({cols}) VALUES ({marks})", *values.values()
            )

        await self._with_free_name(owner_id, parent_id, name, conflict, attempt)
        values.update(trashed_at=None, trash_id=None)
        return values

    async def _with_free_name(
        self,
        owner_id: str,
        parent_id: str,
        name: str,
        conflict: Conflict,
        attempt: Callable[[str], Awaitable[None]],
    ) -> str:
        """Run ``attempt(name)``; while it collides, number the name (``rename``) or 409."""
        candidate = name
        for _ in range(MAX_RENAME_TRIES):
            try:
                await attempt(candidate)
                return candidate
            except IntegrityError:
                if conflict == "fail":
                    raise Problem(
                        409, "name_taken", f"{name!r} already exists in this folder"
                    ) from None
            candidate = await self._free_name(owner_id, parent_id, name)
        raise Problem(409, "name_taken", f"no free name like {name!r} in this folder")

    async def _free_name(self, owner_id: str, parent_id: str, name: str) -> str:
        """The first ``name (n).ext`` not taken in the folder."""
        stem = numbered(name, 1).rpartition(" (1)")[0]
        pattern = name_key(stem).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self.store.fetchall(
            "SELECT name_key FROM files_nodes WHERE owner_id = ? AND parent_id = ?"
            " AND trashed_at IS NULL AND name_key LIKE ? ESCAPE '\\'",
            owner_id,
            parent_id,
            pattern + " (%",
        )
        taken = {row["name_key"] for row in rows}
        n = 1
        while name_key(numbered(name, n)) in taken:
            n += 1
        return numbered(name, n)

    async def rename(self, node: Row, new_name: str) -> Row:
        name = clean_name(new_name)

        async def attempt(candidate: str) -> None:
            await self.store.execute(
                "UPDATE files_nodes SET name = ?, name_key = ?, modified_at = ? WHERE id = ?",
                candidate,
                name_key(candidate),
                time.time(),
                node["id"],
            )

        await self._with_free_name(node["owner_id"], node["parent_id"], name, "fail", attempt)
        return await self._reloaded(node["id"])

    async def move(self, node: Row, parent_id: str) -> Row:
        """Move into another folder of the same owner; never into itself or a descendant."""
        await self.folder(node["owner_id"], parent_id)
        if parent_id != ROOT:
            ancestors = {row["id"] for row in await self.chain(parent_id)}
            if node["id"] in ancestors:
                raise Problem(409, "move_into_itself", "a folder cannot move into itself")

        async def attempt(candidate: str) -> None:
            await self.store.execute(
                "UPDATE files_nodes SET parent_id = ?, name = ?, name_key = ?, modified_at = ?"
                " WHERE id = ?",
                parent_id,
                candidate,
                name_key(candidate),
                time.time(),
                node["id"],
            )

        await self._with_free_name(node["owner_id"], parent_id, node["name"], "fail", attempt)
        return await self._reloaded(node["id"])

    async def trash(self, node: Row) -> str:
        """Move a node and everything under it to the trash; returns the trash id."""
        trash_id = new_id()
        await self.store.execute(
            f"{SUBTREE} UPDATE files_nodes SET trashed_at = ?, trash_id = ?"
            " WHERE id IN (SELECT id FROM sub) AND trashed_at IS NULL",
            node["id"],
            time.time(),
            trash_id,
        )
        return trash_id

    async def restore(self, node: Row) -> Row:
        """Bring back what was trashed with ``node``; to the root if its folder is gone."""
        if node["trashed_at"] is None or node["trash_id"] is None:
            raise Problem(409, "not_in_trash", "this item is not in the trash")
        parent_id = node["parent_id"]
        if parent_id != ROOT:
            parent = await self.get(parent_id)
            if parent is None or parent["trash_id"] == node["trash_id"]:
                raise Problem(409, "not_trash_root", "restore the folder this item was trashed in")
            if parent["trashed_at"] is not None:
                parent_id = ROOT

        async def attempt(candidate: str) -> None:
            await self.store.execute(
                "UPDATE files_nodes SET parent_id = ?, name = ?, name_key = ?, trashed_at = NULL,"
                " trash_id = NULL WHERE id = ?",
                parent_id,
                candidate,
                name_key(candidate),
                node["id"],
            )

        await self._with_free_name(node["owner_id"], parent_id, node["name"], "rename", attempt)
        await self.store.execute(
            "UPDATE files_nodes SET trashed_at = NULL, trash_id = NULL WHERE trash_id = ?",
            node["trash_id"],
        )
        return await self._reloaded(node["id"])

    async def purge(self, node: Row) -> list[str]:
        """Delete a node and its subtree for good; returns the ids of the files removed."""
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                f"{SUBTREE} SELECT id, kind FROM files_nodes WHERE id IN (SELECT id FROM sub)",
                node["id"],
            )
            ids = [row["id"] for row in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                await tx.execute(f"DELETE FROM files_nodes WHERE id IN ({marks})", *chunk)
        return [row["id"] for row in rows if row["kind"] == "file"]

    async def trash_roots(self, owner_id: str) -> list[Row]:
        """Items the owner trashed (not the contents of trashed folders), newest first."""
        return await self.store.fetchall(
            f"SELECT {COLUMNS} FROM files_nodes n WHERE owner_id = ? AND trashed_at IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM files_nodes p WHERE p.id = n.parent_id"
            " AND p.trash_id = n.trash_id) ORDER BY trashed_at DESC",
            owner_id,
        )

    async def expired_trash(self, before: float, limit: int = 200) -> list[Row]:
        return await self.store.fetchall(
            f"SELECT {COLUMNS} FROM files_nodes n WHERE trashed_at IS NOT NULL AND trashed_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM files_nodes p WHERE p.id = n.parent_id"
            " AND p.trash_id = n.trash_id) LIMIT ?",
            before,
            limit,
        )

    async def used_bytes(self, owner_id: str) -> int:
        """Bytes of the owner's files, trash included (trash counts until purged)."""
        used = await self.store.fetchval(
            "SELECT COALESCE(SUM(size), 0) FROM files_nodes WHERE owner_id = ?", owner_id
        )
        return int(used)

    async def _reloaded(self, node_id: str) -> Row:
        row = await self.get(node_id)
        if row is None:
            raise Problem(404, "file_not_found", f"no file or folder {node_id}")
        return row
