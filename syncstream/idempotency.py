"""The ``Idempotency-Key`` request header: a client's name for one operation, so a retry
after a lost answer returns the first result instead of doing the work twice.

A key belongs to the user who sent it and to the kind of resource it created: every store of
keys is unique on (user, key) per resource, never on the key alone, so two users choosing the
same key each get their own result and nobody can reach another's by guessing it. A key used
again for a different request is refused (``idempotency_key_reused``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import Problem

HEADER = "Idempotency-Key"
KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """The request's key, if it sent one; 422 ``invalid_idempotency_key`` if it is malformed."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not KEY.match(key):
        raise Problem(422, "invalid_idempotency_key", f"{HEADER} is 1-64 of A-Z a-z 0-9 _ . : -")
    return key


def reused() -> Problem:
    """The answer when a key comes back with a different request."""
    return Problem(422, "idempotency_key_reused", f"this {HEADER} was used for a different request")


def in_use() -> Problem:
    """The answer while the first request with this key is still running."""
    return Problem(
        409, "idempotency_key_in_use", f"a request with this {HEADER} is still in progress"
    )
