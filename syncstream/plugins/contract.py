"""What a plugin's code exposes (:class:`Plugin`) and what it receives (:class:`PluginContext`).

A plugin package holds a ``manifest.json`` (see :mod:`.manifest`) and, in its ``__init__``,
``plugin = Plugin(setup=..., config=..., migrations=...)``. Its ``setup(ctx)`` registers
routes, listeners and namespaces through the context, and declares what the core and the
dashboard show of it: banner lines (:meth:`PluginContext.announce`), CORS headers
(:meth:`PluginContext.allow_cors_headers`) and a dashboard script
(:meth:`PluginContext.add_dashboard`). The core shows what a plugin contributed only once
its setup succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from ..errors import ErrorCode

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..api import ScopedApi
    from ..audit import Audit
    from ..auth import Auth
    from ..bus import EventBus, Listener
    from ..config import Settings
    from ..oversight import Oversight
    from ..realtime import Gateway
    from ..services import ServiceRegistry
    from ..store import Migration, Store
    from .report import PluginReport


class NoConfig(BaseModel):
    """Config model of a plugin that takes no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Plugin:
    """A plugin's code: its setup, its config model (the schema of ``plugins.<name>``), the
    migrations it owns and the error codes it answers with beyond the core's (listed in
    docs/api/errors.md). Name, version and dependencies are in its ``manifest.json``."""

    setup: Callable[[PluginContext], Awaitable[None]]
    config: type[BaseModel] = NoConfig
    migrations: Sequence[Migration] = ()
    error_codes: Sequence[ErrorCode] = ()


class PluginError(Exception):
    """A plugin failed to load, configure or start; the message names it."""

    def __init__(self, name: str, stage: str, reason: str) -> None:
        self.name, self.stage, self.reason = name, stage, reason
        super().__init__(f"plugin {name!r} failed to {stage}: {reason}")


@dataclass
class PluginContext:
    """Everything a plugin may use. ``api`` registers JSON routes under ``/api/<name>``;
    ``app.router`` is there for anything else (static files, media); ``services`` holds what
    plugins provide each other (see :mod:`syncstream.services`); ``oversight`` takes what
    they show the operator (see :mod:`syncstream.oversight`); ``plugins`` tells every
    plugin's state and dashboard script (what the admin plugin shows). ``gateway.revoke``
    ends users' live subscriptions when a plugin takes their access away."""

    name: str
    config: Any
    settings: Settings
    bus: EventBus
    store: Store
    auth: Auth
    audit: Audit
    api: ScopedApi
    gateway: Gateway
    app: web.Application
    data_dir: Path
    metrics: CollectorRegistry
    services: ServiceRegistry
    oversight: Oversight
    plugins: PluginReport
    log: Any = None
    announcements: list[tuple[str, str]] = field(default_factory=list)
    cors_allowed: list[str] = field(default_factory=list)
    cors_exposed: list[str] = field(default_factory=list)
    dashboard: Path | None = None
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def on_cleanup(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` at shutdown (latest first, before the store closes), or at once if
        this plugin's setup fails after registering it."""
        self.cleanups.append(callback)

    def listen(self, pattern: str, listener: Listener) -> None:
        """Listen on the bus until shutdown."""
        unlisten = self.bus.listen(pattern, listener)

        async def stop() -> None:
            unlisten()

        self.on_cleanup(stop)

    def background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task until shutdown (then it is cancelled and awaited)."""
        task = asyncio.get_running_loop().create_task(coro)

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self.on_cleanup(stop)
        return task

    def provide(self, interface: type[Any], implementation: Any) -> None:
        """Offer ``implementation`` of a core interface to other plugins."""
        self.services.provide(interface, implementation, self.name)

    def announce(self, label: str, value: str) -> None:
        """Add a line (such as a URL users need) to the startup banner and the landing page;
        ``{url}`` in ``value`` becomes the node's base URL."""
        self.announcements.append((label, value))

    def allow_cors_headers(self, allow: Sequence[str] = (), expose: Sequence[str] = ()) -> None:
        """Request headers browsers of other origins may send to this plugin's routes
        (``allow``), and response headers their scripts may read (``expose``)."""
        self.cors_allowed.extend(allow)
        self.cors_exposed.extend(expose)

    def add_dashboard(self, script: Path) -> None:
        """A script the admin dashboard loads: it adds this plugin's tiles, user actions,
        content sections and activity filters through ``window.SyncStreamAdmin``."""
        if not script.is_file():
            raise FileNotFoundError(f"dashboard script {script} does not exist")
        self.dashboard = script

    async def run_cleanups(self) -> None:
        """Run the cleanups registered so far, latest first, once each."""
        while self.cleanups:
            callback = self.cleanups.pop()
            try:
                await callback()
            except Exception:
                structlog.get_logger(__name__).exception("plugin.cleanup_failed", plugin=self.name)
