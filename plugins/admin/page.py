"""The dashboard at ``/admin``: static files shipped in the package (no build step), served
with a strict Content-Security-Policy. The page signs in with a bearer token kept in the
tab's session storage — no cookies, so no cross-site request can act for an admin."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
    " connect-src 'self' ws: wss:; font-src 'self'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}  # fmt: skip


def register_page(router: web.UrlDispatcher) -> None:
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "admin.html", headers=HEADERS)

    async def asset(request: web.Request) -> web.FileResponse:
        path = (STATIC / request.match_info["path"]).resolve()
        if not path.is_relative_to(STATIC) or not path.is_file() or path.suffix not in TYPES:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**HEADERS, "Content-Type": TYPES[path.suffix]})

    router.add_get("/admin", page)
    router.add_get(r"/admin/static/{path:[A-Za-z0-9_./-]+}", asset)
