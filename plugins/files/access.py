"""Who may do what with a node: owner, or a share on the node or any folder above it.

Every check reads the store, so a revoked share or link stops working on the next request.
A node the caller may not read answers 404 (its existence is not revealed); one they may read
but not change answers 403. Trashed nodes are visible to their owner only.
"""

from __future__ import annotations

from typing import Literal

from syncstream.sdk import Problem, Row, Store, User

from .tree import CHAIN, Tree

Level = Literal["none", "read", "write", "owner"]
RANK: dict[str, int] = {"none": 0, "read": 1, "write": 2, "owner": 3}


class Access:
    def __init__(self, store: Store, tree: Tree) -> None:
        self.store = store
        self.tree = tree

    async def level(self, user_id: str, node: Row) -> Level:
        if node["owner_id"] == user_id:
            return "owner"
        if node["trashed_at"] is not None:
            return "none"
        # 'write' sorts after 'read', so MAX is the strongest share on the chain.
        best = await self.store.fetchval(
            f"{CHAIN} SELECT MAX(s.permission) FROM files_shares s JOIN chain c ON s.node_id = c.id"
            " WHERE s.user_id = ?",
            node["id"],
            user_id,
        )
        return "write" if best == "write" else "read" if best == "read" else "none"

    async def node(self, user: User, node_id: str, needed: Level) -> tuple[Row, Level]:
        """The node if ``user`` has at least ``needed`` on it; 404 or 403 otherwise."""
        row = await self.tree.get(node_id) if len(node_id) <= 64 else None
        level: Level = "none" if row is None else await self.level(user.id, row)
        if row is None or level == "none":
            raise Problem(404, "file_not_found", f"no file or folder {node_id[:64]}")
        if RANK[level] < RANK[needed]:
            raise Problem(403, "forbidden", f"this needs {needed} access; you have {level}")
        return row, level

    async def folder(self, user: User, folder_id: str, needed: Level) -> tuple[str, str]:
        """(owner id, folder id) of a folder ``user`` may use; '' is the user's own root."""
        if not folder_id:
            return user.id, ""
        row, _ = await self.node(user, folder_id, needed)
        if row["kind"] != "folder":
            raise Problem(422, "not_a_folder", f"{folder_id} is a file, not a folder")
        if row["trashed_at"] is not None:
            raise Problem(409, "folder_trashed", "this folder is in the trash")
        return row["owner_id"], row["id"]
