"""CORS: which origins may call the node from a browser, and which headers they may send and
read. The core's own headers are listed here; plugins add theirs in their setup
(:meth:`syncstream.plugins.PluginContext.allow_cors_headers`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

ALLOWED = ("Authorization", "Content-Type", "If-Range", "Range", "Idempotency-Key")
EXPOSED = ("Location", "ETag", "Content-Range", "Content-Disposition", "Retry-After")


class Cors:
    def __init__(self, origins: Sequence[str]) -> None:
        self.origins = origins
        self._allowed = list(ALLOWED)
        self._exposed = list(EXPOSED)
        self._joined = self._join()

    def add(self, allow: Iterable[str], expose: Iterable[str]) -> None:
        """More headers (a plugin's), each listed once."""
        self._allowed += [h for h in allow if h not in self._allowed]
        self._exposed += [h for h in expose if h not in self._exposed]
        self._joined = self._join()

    def _join(self) -> tuple[str, str]:
        return ", ".join(self._allowed), ", ".join(self._exposed)

    def headers(self, origin: str) -> dict[str, str] | None:
        """The CORS response headers for a request from ``origin``; None for a foreign one."""
        if not ("*" in self.origins or origin in self.origins):
            return None
        allowed, exposed = self._joined
        return {
            "Access-Control-Allow-Origin": "*" if "*" in self.origins else origin,
            "Access-Control-Allow-Headers": allowed,
            "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            "Access-Control-Expose-Headers": exposed,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }
