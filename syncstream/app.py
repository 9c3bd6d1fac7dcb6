"""Builds the daemon: store, bus, auth, realtime gateway, plugins, HTTP app; runs and stops it.

:class:`Server` is what ``syncstream serve`` and the tests use alike: ``await start()`` binds
the ports and prints the banner, ``await stop()`` drains connections and closes everything.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import __version__
from .api import Api, Call, ScopedApi, json_response
from .audit import MIGRATIONS as AUDIT_MIGRATIONS
from .audit import Audit
from .auth import MIGRATIONS as AUTH_MIGRATIONS
from .auth import Auth, register_routes
from .auth.service import refuse_token_in_url
from .bus import EventBus, create_bus
from .config import LoadedConfig, Settings
from .errors import Problem, from_http_exception
from .frontdoor import register_front_door
from .gcpolicy import GcPolicy
from .logs import loggable_path
from .media import Media
from .metrics import Metrics
from .oversight import Oversight
from .plugins import EnabledPlugin, PluginContext, discover, resolve, start_plugin
from .realtime import Gateway, create_engine
from .services import ServiceRegistry
from .store import Store, open_store

log = structlog.get_logger(__name__)
CORE_KEY: web.AppKey[Core] = web.AppKey("syncstream.core")


def make_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class Core:
    """Everything the running node holds; plugins see it through their context."""

    settings: Settings
    node_id: str
    metrics: Metrics
    store: Store
    bus: EventBus
    audit: Audit
    auth: Auth
    gateway: Gateway
    api: Api
    plugins: list[EnabledPlugin] = field(default_factory=list)
    contexts: list[PluginContext] = field(default_factory=list)
    announcements: list[tuple[str, str]] = field(default_factory=list)
    services: ServiceRegistry = field(default_factory=ServiceRegistry)
    oversight: Oversight = field(default_factory=Oversight)
    media: Media | None = None
    draining: bool = False
    background: list[asyncio.Task[Any]] = field(default_factory=list)


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


ALLOWED_HEADERS = (
    "Authorization, Content-Type, If-Range, Range, Idempotency-Key, Tus-Resumable,"
    " Upload-Length, Upload-Defer-Length, Upload-Offset, Upload-Metadata, Upload-Checksum,"
    " Link-Password"
)
EXPOSED_HEADERS = (
    "Location, ETag, Content-Range, Content-Disposition, Retry-After, Tus-Resumable, Tus-Version,"
    " Tus-Max-Size, Tus-Extension, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires"
)


def _cors_headers(settings: Settings, request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    allowed = settings.server.cors_origins
    if not origin or not ("*" in allowed or origin in allowed):
        return {}
    return {
        "Access-Control-Allow-Origin": "*" if "*" in allowed else origin,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def make_middleware(
    settings: Settings, metrics: Metrics
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Problem-JSON errors, CORS, request metrics and the access log, in one pass."""
    access_log = settings.logging.access_log

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start = time.perf_counter()
        cors = _cors_headers(settings, request)
        if request.method == "OPTIONS" and cors:
            return web.Response(status=204, headers=cors)
        try:
            refuse_token_in_url(request)
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _logged(request, from_http_exception(exc))
        except Problem as problem:
            response = _logged(request, problem)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            request_id = secrets.token_hex(8)
            log.exception(
                "http.unhandled",
                path=loggable_path(request),
                method=request.method,
                request_id=request_id,
            )
            response = Problem(
                500,
                "internal_error",
                "an unexpected error occurred; it has been logged",
                request_id=request_id,
            ).response()
        if not response.prepared:
            response.headers.update(cors)
        if isinstance(response, web.WebSocketResponse):
            return response
        route = _route_name(request)
        elapsed = time.perf_counter() - start
        metrics.observe_request(request.method, route, response.status, elapsed)
        if access_log:
            log.info(
                "http.request",
                method=request.method,
                path=loggable_path(request),
                status=response.status,
                ms=round(elapsed * 1000, 2),
                ip=request.remote,
            )
        return response

    return middleware


def _logged(request: web.Request, problem: Problem) -> web.Response:
    """The problem's response, after logging which client got which error."""
    log.info(
        "http.problem",
        method=request.method,
        path=loggable_path(request),
        status=problem.status,
        code=problem.code,
        ip=request.remote,
    )
    return problem.response()


def _register_core_routes(core: Core, app: web.Application) -> None:
    api, settings = core.api, core.settings

    @api.route("GET", "/healthz", auth="public", tags=("system",))
    async def healthz(call: Call[None]) -> dict[str, Any]:
        """Liveness: the process serves requests."""
        return {"status": "ok", "node": core.node_id, "version": __version__}

    @api.route("GET", "/readyz", auth="public", tags=("system",))
    async def readyz(call: Call[None]) -> dict[str, Any]:
        """Readiness: the store answers and the node is not draining."""
        if core.draining:
            raise Problem(503, "draining", "the node is shutting down")
        try:
            await asyncio.wait_for(core.store.fetchval("SELECT 1"), 2.0)
        except Exception as exc:
            raise Problem(503, "store_unavailable", f"the store does not answer: {exc}") from None
        return {"status": "ready", "node": core.node_id}

    async def metrics_handler(request: web.Request) -> web.Response:
        core.metrics.take_lag_max()
        body = generate_latest(core.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    if settings.metrics.enabled:
        app.router.add_get("/metrics", metrics_handler)

    async def openapi(request: web.Request) -> web.Response:
        return json_response(api.openapi("SyncStream", __version__))

    app.router.add_get("/api/openapi.json", openapi)

    @api.route("GET", "/api/node", auth="public", tags=("system",))
    async def node(call: Call[None]) -> dict[str, Any]:
        """What runs on this node: version, plugins, and the links plugins announce (``{url}``
        stands for the node's address) — what the landing page at ``/`` shows."""
        return {
            "version": __version__,
            "node": core.node_id,
            "plugins": [p.plugin.name for p in core.plugins],
            "links": [{"label": label, "value": value} for label, value in core.announcements],
        }

    register_front_door(app.router)

    # Every browser asks for it on every page: without it each page logs a 404.
    favicon = (Path(__file__).parent / "static" / "favicon.ico").read_bytes()

    async def favicon_handler(request: web.Request) -> web.Response:
        return web.Response(
            body=favicon,
            headers={"Content-Type": "image/x-icon", "Cache-Control": "public, max-age=86400"},
        )

    app.router.add_get("/favicon.ico", favicon_handler)
    app.router.add_get("/ws", core.gateway.handle)

    from .realtime.routes import register_realtime_routes

    register_realtime_routes(api, core.gateway)
    rtmp_url = f"rtmp://{_public_host(settings)}:{settings.rtmp.port}/{settings.live.app}"
    register_routes(api, core.auth, rtmp_url)


def _public_host(settings: Settings) -> str:
    from urllib.parse import urlsplit

    return urlsplit(settings.public_url).hostname or "localhost"


@dataclass
class Services:
    """The store, bus, audit log and auth service: what the CLI needs without the HTTP app."""

    store: Store
    bus: EventBus
    audit: Audit
    auth: Auth

    async def close(self) -> None:
        await self.bus.stop()
        await self.store.close()


async def open_services(
    settings: Settings, node_id: str, metrics: Metrics | None = None
) -> Services:
    """Open the store (running core migrations) and start the bus."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(
        settings.store.url,
        sqlite_path=settings.data_dir / "syncstream.db",
        schema=settings.store.schema_name,
        pool_size=settings.store.pool_size,
    )
    try:
        await store.migrate("core.audit", AUDIT_MIGRATIONS)
        await store.migrate("core.auth", AUTH_MIGRATIONS)
        bus = create_bus(
            node_id,
            settings.cluster.redis_url,
            settings.cluster.prefix,
            on_fire=metrics.count_bus_event if metrics else None,
        )
        await bus.start()
    except BaseException:
        await store.close()
        raise
    audit = Audit(store, bus)
    return Services(store, bus, audit, Auth(store, bus, audit, settings.auth))


async def build(loaded: LoadedConfig) -> tuple[web.Application, Core]:
    """Open the store and bus, start plugins and return the ready aiohttp application."""
    settings = loaded.settings
    enabled = resolve(discover(settings.plugin_paths), loaded)
    node_id = settings.cluster.node_id or make_node_id()
    metrics = Metrics()
    services = await open_services(settings, node_id, metrics)
    store, bus, audit, auth = services.store, services.bus, services.audit, services.auth
    cleanups: list[Callable[[], Awaitable[None]]] = [services.close]
    try:
        engine = create_engine(
            settings.cluster.redis_url,
            settings.cluster.prefix,
            node_id,
            settings.realtime.history_size,
            settings.realtime.history_ttl_seconds,
            settings.realtime.presence_ttl_seconds,
        )
        gateway = Gateway(settings.realtime, *engine, auth, bus, metrics, node_id)
        app = web.Application(
            middlewares=[make_middleware(settings, metrics)],
            client_max_size=settings.server.max_body_bytes,
        )
        api = Api(app.router, auth.user_from_request)
        core = Core(settings, node_id, metrics, store, bus, audit, auth, gateway, api, enabled)
        app[CORE_KEY] = core
        _register_core_routes(core, app)
        await gateway.start()
        cleanups.append(gateway.stop)
        media = Media(settings, auth, bus, audit, gateway, store)
        media.register_routes(app, api)
        await media.start()
        cleanups.append(media.stop)
        core.media = media
        media.oversee(core.oversight, auth)
        if media.rtmp is not None:
            host = _public_host(settings)
            core.announcements.append(
                ("RTMP ingest", f"rtmp://{host}:{media.rtmp.port}/{settings.live.app}/<stream key>")
            )
        for item in enabled:
            name = item.plugin.name
            data_dir = settings.data_dir / "plugins" / name
            data_dir.mkdir(parents=True, exist_ok=True)
            ctx = PluginContext(
                name=name,
                config=item.config,
                settings=settings,
                bus=bus,
                store=store,
                auth=auth,
                audit=audit,
                api=ScopedApi(api, f"/api/{name}"),
                gateway=gateway,
                app=app,
                data_dir=data_dir,
                metrics=metrics.registry,
                services=core.services,
                oversight=core.oversight,
                announcements=core.announcements,
            )
            core.contexts.append(ctx)
            cleanups.append(ctx.run_cleanups)
            await start_plugin(item, ctx)
    except BaseException:
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("startup.cleanup_failed")
        raise

    async def on_startup(app: web.Application) -> None:
        core.background.append(
            asyncio.create_task(metrics.watch_loop_lag(settings.metrics.loop_lag_interval))
        )
        unwatch_gc = metrics.watch_gc()

        async def stop_watching_gc() -> None:
            unwatch_gc()

        cleanups.insert(0, stop_watching_gc)

    async def on_shutdown(app: web.Application) -> None:
        core.draining = True
        cleanups.remove(gateway.stop)  # sockets close first, so handlers can finish
        await gateway.stop()

    async def on_cleanup(app: web.Application) -> None:
        for task in core.background:
            task.cancel()
        for cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("shutdown.cleanup_failed")

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app, core


class Server:
    """A running node: ``start()`` binds and prints the banner, ``stop()`` drains and closes."""

    def __init__(self, loaded: LoadedConfig, banner: TextIO | None = sys.stdout) -> None:
        self.loaded = loaded
        self.settings = loaded.settings
        self.banner_stream = banner
        self.core: Core | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.gc_policy = GcPolicy(self.settings.server.gc_sweep_seconds)

    async def start(self) -> None:
        app, self.core = await build(self.loaded)
        self.runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=self.settings.server.shutdown_timeout
        )
        await self.runner.setup()
        # A deep accept queue: an audience joining at once (a thousand LL-HLS viewers open two
        # connections each within a second) overflowed aiohttp's default of 128, and every
        # dropped SYN cost its viewer a 1-3 s retransmit. The kernel caps it at somaxconn.
        site = web.TCPSite(
            self.runner, self.settings.server.host, self.settings.server.port, backlog=4096
        )
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.server.port
        self.gc_policy.start()  # start-up's objects out of the collector's way, and more
        if self.banner_stream is not None:
            print(self.banner(), file=self.banner_stream, flush=True)

    @property
    def url(self) -> str:
        if self.settings.server.public_url:
            return self.settings.public_url
        return f"http://{_public_host(self.settings)}:{self.port}"

    def banner(self) -> str:
        assert self.core is not None
        core, s = self.core, self.settings
        store = (
            s.store.url.split("@")[-1] if s.store.url else f"SQLite {s.data_dir / 'syncstream.db'}"
        )
        bus = f"Redis {s.cluster.redis_url.split('@')[-1]}" if s.clustered else "in-process"
        plugins = ", ".join(p.plugin.name for p in core.plugins) or "none"
        ws_url = "ws" + self.url[4:] + "/ws"
        lines = [
            f"SyncStream {__version__} — node {core.node_id}",
            f"  Home          {self.url}/",
            f"  HTTP API      {self.url}/api/  (docs {self.url}/api/docs,"
            f" OpenAPI {self.url}/api/openapi.json)",
            f"  WebSocket     {ws_url}",
            f"  HLS           {self.url}/live/<stream>/index.m3u8",
            f"  Watch page    {self.url}/watch/<stream>",
            *[
                f"  {label:<13} {value.replace('{url}', self.url)}"
                for label, value in core.announcements
            ],
            f"  Health        {self.url}/healthz  {self.url}/readyz  {self.url}/metrics",
            f"  Store         {store}",
            f"  Bus           {bus}",
            f"  Plugins       {plugins}",
        ]
        if not any(label == "Dashboard" for label, _ in core.announcements):
            lines.insert(4, "  Dashboard     (admin plugin not enabled)")
        if not any(label == "RTMP ingest" for label, _ in core.announcements):
            lines.insert(4, "  RTMP ingest   (off: rtmp.enabled is false)")
        return "\n".join(lines)

    async def stop(self) -> None:
        if self.core is not None:
            self.core.draining = True
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.gc_policy.stop()

    async def run_until_signal(self) -> None:
        """Serve until SIGINT/SIGTERM, then shut down gracefully."""
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("server.stopping", reason="signal")
        await self.stop()
        log.info("server.stopped")
