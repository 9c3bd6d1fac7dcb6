"""What plugins show the operator, without the admin plugin importing any of them.

Each plugin adds, in its setup, *user facts* (what it knows of one account: files and bytes
stored, games played, chip balance…) and *figures* (what its node is doing now: active
games, calls in progress, queued jobs…). The admin plugin reads them for its user view and
its analytics; a plugin that fails to answer costs its own entry, not the page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)
UserFacts = Callable[[str], Awaitable[dict[str, Any]]]
Figures = Callable[[], Awaitable[dict[str, float]]]


class Oversight:
    def __init__(self) -> None:
        self._facts: dict[str, UserFacts] = {}
        self._figures: dict[str, Figures] = {}

    def add_user_facts(self, name: str, facts: UserFacts) -> None:
        """``facts(user_id)``: a small JSON object about that user, under ``name``."""
        self._facts[name] = facts

    def add_figures(self, name: str, figures: Figures) -> None:
        """``figures()``: this node's numbers, shown as ``<name>.<key>``."""
        self._figures[name] = figures

    def sources(self) -> set[str]:
        return set(self._facts) | set(self._figures)

    def withdraw(self, names: set[str]) -> None:
        """Forget these sources (what a plugin whose setup failed had added)."""
        for name in names:
            self._facts.pop(name, None)
            self._figures.pop(name, None)

    async def user_facts(self, user_id: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, facts in self._facts.items():
            try:
                out[name] = await facts(user_id)
            except Exception as exc:
                log.exception("oversight.facts_failed", source=name)
                out[name] = {"error": type(exc).__name__}
        return out

    async def figures(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, figures in self._figures.items():
            try:
                for key, value in (await figures()).items():
                    out[f"{name}.{key}"] = float(value)
            except Exception:
                log.exception("oversight.figures_failed", source=name)
        return out
