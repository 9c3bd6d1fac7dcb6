"""The media core: RTMP ingest, the packet pipeline and HLS / LL-HLS delivery.

Laid out like MediaMTX's ``internal/``: one folder per protocol (``rtmp/``, ``hls/``) around
a protocol-neutral pipeline (``ingest``, ``live``).
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from ..api import Api
from ..audit import Audit
from ..auth import Auth
from ..bus import EventBus
from ..config import Settings
from ..realtime import Gateway, Namespace
from ..store import Store
from .live import LiveService
from .recording import MIGRATIONS as RECORDING_MIGRATIONS
from .recording import note_adopted
from .routes import register_live_routes
from .rtmp.server import RtmpServer

log = structlog.get_logger(__name__)


class Media:
    """Starts and stops the media core of one node."""

    def __init__(
        self,
        settings: Settings,
        auth: Auth,
        bus: EventBus,
        audit: Audit,
        gateway: Gateway,
        store: Store,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.store = store
        self.live = LiveService(settings.live, auth, bus, audit, store, settings.data_dir)
        self.rtmp: RtmpServer | None = None
        if settings.rtmp.enabled:
            self.rtmp = RtmpServer(self.live, settings.rtmp.host, settings.rtmp.port)
        # live:<stream> carries the stream's stats every live.stats_seconds (ephemeral).
        gateway.register(Namespace("live", can_publish=lambda user, topic: False))
        self._stats: asyncio.Task[None] | None = None
        self._unlisten = bus.listen("file.adopted", lambda e: note_adopted(store, e.data))

    def register_routes(self, app: web.Application, api: Api) -> None:
        register_live_routes(app, api, self.live)

    async def start(self) -> None:
        await self.store.migrate("core.live", RECORDING_MIGRATIONS)
        if self.rtmp is not None:
            await self.rtmp.start()
        self._stats = asyncio.create_task(self._publish_stats())

    async def stop(self) -> None:
        self._unlisten()
        if self._stats is not None:
            self._stats.cancel()
        if self.rtmp is not None:
            await self.rtmp.stop()
        await self.live.close()

    async def _publish_stats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.live.stats_seconds)
            for stream in self.live.live_streams():
                stream.sample_stats()
                try:
                    await self.gateway.publish(
                        f"live:{stream.name}", stream.public(), ephemeral=True
                    )
                except Exception:
                    log.exception("live.stats_failed", stream=stream.name)
