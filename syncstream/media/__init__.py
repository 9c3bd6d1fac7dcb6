"""The media core: RTMP ingest, the packet pipeline and HLS / LL-HLS delivery.

Laid out like MediaMTX's ``internal/``: one folder per protocol (``rtmp/``, ``hls/``) around
a protocol-neutral pipeline (``ingest``, ``live``).
"""

from __future__ import annotations

from aiohttp import web

from ..api import Api
from ..audit import Audit
from ..auth import Auth
from ..bus import EventBus
from ..config import Settings
from .live import LiveService
from .routes import register_live_routes
from .rtmp.server import RtmpServer


class Media:
    """Starts and stops the media core of one node."""

    def __init__(self, settings: Settings, auth: Auth, bus: EventBus, audit: Audit) -> None:
        self.settings = settings
        self.live = LiveService(settings.live, auth, bus, audit)
        self.rtmp: RtmpServer | None = None
        if settings.rtmp.enabled:
            self.rtmp = RtmpServer(self.live, settings.rtmp.host, settings.rtmp.port)

    def register_routes(self, app: web.Application, api: Api) -> None:
        register_live_routes(app, api, self.live)

    async def start(self) -> None:
        if self.rtmp is not None:
            await self.rtmp.start()

    async def stop(self) -> None:
        if self.rtmp is not None:
            await self.rtmp.stop()
        await self.live.close()
