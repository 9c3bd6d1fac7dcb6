"""Dotted event-type patterns: ``*`` is exactly one segment, ``**`` any number (zero or more)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

Matcher = Callable[[str], bool]


def _match(pattern: Sequence[str], segments: Sequence[str]) -> bool:
    if not pattern:
        return not segments
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, segments[i:]) for i in range(len(segments) + 1))
    if not segments or (head != "*" and head != segments[0]):
        return False
    return _match(rest, segments[1:])


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Matcher:
    """A predicate telling whether an event type matches ``pattern``."""
    segments = tuple(pattern.split("."))
    for segment in segments:
        if not segment or ("*" in segment and segment not in ("*", "**")):
            raise ValueError(f"invalid event pattern {pattern!r}: '*' and '**' are whole segments")
    if segments == ("**",):
        return lambda event_type: True
    if "*" not in pattern:
        return pattern.__eq__
    return lambda event_type: _match(segments, event_type.split("."))
