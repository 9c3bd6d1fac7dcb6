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
from functools import partial
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
from .cors import Cors
from .errors import Problem, from_http_exception
from .frontdoor import register_front_door
from .logs import loggable_path
from .media import Media
from .media.hls.fastpath import LiveFastPath
from .metrics import Metrics
from .oversight import Oversight
from .plugins import Plan, PluginContext, PluginReport, Ready, plan, set_up
from .realtime import Gateway, create_engine
from .runtime.gc_policy import GcPolicy
from .runtime.seams import SEAMS
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
    cors: Cors
    plugins: PluginReport = field(default_factory=PluginReport)
    contexts: list[PluginContext] = field(default_factory=list)
    announcements: list[tuple[str, str]] = field(default_factory=list)
    services: ServiceRegistry = field(default_factory=ServiceRegistry)
    oversight: Oversight = field(default_factory=Oversight)
    media: Media | None = None
    draining: bool = False
    background: list[asyncio.Task[Any]] = field(default_factory=list)


def make_middleware(
    settings: Settings,
    metrics: Metrics,
    cors_policy: Cors,
    unavailable: set[web.AbstractResource],
    report: PluginReport,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Problem-JSON errors, CORS, request metrics and the access log, in one pass; the
    routes of plugins whose setup failed (``unavailable``), and whatever is asked of a failed
    plugin under its ``/api/<name>/`` (routes it never got to add), answer 503."""
    access_log = settings.logging.access_log
    observe = metrics.requests.observe

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start = time.perf_counter()
        origin = request.headers.get("Origin")
        cors = cors_policy.headers(origin) if origin else None
        if cors and request.method == "OPTIONS":
            return web.Response(status=204, headers=cors)
        try:
            if request.query_string:  # most requests have none
                refuse_token_in_url(request)
            if unavailable and request.match_info.route.resource in unavailable:
                raise Problem(503, "plugin_unavailable", "the plugin serving this path failed")
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status == 404 and _failed_plugin_path(request.path, report):
                problem = Problem(503, "plugin_unavailable", "the plugin serving this path failed")
                response = _logged(request, problem)
            else:
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
        if cors and not response.prepared:
            response.headers.update(cors)
        if isinstance(response, web.WebSocketResponse):
            return response
        elapsed = time.perf_counter() - start
        observe(request.method, request.match_info.route.resource, response.status, elapsed)
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
        """Readiness: the store answers and the node is not draining. A node serves without
        its failed optional plugins (a failed required one stops start-up), so it is ready
        then too, and says which failed at which stage (the reasons are in the log, in
        ``syncstream plugins`` and on the dashboard)."""
        if core.draining:
            raise Problem(503, "draining", "the node is shutting down")
        try:
            await asyncio.wait_for(core.store.fetchval("SELECT 1"), 2.0)
        except Exception as exc:
            raise Problem(503, "store_unavailable", f"the store does not answer: {exc}") from None
        failed = {s.name: s.stage for s in core.plugins if s.state == "failed"}
        return {
            "status": "ready",
            "node": core.node_id,
            "plugins": {"running": core.plugins.named("running"), "failed": failed},
        }

    async def metrics_handler(request: web.Request) -> web.Response:
        core.metrics.take_lag_max()
        for seam in SEAMS.all():
            core.metrics.runtime_seams.labels(seam.name).set(seam.active)
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
            "plugins": core.plugins.named("running"),
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
class Foundation:
    """What every part of a node stands on — store, bus, audit log, auth — and all the CLI needs
    without the HTTP app (plugins offer each other services through the ServiceRegistry)."""

    store: Store
    bus: EventBus
    audit: Audit
    auth: Auth

    async def close(self) -> None:
        await self.bus.stop()
        await self.store.close()


async def _stop_plugins(core: Core) -> None:
    """Plugins stop in reverse order of their setup, each one's cleanups latest first."""
    for ctx in reversed(core.contexts):
        await ctx.run_cleanups()


async def open_foundation(
    settings: Settings, node_id: str, metrics: Metrics | None = None
) -> Foundation:
    """Open the store (running core migrations) and start the bus."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(
        settings.store.url,
        sqlite_path=settings.data_dir / "syncstream.db",
        schema=settings.store.schema_name,
        pool_size=settings.store.pool_size,
        sqlite_inline_writes=settings.runtime.sqlite_inline_writes,
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
    return Foundation(store, bus, audit, Auth(store, bus, audit, settings.auth))


def _plugin_context(core: Core, app: web.Application, ready: Ready) -> PluginContext:
    settings, name = core.settings, ready.name
    data_dir = settings.data_dir / "plugins" / name
    data_dir.mkdir(parents=True, exist_ok=True)
    return PluginContext(
        name=name,
        config=ready.config,
        settings=settings,
        bus=core.bus,
        store=core.store,
        auth=core.auth,
        audit=core.audit,
        api=ScopedApi(core.api, f"/api/{name}"),
        gateway=core.gateway,
        app=app,
        data_dir=data_dir,
        metrics=core.metrics.registry,
        services=core.services,
        oversight=core.oversight,
        plugins=core.plugins,
    )


def _failed_plugin_path(path: str, report: PluginReport) -> bool:
    """Whether ``path`` is under ``/api/<name>/`` of a plugin that failed."""
    if not path.startswith("/api/"):
        return False
    status = report.get(path.split("/", 3)[2])
    return status is not None and status.state == "failed"


async def _start_plugins(
    core: Core, app: web.Application, plugins: Plan, unavailable: set[web.AbstractResource]
) -> None:
    """Set each plugin up in dependency order. A failed one is reported and its routes made
    unavailable; the rest start, unless the failed one is required (then start-up stops)."""
    for ready in plugins.ready:
        ctx = _plugin_context(core, app, ready)
        before = set(app.router.resources())
        core.contexts.append(ctx)
        if await set_up(ready, ctx, core.plugins):
            core.announcements += ctx.announcements
            core.cors.add(ctx.cors_allowed, ctx.cors_exposed)
            continue
        unavailable.update(r for r in app.router.resources() if r not in before)
        if error := plugins.required_failure():
            raise error


async def build(loaded: LoadedConfig) -> tuple[web.Application, Core]:
    """Open the store and bus, start plugins and return the ready aiohttp application."""
    settings = loaded.settings
    plugins = plan(loaded)
    if error := plugins.required_failure():
        raise error
    node_id = settings.cluster.node_id or make_node_id()
    metrics = Metrics()
    foundation = await open_foundation(settings, node_id, metrics)
    store, bus, audit, auth = foundation.store, foundation.bus, foundation.audit, foundation.auth
    cleanups: list[Callable[[], Awaitable[None]]] = [foundation.close]
    try:
        engine = create_engine(
            settings.cluster.redis_url,
            settings.cluster.prefix,
            node_id,
            settings.realtime.history_size,
            settings.realtime.history_ttl_seconds,
            settings.realtime.presence_ttl_seconds,
        )
        gateway = Gateway(
            settings.realtime, *engine, auth, bus, metrics, node_id,
            ws_text_tap=settings.runtime.ws_text_tap,
        )  # fmt: skip
        cors = Cors(settings.server.cors_origins)
        unavailable: set[web.AbstractResource] = set()
        app = web.Application(
            middlewares=[make_middleware(settings, metrics, cors, unavailable, plugins.report)],
            client_max_size=settings.server.max_body_bytes,
        )
        api = Api(app.router, auth)
        core = Core(settings, node_id, metrics, store, bus, audit, auth, gateway, api, cors,
                    plugins.report)  # fmt: skip
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
        cleanups.append(partial(_stop_plugins, core))
        await _start_plugins(core, app, plugins, unavailable)
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
        self.listener: asyncio.Server | None = None
        self.fast_path: LiveFastPath | None = None
        self.port = 0
        runtime = self.settings.runtime
        self.gc_policy = (
            GcPolicy(runtime.gc_sweep_seconds)
            if SEAMS.record("gc_policy", runtime.gc_policy)
            else None
        )

    async def start(self) -> None:
        app, self.core = await build(self.loaded)
        self.runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=self.settings.server.shutdown_timeout
        )
        await self.runner.setup()
        # The listening socket is ours rather than a TCPSite's, so that its protocol can be
        # the live fast path, which hands every other request to aiohttp's own protocol.
        server = self.runner.server
        assert server is not None
        protocols: Callable[[], asyncio.Protocol] = server
        if self.settings.live.hls_fast_path and self.core.media is not None:
            self.fast_path = LiveFastPath(
                self.core.media.live,
                server,
                self.core.cors.headers,
                self.core.metrics,
                self.settings.logging.access_log,
            )
            self.fast_path.start()
            protocols = self.fast_path
        # A deep accept queue: an audience joining at once (a thousand LL-HLS viewers open two
        # connections each within a second) overflowed aiohttp's default of 128, and every
        # dropped SYN cost its viewer a 1-3 s retransmit. The kernel caps it at somaxconn.
        self.listener = await asyncio.get_running_loop().create_server(
            protocols, self.settings.server.host, self.settings.server.port, backlog=4096
        )
        self.port = self.listener.sockets[0].getsockname()[1]
        if self.gc_policy is not None:
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
        plugins = ", ".join(core.plugins.named("running")) or "none"
        failed = ", ".join(f"{s.name} ({s.stage})" for s in core.plugins if s.state == "failed")
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
        if failed:
            lines.append(f"  Failed        {failed}  (see `syncstream plugins`, the log)")
        if not any(label == "RTMP ingest" for label, _ in core.announcements):
            lines.insert(4, "  RTMP ingest   (off: rtmp.enabled is false)")
        return "\n".join(lines)

    async def stop(self) -> None:
        if self.core is not None:
            self.core.draining = True
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.fast_path is not None:
            self.fast_path.pre_shutdown()
        if self.runner is not None:
            await self.runner.cleanup()  # ends the live streams: blocked viewers are answered
            self.runner = None
        if self.fast_path is not None:
            self.fast_path.close()
            self.fast_path = None
        if self.gc_policy is not None:
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
