"""Small helpers for writing Markdown tables."""

from __future__ import annotations


def cell(text: str) -> str:
    """``text`` fit for one table cell: on one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")
