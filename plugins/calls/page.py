"""The minimal call page at ``/call`` (``#token=…&call=…``): static files, a strict CSP."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self' blob:;"
    " connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'"
)
FILES = {"call.js": "text/javascript", "call.css": "text/css"}


def register_page(router: web.UrlDispatcher) -> None:
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / "call.html",
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
        )

    async def asset(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        return web.FileResponse(
            STATIC / name, headers={"Content-Type": FILES[name], "Cache-Control": "no-cache"}
        )

    router.add_get("/call", page)
    router.add_get("/call/{name:call\\.(js|css)}", asset)
