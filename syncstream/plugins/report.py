"""Every plugin's state, as ``/readyz``, ``syncstream plugins``, the banner and the dashboard
show it: ``disabled``, ``loaded`` (imported and configured; not set up yet), ``running`` or
``failed`` with the stage (manifest, dependencies, import, config, migrate, set up) and why."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

log = structlog.get_logger(__name__)
State = Literal["disabled", "loaded", "running", "failed"]


@dataclass
class PluginStatus:
    name: str
    source: str
    version: str = ""
    description: str = ""
    required: bool = False
    state: State = "loaded"
    stage: str = ""
    reason: str = ""
    dashboard: Path | None = None

    def public(self) -> dict[str, Any]:
        """What the operator sees (the dashboard, the CLI)."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "required": self.required,
            "state": self.state,
            "stage": self.stage or None,
            "reason": self.reason or None,
            "source": self.source,
        }


class PluginReport:
    """The node's plugins by name, in the order they were found."""

    def __init__(self, log_failures: bool = True) -> None:
        self._by_name: dict[str, PluginStatus] = {}
        self._log_failures = log_failures  # the CLI prints them instead

    def add(self, status: PluginStatus) -> PluginStatus:
        self._by_name[status.name] = status
        return status

    def get(self, name: str) -> PluginStatus | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[PluginStatus]:
        return iter(sorted(self._by_name.values(), key=lambda s: s.name))

    def fail(self, name: str, stage: str, reason: str) -> None:
        """Mark ``name`` failed and log it (the log line names the plugin)."""
        status = self._by_name[name]
        status.state, status.stage, status.reason = "failed", stage, reason
        if self._log_failures:
            log.error(
                "plugin.failed", plugin=name, stage=stage, reason=reason, required=status.required
            )

    def failed_among(self, names: Iterable[str]) -> str | None:
        """The first of ``names`` that failed."""
        return next((n for n in names if (s := self.get(n)) and s.state == "failed"), None)

    def named(self, state: State) -> list[str]:
        return [s.name for s in self if s.state == state]

    def public(self) -> list[dict[str, Any]]:
        return [s.public() for s in self]

    def dashboards(self) -> dict[str, Path]:
        """Dashboard scripts of the running plugins, by plugin name."""
        return {s.name: s.dashboard for s in self if s.state == "running" and s.dashboard}
