"""Setting a plugin up, alone: its migrations, then ``setup(ctx)`` within a time limit.

A plugin whose migration or setup fails, or whose setup outlasts its time limit
(``plugins.<name>.setup_timeout``, by default ``plugin_setup_timeout``), has what it
registered so far undone (its cleanups run at once; the services, user facts, figures and
realtime namespaces it added are withdrawn) and is marked ``failed``; the core keeps its
routes answering ``503 plugin_unavailable`` (aiohttp cannot remove a route) and shows nothing
else of it.
"""

from __future__ import annotations

import asyncio

import structlog

from .contract import PluginContext
from .loader import Ready
from .report import PluginReport


async def _undo(ctx: PluginContext, oversight: set[str], namespaces: set[str]) -> None:
    """Undo a failed setup; ``oversight`` and ``namespaces`` are what existed before it."""
    await ctx.run_cleanups()
    ctx.services.withdraw(ctx.name)
    ctx.oversight.withdraw(ctx.oversight.sources() - oversight)
    for name in set(ctx.gateway.namespaces) - namespaces:
        del ctx.gateway.namespaces[name]


async def set_up(ready: Ready, ctx: PluginContext, report: PluginReport) -> bool:
    """Migrate and set up one plugin; True when it runs. Failures are recorded, not raised."""
    name = ready.name
    if failed := report.failed_among(ready.manifest.dependencies):
        report.fail(
            name, "resolve its dependencies", f"it depends on plugin {failed!r}, which failed"
        )
        return False
    ctx.log = structlog.get_logger(f"plugins.{name}")
    try:
        if ready.plugin.migrations:
            await ctx.store.migrate(name, ready.plugin.migrations)
    except Exception as exc:
        report.fail(name, "migrate", f"{type(exc).__name__}: {exc}")
        return False
    oversight, namespaces = ctx.oversight.sources(), set(ctx.gateway.namespaces)
    try:
        await asyncio.wait_for(ready.plugin.setup(ctx), ready.setup_timeout)
    except TimeoutError:
        reason = f"its setup took longer than {ready.setup_timeout:g} s (setup_timeout)"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        status = report.get(name)
        assert status is not None
        status.state, status.dashboard = "running", ctx.dashboard
        return True
    await _undo(ctx, oversight, namespaces)
    report.fail(name, "set up", reason)
    return False
