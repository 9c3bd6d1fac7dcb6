"""Plugin contract and loader (after Home Assistant's integrations, kept smaller).

A plugin is a module or package exposing ``plugin = Plugin(...)``: a name, a version, a config
model, the migrations it owns, the plugins it must start after, and an async ``setup(ctx)``.
Plugins come from the bundled ``plugins`` package, from directories in ``plugin_paths``, and from
the ``syncstream.plugins`` entry point group. Plugins never import each other: they talk through
the bus. A plugin that cannot be imported, configured or set up stops start-up with its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from .config import ConfigError, ConfigIssue, LoadedConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .api import ScopedApi
    from .audit import Audit
    from .auth import Auth
    from .bus import EventBus, Listener
    from .config import Settings
    from .oversight import Oversight
    from .realtime import Gateway
    from .services import ServiceRegistry
    from .store import Migration, Store

ENTRY_POINT_GROUP = "syncstream.plugins"
BUILTIN_PACKAGE = "plugins"


class NoConfig(BaseModel):
    """Config model of a plugin that takes no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class PluginContext:
    """Everything a plugin may use. ``api`` registers JSON routes under ``/api/<name>``;
    ``app.router`` is there for anything else (static files, media); ``services`` holds what
    plugins provide each other (see :mod:`syncstream.services`); ``oversight`` takes what
    they show the operator (see :mod:`syncstream.oversight`). ``gateway.revoke`` ends
    users' live subscriptions when a plugin takes their access away (see
    :mod:`syncstream.realtime.revocation`)."""

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
    announcements: list[tuple[str, str]] = field(default_factory=list)
    log: Any = None
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def on_cleanup(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` at shutdown (latest first, before the store closes)."""
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
        """Add a line (such as a URL users need) to the startup banner; ``{url}`` in ``value``
        becomes the node's base URL."""
        self.announcements.append((label, value))

    async def run_cleanups(self) -> None:
        for callback in reversed(self.cleanups):
            try:
                await callback()
            except Exception:
                structlog.get_logger(__name__).exception("plugin.cleanup_failed", plugin=self.name)


@dataclass(frozen=True)
class Plugin:
    """A plugin's manifest and entry point."""

    name: str
    version: str
    setup: Callable[[PluginContext], Awaitable[None]]
    description: str = ""
    config: type[BaseModel] = NoConfig
    migrations: Sequence[Migration] = ()
    requires: tuple[str, ...] = ()
    enabled_by_default: bool = True


@dataclass(frozen=True)
class DiscoveredPlugin:
    plugin: Plugin
    source: str


class PluginError(Exception):
    """A plugin failed to load, configure or start; the message names it."""

    def __init__(self, name: str, stage: str, reason: str) -> None:
        self.name, self.stage, self.reason = name, stage, reason
        super().__init__(f"plugin {name!r} failed to {stage}: {reason}")


def _plugin_of(obj: Any, source: str) -> Plugin:
    candidate = getattr(obj, "plugin", obj)
    if not isinstance(candidate, Plugin):
        raise PluginError(source, "load", "it defines no `plugin = Plugin(...)`")
    return candidate


Loader = tuple[str, Callable[[], Any]]  # (where it comes from, import it)


def _import_builtin() -> list[Loader]:
    try:
        package = importlib.import_module(BUILTIN_PACKAGE)
    except ImportError:
        return []
    return [
        (
            f"{BUILTIN_PACKAGE}.{info.name}",
            partial(importlib.import_module, f"{BUILTIN_PACKAGE}.{info.name}"),
        )
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    ]


def _import_package_dir(entry: Path) -> Any:
    """Import a plugin package from a directory outside ``sys.path``."""
    module_name = f"syncstream_plugin_{entry.name}"
    init = entry / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        module_name, init, submodule_search_locations=[str(entry)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _import_from_dir(directory: Path) -> list[Loader]:
    return [
        (str(entry), partial(_import_package_dir, entry))
        for entry in sorted(directory.iterdir())
        if (entry / "__init__.py").is_file()
    ]


def discover(plugin_paths: Sequence[Path] = ()) -> dict[str, DiscoveredPlugin]:
    """Every plugin that can be found, by name. Import failures raise :class:`PluginError`."""
    loaders = _import_builtin()
    for directory in plugin_paths:
        if not directory.is_dir():
            raise PluginError(str(directory), "load", "plugin path is not a directory")
        loaders += _import_from_dir(directory)
    loaders += [
        (f"entry point {ep.name} ({ep.value})", ep.load)
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    ]
    found: dict[str, DiscoveredPlugin] = {}
    for source, load in loaders:
        try:
            plugin = _plugin_of(load(), source)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(source, "import", f"{type(exc).__name__}: {exc}") from exc
        if plugin.name in found:
            raise PluginError(
                plugin.name, "load", f"defined twice: {found[plugin.name].source} and {source}"
            )
        found[plugin.name] = DiscoveredPlugin(plugin, source)
    return found


@dataclass(frozen=True)
class EnabledPlugin:
    plugin: Plugin
    config: Any


def is_enabled(plugin: Plugin, section: dict[str, Any]) -> bool:
    return bool(section.get("enabled", plugin.enabled_by_default))


def resolve(discovered: dict[str, DiscoveredPlugin], loaded: LoadedConfig) -> list[EnabledPlugin]:
    """Validate each plugin's config section; return the enabled ones in dependency order."""
    issues: list[ConfigIssue] = []
    sections = loaded.settings.plugins
    for name in sections:
        if name not in discovered:
            known = ", ".join(sorted(discovered)) or "none"
            issues.append(
                ConfigIssue(
                    loaded.source,
                    f"plugins.{name}",
                    f"no such plugin (known: {known})",
                    loaded.lines.get(f"plugins.{name}"),
                )
            )
    enabled: dict[str, EnabledPlugin] = {}
    for name, found in discovered.items():
        section = dict(sections.get(name) or {})
        if not isinstance(section.get("enabled", True), bool):
            issues.append(
                ConfigIssue(
                    loaded.source,
                    f"plugins.{name}.enabled",
                    "must be true or false",
                    loaded.lines.get(f"plugins.{name}.enabled"),
                )
            )
            continue
        active = is_enabled(found.plugin, section)
        section.pop("enabled", None)
        try:
            config = found.plugin.config.model_validate(section)
        except ValidationError as exc:
            issues.extend(loaded.plugin_issues(name, exc))
            continue
        if active:
            enabled[name] = EnabledPlugin(found.plugin, config)
    if issues:
        raise ConfigError(issues)
    return _dependency_order(enabled)


def _dependency_order(enabled: dict[str, EnabledPlugin]) -> list[EnabledPlugin]:
    ordered: list[EnabledPlugin] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise PluginError(name, "load", "dependency cycle: " + " -> ".join((*chain, name)))
        state[name] = "visiting"
        for dep in enabled[name].plugin.requires:
            if dep not in enabled:
                raise PluginError(name, "load", f"it requires plugin {dep!r}, which is not enabled")
            visit(dep, (*chain, name))
        state[name] = "done"
        ordered.append(enabled[name])

    for name in sorted(enabled):
        visit(name, ())
    return ordered


async def start_plugin(enabled: EnabledPlugin, ctx: PluginContext) -> None:
    """Run a plugin's migrations and setup; any failure becomes a :class:`PluginError`."""
    plugin = enabled.plugin
    ctx.log = structlog.get_logger(f"plugins.{plugin.name}")
    try:
        if plugin.migrations:
            await ctx.store.migrate(plugin.name, plugin.migrations)
    except Exception as exc:
        raise PluginError(plugin.name, "migrate", str(exc)) from exc
    try:
        await plugin.setup(ctx)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(plugin.name, "set up", f"{type(exc).__name__}: {exc}") from exc
