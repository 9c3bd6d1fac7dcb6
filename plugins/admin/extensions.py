"""What other plugins add to the dashboard, read from the core's plugin report: every
plugin's state (``GET /api/admin/plugins``) and the scripts of the running ones
(``/admin/plugins/<name>.js``), which add their tiles, user actions and content sections to
the page through ``window.SyncStreamAdmin`` (see ``static/admin.js``). The dashboard names
no other plugin."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from syncstream.sdk import Call, PluginReport, ScopedApi

from .page import HEADERS


def register_extensions(api: ScopedApi, router: web.UrlDispatcher, plugins: PluginReport) -> None:
    @api.route("GET", "/plugins", auth="admin")
    async def states(call: Call[None]) -> dict[str, Any]:
        """Every plugin: version, state (disabled, running, failed), the failed stage and
        why; ``script`` is the dashboard script of a running plugin that has one."""
        scripts = plugins.dashboards()
        return {
            "plugins": [
                {**s, "script": f"/admin/plugins/{s['name']}.js" if s["name"] in scripts else None}
                for s in plugins.public()
            ]
        }

    async def script(request: web.Request) -> web.FileResponse:
        path = plugins.dashboards().get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**HEADERS, "Content-Type": "text/javascript"})

    router.add_get(r"/admin/plugins/{name:[a-z][a-z0-9_]*}.js", script)
