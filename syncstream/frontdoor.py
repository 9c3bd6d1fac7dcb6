"""The front door: what a person who opens the node's address sees. ``/`` is a landing page
(what runs on this node, from ``GET /api/node``: the live streams with their watch pages and
the links plugins announce), ``/api/docs`` the interactive API reference (Swagger UI,
vendored from npm) over ``/api/openapi.json``. Static files under ``/assets/``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

STATIC = Path(__file__).parent / "static"
ASSETS = {  # name -> content type: nothing else under /assets/ is served
    "landing.js": "text/javascript",
    "landing.css": "text/css",
    "docs.js": "text/javascript",
    "vendor/swagger-ui-bundle.js": "text/javascript",
    "vendor/swagger-ui.css": "text/css",
}
LANDING_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'"
)
# Swagger UI sets style attributes from script: inline styles, never inline scripts.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)


def register_front_door(router: web.UrlDispatcher) -> None:
    def page(name: str, csp: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.FileResponse:
            return web.FileResponse(
                STATIC / name,
                headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"},
            )

        return handler

    async def asset(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.FileResponse(
            STATIC / name,
            headers={"Content-Type": ASSETS[name], "Cache-Control": "public, max-age=3600"},
        )

    router.add_get("/", page("landing.html", LANDING_CSP))
    router.add_get("/api/docs", page("docs.html", DOCS_CSP))
    router.add_get("/assets/{name:.+}", asset)
