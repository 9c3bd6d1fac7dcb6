"""Store errors, one type per meaning whatever the backend raised."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class StoreError(Exception):
    """The database refused or failed a statement."""


class IntegrityError(StoreError):
    """A unique, foreign-key or check constraint was violated."""


@contextmanager
def translated(
    integrity: tuple[type[BaseException], ...], failures: tuple[type[BaseException], ...]
) -> Iterator[None]:
    """Re-raise a driver's exceptions as :class:`IntegrityError` / :class:`StoreError`."""
    try:
        yield
    except integrity as exc:
        raise IntegrityError(str(exc)) from exc
    except failures as exc:
        raise StoreError(str(exc)) from exc
