"""What the rest of the code sees of an account and of a successful token check."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from ..times import iso

Role = Literal["user", "admin"]
# An account's creation time as JSON writes it, remembered for the accounts seen lately:
# ``GET /api/auth/me`` would otherwise format the same time (gmtime, strftime) on every call.
_created_iso = functools.lru_cache(maxsize=4096)(iso)


@dataclass(frozen=True, slots=True)
class User:
    """An account as the rest of the code sees it (never with its password hash)."""

    id: str
    username: str
    role: Role
    banned: bool
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "banned": self.banned,
            "created_at": _created_iso(self.created_at),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> User:
        return cls(row["id"], row["username"], row["role"], bool(row["banned"]), row["created_at"])


@dataclass(frozen=True, slots=True)
class Session:
    """The outcome of a successful bearer-token check."""

    user: User
    token_id: str
