"""Live streams: who may publish, the life of a stream, and what viewers can see of it.

A stream is named by its stream key (see ``Auth.rotate_stream_key``). It goes ``live`` on
publish; when the publisher's connection drops it waits ``grace_seconds`` in ``reconnecting``
(viewers keep their playlist; a reconnect continues it after an EXT-X-DISCONTINUITY), then
``ended``. A publisher that unpublishes on purpose (OBS "Stop Streaming", ffmpeg at the end of
its input) ends the stream at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import structlog

from ..audit import Audit
from ..auth import Auth, User
from ..bus import EventBus
from ..config import LiveSettings
from ..store import Store
from .fmp4 import Fragment
from .hls.timeline import Timeline
from .ingest import Ingest, IngestCallbacks, TrackInfo
from .ladder import Ladder
from .readers import Reader
from .recording import Format, Recording
from .thumbnails import Snapshots
from .webrtc.relay import WebRtcRelay

log = structlog.get_logger(__name__)

State = Literal["live", "reconnecting", "ended"]


class PublishRefused(Exception):
    """A publish attempt was refused; ``code`` is the RTMP onStatus code to send back."""

    def __init__(self, code: str, reason: str) -> None:
        self.code, self.reason = code, reason
        super().__init__(reason)


@dataclass(eq=False)
class PublishSession:
    """One publisher connection feeding one stream."""

    stream: LiveStream
    peer: str
    kick: Callable[[str], None]
    on_finished: Callable[[PublishSession], None]
    started_at: float = field(default_factory=time.time)
    bytes_in: int = 0
    ingest: Ingest = field(init=False)
    readers: list[Reader] = field(default_factory=list)
    finished: bool = False
    unpublished: bool = False  # the publisher said it stopped (not a dropped connection)
    recording: Recording | None = None

    def write(self, tag_type: int, timestamp: int, payload: bytes) -> None:
        """One FLV tag from the publisher; raises MediaError for media we cannot carry."""
        self.bytes_in += len(payload)
        self.stream.bytes_in += len(payload)
        self.ingest.write(tag_type, timestamp, payload)

    def finish(self, unpublished: bool = False) -> None:
        """The publisher is gone (or was cut off): flush its media and tell the service.
        ``unpublished``: it stopped on purpose, so the stream ends without a grace period."""
        if not self.finished:
            self.finished = True
            self.unpublished = unpublished
            self.ingest.finish()
            self.readers = []  # the readers' callbacks refer back to this session
            self.on_finished(self)


@dataclass(eq=False)
class LiveStream:
    name: str
    owner: User
    timeline: Timeline
    started_at: float = field(default_factory=time.time)
    state: State = "live"
    tracks: list[TrackInfo] = field(default_factory=list)
    session: PublishSession | None = None
    bytes_in: int = 0
    _rate_sample: tuple[float, int] = (0.0, 0)
    bitrate_kbps: float = 0.0
    grace: asyncio.TimerHandle | None = None
    snapshots: Snapshots | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    relay: WebRtcRelay | None = None
    ladder: Ladder | None = None
    hls_viewers: dict[str, float] = field(default_factory=dict)  # client key -> last seen
    viewer_timeout: float = 10.0

    def saw_hls_viewer(self, key: str) -> None:
        self.hls_viewers[key] = time.monotonic()

    def viewers(self) -> dict[str, int]:
        """HLS viewers seen recently (by address and user agent) and WebRTC sessions."""
        cutoff = time.monotonic() - self.viewer_timeout
        for key in [k for k, seen in self.hls_viewers.items() if seen < cutoff]:
            del self.hls_viewers[key]
        webrtc = len(self.relay.viewers) if self.relay else 0
        return {
            "hls": len(self.hls_viewers),
            "webrtc": webrtc,
            "total": len(self.hls_viewers) + webrtc,
        }

    def sample_stats(self) -> None:
        """Refresh bitrate and per-output drop counts."""
        self.sample_bitrate()
        if self.session is not None:
            for reader in self.session.readers:
                self.dropped[reader.name] = reader.dropped
            self.dropped["muxer"] = self.session.ingest.dropped

    def sample_bitrate(self) -> float:
        """Ingest bitrate since the previous sample (kbit/s)."""
        now = time.monotonic()
        then, count = self._rate_sample
        if then and now > then:
            self.bitrate_kbps = (self.bytes_in - count) * 8 / 1000 / (now - then)
        self._rate_sample = (now, self.bytes_in)
        return self.bitrate_kbps

    def public(self) -> dict[str, Any]:
        video = next((t for t in self.tracks if t.kind == "video"), None)
        audio = next((t for t in self.tracks if t.kind == "audio"), None)
        return {
            "name": self.name,
            "owner": {"id": self.owner.id, "username": self.owner.username},
            "state": self.state,
            "started_at": self.started_at,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "video": video.public() if video else None,
            "audio": audio.public() if audio else None,
            "bitrate_kbps": round(self.bitrate_kbps, 1),
            "hls": f"/live/{self.name}/index.m3u8",
            # With the bitrate ladder: the source and its renditions (normal-latency HLS).
            "master": f"/live/{self.name}/master.m3u8" if self.ladder else None,
            "thumbnail": (
                f"/live/{self.name}/thumbnail.jpg"
                if self.snapshots and self.snapshots.available
                else None
            ),
            "dropped_packets": dict(self.dropped),
            "viewers": self.viewers(),
        }


@dataclass(frozen=True)
class StreamOptions:
    """Per-stream switches: record (and in which format), and run the bitrate ladder."""

    record: bool
    format: Format
    ladder: bool

    def public(self, stream: str) -> dict[str, Any]:
        return {
            "stream": stream,
            "record": self.record,
            "format": self.format,
            "ladder": self.ladder,
        }


class LiveService:
    """The registry of live streams, shared by the RTMP server and the HTTP routes."""

    def __init__(
        self,
        settings: LiveSettings,
        auth: Auth,
        bus: EventBus,
        audit: Audit,
        store: Store,
        data_dir: Path,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.bus = bus
        self.audit = audit
        self.store = store
        self.recordings_dir = data_dir / "recordings"
        self.ladders_dir = data_dir / "live"
        self.streams: dict[str, LiveStream] = {}
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    async def close(self, timeout: float = 30.0) -> None:
        """Shutdown: flush every session, end every stream, finish recordings (bounded).

        Ending a stream puts EXT-X-ENDLIST in its playlist and answers the viewers blocked on
        it, so this runs while the HTTP server still finishes its in-flight requests."""
        self.closing = True
        for stream in list(self.streams.values()):
            if stream.session is not None:
                stream.session.kick("server shutting down")
                stream.session.finish()
        await self._drain(timeout)
        for stream in list(self.streams.values()):
            if stream.grace is not None:
                stream.grace.cancel()
            await self._end(stream, "shutdown")
        await self._drain(timeout)  # recordings being finalised, webhooks
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    async def _drain(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks and (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)

    # --- publishing -----------------------------------------------------------------------

    async def admit_publisher(
        self, key: str, peer: str, kick: Callable[[str], None]
    ) -> PublishSession:
        """Authorise a publisher and attach it to its stream (new, reconnecting or taken over)."""
        if self.closing:
            raise PublishRefused("NetStream.Publish.Denied", "the server is shutting down")
        owner = await self.auth.resolve_stream_key(key)
        if owner is None:
            await self.audit.record("stream.publish_refused", ip=peer, reason="bad_key")
            raise PublishRefused("NetStream.Publish.BadName", "unknown stream key")
        user, name = owner
        if user.banned:
            await self.audit.record(
                "stream.publish_refused", actor_id=user.id, target=name, ip=peer, reason="banned"
            )
            raise PublishRefused("NetStream.Publish.Denied", "the account is banned")
        stream = self.streams.get(name)
        if stream is not None and stream.session is not None:
            if not self.settings.takeover:
                await self.audit.record(
                    "stream.publish_refused", actor_id=user.id, target=name, ip=peer, reason="busy"
                )
                raise PublishRefused("NetStream.Publish.BadName", "the stream is already live")
            stream.session.kick("taken over by a new publisher")
            stream.session = None
        await self._webhook(self.settings.on_publish_url, "publish", name, user, peer, refuse=True)
        resumed = stream is not None and stream.state != "ended"
        if stream is None or stream.state == "ended":
            stream = LiveStream(
                name,
                user,
                Timeline(
                    self.settings.segment_seconds,
                    self.settings.part_seconds,
                    self.settings.window_segments,
                ),
                viewer_timeout=self.settings.viewer_timeout_seconds,
            )
            self.streams[name] = stream
        if stream.grace is not None:
            stream.grace.cancel()
            stream.grace = None
        stream.state = "live"
        options = await self.stream_options(name)
        session = PublishSession(stream, peer, kick, lambda s: self._spawn(self.unpublished(s)))
        readers = self._readers(session, ladder=options.ladder)
        session.ingest = Ingest(
            self._callbacks(session), self.settings.part_seconds, readers, self.settings.muxer
        )
        stream.session = session
        if options.record:
            session.recording = Recording(self.recordings_dir, name, user.id, options.format)
        await self.audit.record("stream.published", actor_id=user.id, target=name, ip=peer)
        event = "stream.resumed" if resumed else "stream.started"
        await self.bus.fire(event, {"stream": name, "owner_id": user.id, "owner": user.username})
        log.info(event.replace("stream.", "live."), stream=name, user=user.username, peer=peer)
        return session

    def _readers(self, session: PublishSession, ladder: bool) -> list[Reader]:
        """The secondary outputs of a publish session."""
        stream = session.stream
        readers: list[Reader] = []
        if self.settings.thumbnail_seconds > 0:
            if stream.snapshots is None:
                stream.snapshots = Snapshots(
                    self.settings.thumbnail_seconds, self.settings.thumbnail_width
                )
            readers.append(stream.snapshots)
        if stream.relay is not None:
            readers.append(stream.relay)
        stream.ladder = None
        if self.settings.ladder and ladder:
            stream.ladder = Ladder(
                list(self.settings.ladder),
                self.ladders_dir / stream.name / "ladder",
                self.settings.segment_seconds,
                stream.timeline.epoch,
            )
            readers.append(stream.ladder)
        session.readers = readers
        return readers

    def relay(self, stream: LiveStream) -> WebRtcRelay:
        """The stream's WebRTC relay, made (and attached to the pipeline) on first use."""
        if stream.relay is None:
            stream.relay = WebRtcRelay(
                asyncio.get_running_loop(),
                lambda: any(t.bframes for t in stream.tracks),  # read per packet: may come late
            )
            if stream.session is not None:
                stream.session.readers.append(stream.relay)
        return stream.relay

    def _callbacks(self, session: PublishSession) -> IngestCallbacks:
        stream = session.stream

        def current() -> bool:
            return stream.session is session

        def on_tracks(tracks: list[TrackInfo]) -> None:
            if current():
                stream.tracks = tracks

        def on_init(data: bytes) -> None:
            if current():
                stream.timeline.new_init(data)
                if session.recording is not None:
                    session.recording.init(data)

        def on_fragment(fragment: Fragment) -> None:
            if current():
                stream.timeline.add(fragment)
                if session.recording is not None:
                    session.recording.fragment(fragment.data)

        return IngestCallbacks(on_tracks, on_init, on_fragment)

    async def unpublished(self, session: PublishSession, error: str | None = None) -> None:
        """The publisher's media ended: end the stream if it unpublished on purpose, else wait
        for a reconnect, then end it."""
        stream = session.stream
        if session.recording is not None:
            self._spawn(session.recording.finish(self.store, self.bus))
        if stream.session is not session:
            return  # taken over: the stream lives on
        stream.session = None
        if session.unpublished:
            await self._end(stream, "unpublished")
            return
        stream.state = "reconnecting"
        log.info("live.publisher_gone", stream=stream.name, error=error)
        await self.bus.fire("stream.interrupted", {"stream": stream.name, "error": error})
        loop = asyncio.get_running_loop()
        stream.grace = loop.call_later(
            self.settings.grace_seconds,
            lambda: self._spawn(self._end(stream, "publisher left")),
        )

    async def _end(self, stream: LiveStream, reason: str) -> None:
        stream.grace = None  # its callback refers to the stream
        if stream.state == "ended" or stream.session is not None:
            return
        stream.state = "ended"
        stream.timeline.end()
        if stream.relay is not None:
            for viewer in list(stream.relay.viewers.values()):
                await viewer.pc.close()
            stream.relay.close()
        # Late viewers may still finish the playlist (it now has EXT-X-ENDLIST), then it goes.
        linger = self.settings.window_segments * self.settings.segment_seconds
        asyncio.get_running_loop().call_later(linger, self._forget, stream)
        duration = round(time.time() - stream.started_at, 1)
        await self.bus.fire(
            "stream.ended",
            {
                "stream": stream.name,
                "owner_id": stream.owner.id,
                "reason": reason,
                "duration_seconds": duration,
            },
        )
        await self._webhook(
            self.settings.on_unpublish_url, "unpublish", stream.name, stream.owner, "", refuse=False
        )
        log.info("live.ended", stream=stream.name, reason=reason, seconds=duration)

    async def stream_options(self, stream: str) -> StreamOptions:
        """A stream's own options (PUT /api/live/settings/<stream>), else the defaults."""
        row = await self.store.fetchone(
            "SELECT record, format, ladder FROM live_stream_settings WHERE stream = ?", stream
        )
        if row is None:
            return StreamOptions(self.settings.record, self.settings.record_format, True)
        return StreamOptions(bool(row["record"]), row["format"], bool(row["ladder"]))

    def _forget(self, stream: LiveStream) -> None:
        if self.streams.get(stream.name) is stream:
            del self.streams[stream.name]

    def live_streams(self) -> list[LiveStream]:
        """Streams that are live or waiting for their publisher, oldest first."""
        active = [s for s in self.streams.values() if s.state != "ended"]
        return sorted(active, key=lambda s: s.started_at)

    def kick(self, name: str, reason: str) -> bool:
        """Disconnect a stream's publisher (admin or owner action)."""
        stream = self.streams.get(name)
        if stream is None or stream.session is None:
            return False
        stream.session.kick(reason)
        return True

    # --- helpers --------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _webhook(
        self, url: str, event: str, name: str, user: User, ip: str, refuse: bool
    ) -> None:
        if not url:
            return
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_seconds)
            )
        body = {
            "event": event,
            "stream": name,
            "user_id": user.id,
            "username": user.username,
            "ip": ip,
            "time": time.time(),
        }
        try:
            async with self._http.post(url, json=body) as resp:
                ok = resp.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("live.webhook_failed", url=url, event=event, error=str(exc))
            ok = False
        if refuse and not ok:
            raise PublishRefused("NetStream.Publish.Denied", "refused by the on_publish webhook")
