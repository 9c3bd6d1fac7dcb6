"""The media core: RTMP ingest, the packet pipeline and HLS / LL-HLS delivery.

Laid out like MediaMTX's ``internal/``: one folder per protocol (``rtmp/``, ``hls/``) around
a protocol-neutral pipeline (``ingest``, ``live``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from ..api import Api
from ..audit import Audit
from ..auth import Auth
from ..bus import Event, EventBus
from ..config import Settings
from ..oversight import Oversight
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
            rtmp = settings.rtmp
            self.rtmp = RtmpServer(self.live, rtmp.host, rtmp.port, rtmp.fast_reader)
        # live:<stream> carries the stream's stats every live.stats_seconds (ephemeral).
        gateway.register(Namespace("live", can_publish=lambda user, topic: False))
        self._stats: asyncio.Task[None] | None = None
        # Not undone in stop(): a recording finished at shutdown is adopted while the node
        # closes, and its link must still be written; the bus waits for its listeners before
        # the store closes.
        bus.listen("stream.recording.adopted", lambda e: note_adopted(store, e.data))
        self._unlisteners = [bus.listen("user.banned", self._on_banned)]

    def register_routes(self, app: web.Application, api: Api) -> None:
        register_live_routes(app, api, self.live)

    async def start(self) -> None:
        await self.store.migrate("core.live", RECORDING_MIGRATIONS)
        if self.rtmp is not None:
            await self.rtmp.start()
        self._stats = asyncio.create_task(self._publish_stats())

    def oversee(self, oversight: Oversight, auth: Auth) -> None:
        """Live streams in the operator's figures and user view."""

        async def figures() -> dict[str, float]:
            streams = self.live.live_streams()
            return {
                "streams": len(streams),
                "viewers": sum(s.viewers()["total"] for s in streams),
                "ingest_kbps": sum(s.bitrate_kbps for s in streams),
            }

        async def facts(user_id: str) -> dict[str, Any]:
            live = [s.name for s in self.live.live_streams() if s.owner.id == user_id]
            keys = [row["stream"] for row in await auth.list_streams(user_id)]
            return {"stream_keys": keys, "live_now": live}

        oversight.add_figures("live", figures)
        oversight.add_user_facts("live", facts)

    async def _on_banned(self, event: Event) -> None:
        """A banned user's streams end at once (their keys stop working with their tokens)."""
        for stream in self.live.live_streams():
            if stream.owner.id == event.data.get("user_id"):
                self.live.kick(stream.name, "the broadcaster was banned")

    async def stop(self) -> None:
        for unlisten in self._unlisteners:
            unlisten()
        if self._stats is not None:
            self._stats.cancel()
        if self.rtmp is not None:
            await self.rtmp.stop()
        await self.live.close()

    async def _publish_stats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.live.stats_seconds)
            await self._send_stats()  # its locals (a stream) go with it, not kept while asleep

    async def _send_stats(self) -> None:
        for stream in self.live.live_streams():
            stream.sample_stats()
            try:
                await self.gateway.publish(f"live:{stream.name}", stream.public(), ephemeral=True)
            except Exception:
                log.exception("live.stats_failed", stream=stream.name)
