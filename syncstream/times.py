"""Time in JSON: UTC ISO 8601 with milliseconds, as every API response writes it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso(ts: float) -> str:
    """Unix seconds -> ``2026-11-24T22:10:59.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def unix(value: datetime) -> float:
    """A datetime from a request (naive means UTC) -> Unix seconds."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC).timestamp()
    return value.timestamp()
