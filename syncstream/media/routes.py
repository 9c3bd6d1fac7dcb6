"""HTTP side of live streaming: HLS / LL-HLS delivery and the live-streams API."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from ..api import Api, Call, parse_natural
from ..errors import Problem
from .hls.timeline import Timeline
from .live import LiveService, LiveStream
from .mp4 import read_media_info
from .webrtc.whep import register_whep_routes

STATIC = Path(__file__).parent / "static"
# hls.js runs its transmuxer in a blob: worker and feeds the video element through blob: URLs.
WATCH_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MEDIA_TYPE = "video/mp4"
NAME = r"[a-z0-9][a-z0-9_.-]{0,31}"
# <kind>-<epoch>-<number>: the epoch (the timeline's start) keeps every session's names apart.
PART_RE = re.compile(r"^part-([0-9a-z]{1,12})-(\d{1,12})\.m4s$")
SEGMENT_RE = re.compile(r"^seg-([0-9a-z]{1,12})-(\d{1,15})\.m4s$")
INIT_RE = re.compile(r"^init-([0-9a-z]{1,12})-(\d{1,6})\.mp4$")
PLAYLIST_HEADERS = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
# FFmpeg's names for a rendition: init-<epoch>-<rendition>.mp4, seg-<epoch>-<n>.m4s.
LADDER_FILE_RE = re.compile(
    r"^(index\.m3u8|init-[0-9a-z]{1,12}-[a-z0-9_-]{1,16}\.mp4|seg-[0-9a-z]{1,12}-\d{1,9}\.m4s)$"
)


def _stream(service: LiveService, name: str) -> LiveStream:
    stream = service.streams.get(name)
    if stream is None:
        raise Problem(404, "stream_not_found", f"no live stream named {name!r}")
    return stream


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = parse_natural(raw, 10**12 - 1)
    if value is None:
        raise Problem(400, "invalid_parameter", f"{name} must be a non-negative integer")
    return value


def media_headers(max_age: int) -> dict[str, str]:
    return {
        "Content-Type": MEDIA_TYPE,
        "Cache-Control": f"public, max-age={max_age}",
        "Access-Control-Allow-Origin": "*",
    }


# What the HTTP routes and the fast path (hls/fastpath.py) both decide, in one place.
PART_MAX_AGE, SEGMENT_MAX_AGE, INIT_MAX_AGE = 60, 60, 300


def msn_too_far(timeline: Timeline, msn: int) -> bool:
    return msn > timeline.last_msn() + 2


def part_too_far(timeline: Timeline, number: int) -> bool:
    ahead = 2 * math.ceil(timeline.target / timeline.part_target) + 2  # about two segments
    return number > timeline.next_part + ahead


def wait_timeout(timeline: Timeline) -> float:
    return timeline.target * 3


def not_yet() -> Problem:
    return Problem(503, "not_yet_available", "the requested part did not appear in time")


def stream_starting() -> Problem:
    return Problem(404, "stream_starting", "the stream has no media yet; retry shortly")


def part_not_found() -> Problem:
    return Problem(404, "part_not_found", "that part is not (or no longer) available")


def _media(data: bytes, max_age: int) -> web.Response:
    """Media straight from memory (the bytes object is written as is, never copied here)."""
    return web.Response(body=data, headers=media_headers(max_age))


async def _wait(timeline: Timeline, msn: int, part: int | None) -> None:
    """Block until a part/segment exists (LL-HLS blocking requests), or fail cleanly."""
    if msn_too_far(timeline, msn):
        raise Problem(400, "too_far_ahead", "that segment is more than two segments in the future")
    if not await timeline.wait_for(msn, part, timeout=wait_timeout(timeline)):
        raise not_yet()


async def _wait_part(timeline: Timeline, number: int) -> None:
    """Block until the numbered part exists (the preload hint), or fail cleanly."""
    if part_too_far(timeline, number):
        raise Problem(400, "too_far_ahead", "that part is more than two segments in the future")
    if not await timeline.wait_for_part(number, timeout=wait_timeout(timeline)):
        raise not_yet()


def register_live_routes(app: web.Application, api: Api, service: LiveService) -> None:
    async def playlist(request: web.Request) -> web.Response:
        stream = _stream(service, request.match_info["name"])
        msn, part = _int_param(request, "_HLS_msn"), _int_param(request, "_HLS_part")
        if part is not None and msn is None:
            raise Problem(400, "invalid_parameter", "_HLS_part needs _HLS_msn")
        stream.saw_hls_viewer(f"{request.remote}|{request.headers.get('User-Agent', '')}")
        if msn is not None:
            await _wait(stream.timeline, msn, part)
        if not stream.timeline.segments:
            raise stream_starting()
        return web.Response(
            body=stream.timeline.playlist(), content_type=PLAYLIST_TYPE, headers=PLAYLIST_HEADERS
        )

    async def media(request: web.Request) -> web.Response:
        stream = _stream(service, request.match_info["name"])
        timeline, file = stream.timeline, request.match_info["file"]
        if (match := PART_RE.match(file)) and match.group(1) == timeline.epoch:
            number = int(match.group(2))
            if number >= timeline.next_part:
                await _wait_part(timeline, number)  # the preload hint: block until it exists
            part = timeline.part(number)
            if part is None:
                raise part_not_found()
            return _media(part.data, PART_MAX_AGE)
        if (match := SEGMENT_RE.match(file)) and match.group(1) == timeline.epoch:
            segment = timeline.segment(int(match.group(2)))
            if segment is None or not segment.complete:
                raise Problem(
                    404, "segment_not_found", "that segment is not (or no longer) available"
                )
            return _media(segment.data(), SEGMENT_MAX_AGE)
        if file == "thumbnail.jpg":
            jpeg = await stream.snapshots.jpeg() if stream.snapshots is not None else None
            if jpeg is None:
                raise Problem(404, "thumbnail_pending", "no snapshot yet; retry in a few seconds")
            max_age = max(1, int(service.settings.thumbnail_seconds))
            return web.Response(
                body=jpeg,
                content_type="image/jpeg",
                headers={
                    "Cache-Control": f"public, max-age={max_age}",
                    "Access-Control-Allow-Origin": "*",
                },
            )
        if (match := INIT_RE.match(file)) and match.group(1) == timeline.epoch:
            init = timeline.inits.get(int(match.group(2)))
            if init is None:
                raise Problem(404, "init_not_found", "no such initialisation section")
            return _media(init, INIT_MAX_AGE)
        raise Problem(404, "not_found", "no such file")

    async def watch(request: web.Request) -> web.FileResponse:
        """The watch page (the stream's name is read from the URL by the page's script)."""
        return web.FileResponse(
            STATIC / "watch.html", headers={"Content-Security-Policy": WATCH_CSP}
        )

    async def master(request: web.Request) -> web.Response:
        stream = _stream(service, request.match_info["name"])
        if stream.ladder is None:
            raise Problem(
                404, "no_ladder",
                "the bitrate ladder is off for this stream (PUT /api/live/settings/<stream>)"
                if service.settings.ladder
                else "this server has no bitrate ladder (live.ladder)",
            )  # fmt: skip
        inits = stream.timeline.inits
        source = read_media_info(inits[max(inits)]) if inits else None
        text = stream.ladder.master_playlist(int(stream.sample_bitrate() * 1000), source)
        return web.Response(text=text, content_type=PLAYLIST_TYPE, headers=PLAYLIST_HEADERS)

    async def end_streams(app: web.Application) -> None:
        """On shutdown (SIGTERM), before in-flight requests are awaited: live playlists get
        EXT-X-ENDLIST, and viewers blocked on the next part are answered with it."""
        await service.close()

    app.on_shutdown.append(end_streams)
    app.router.add_get(f"/live/{{name:{NAME}}}/index.m3u8", playlist)
    app.router.add_get(f"/live/{{name:{NAME}}}/master.m3u8", master)
    app.router.add_get(f"/live/{{name:{NAME}}}/{{file}}", media)
    app.router.add_get(f"/watch/{{name:{NAME}}}", watch)
    app.router.add_static("/static/live", STATIC)

    async def rendition(request: web.Request) -> web.StreamResponse:
        stream = _stream(service, request.match_info["name"])
        names = {r.name for r in service.settings.ladder}
        rung, file = request.match_info["rendition"], request.match_info["file"]
        if stream.ladder is None or rung not in names or not LADDER_FILE_RE.match(file):
            raise Problem(404, "not_found", "no such rendition file")
        path = stream.ladder.directory / rung / file
        if not path.is_file():
            raise Problem(404, "not_found", "no such rendition file (yet)")
        playlist = file.endswith(".m3u8")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": PLAYLIST_TYPE if playlist else MEDIA_TYPE,
                "Cache-Control": "no-cache" if playlist else "public, max-age=60",
                "Access-Control-Allow-Origin": "*",
            },
        )

    app.router.add_get(f"/live/{{name:{NAME}}}/ladder/{{rendition}}/{{file}}", rendition)
    register_whep_routes(app, service, NAME)
    register_recording_routes(api, service)

    @api.route("GET", "/api/live/streams", auth="public", tags=("live",))
    async def list_streams(call: Call[None]) -> dict[str, Any]:
        """Live streams with codec, resolution, bitrate and uptime."""
        streams = service.live_streams()
        for stream in streams:
            stream.sample_stats()
        return {"streams": [s.public() for s in streams]}

    @api.route("GET", "/api/live/streams/{name}", auth="public", tags=("live",))
    async def get_stream(call: Call[None]) -> dict[str, Any]:
        """One live stream."""
        stream = _stream(service, call.param("name"))
        stream.sample_stats()
        return stream.public()

    @api.route("DELETE", "/api/live/streams/{name}", tags=("live",))
    async def kick(call: Call[None]) -> None:
        """Disconnect the publisher (the stream's owner or an admin)."""
        stream = _stream(service, call.param("name"))
        if stream.owner.id != call.user.id and not call.user.is_admin:
            raise Problem(403, "forbidden", "only the owner or an admin can end this stream")
        service.kick(stream.name, f"ended by {call.user.username}")
        await service.audit.record(
            "stream.kicked", actor_id=call.user.id, target=stream.name, ip=call.ip
        )


class StreamSettingsIn(BaseModel):
    record: bool
    format: Literal["mp4", "ts"] = "mp4"
    ladder: bool = Field(True, description="Run the bitrate ladder (when live.ladder is set)")


class RecordingsQuery(BaseModel):
    stream: str | None = Field(None, pattern=f"^{NAME}$")
    limit: int = Field(50, ge=1, le=500)


async def _owned(service: LiveService, call: Call[Any], name: str) -> str:
    """The stream name if the caller owns it (or is an admin)."""
    owner = await service.store.fetchval("SELECT user_id FROM stream_keys WHERE stream = ?", name)
    if owner is None:
        raise Problem(404, "stream_not_found", f"no stream named {name!r} (create its key first)")
    if owner != call.user.id and not call.user.is_admin:
        raise Problem(403, "forbidden", "only the stream's owner or an admin may do this")
    return name


def register_recording_routes(api: Api, service: LiveService) -> None:
    @api.route("GET", "/api/live/settings/{name}", tags=("live",))
    async def get_settings(call: Call[None]) -> dict[str, Any]:
        """A stream's recording and ladder switches (owner or admin)."""
        name = await _owned(service, call, call.param("name"))
        return (await service.stream_options(name)).public(name)

    @api.route("PUT", "/api/live/settings/{name}", body=StreamSettingsIn, tags=("live",))
    async def put_settings(call: Call[StreamSettingsIn]) -> dict[str, Any]:
        """Set a stream's recording and ladder switches (from its next publish)."""
        name = await _owned(service, call, call.param("name"))
        await service.store.execute(
            "INSERT INTO live_stream_settings (stream, record, format, ladder) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (stream) DO UPDATE"
            " SET record = excluded.record, format = excluded.format, ladder = excluded.ladder",
            name,
            int(call.body.record),
            call.body.format,
            int(call.body.ladder),
        )
        await service.audit.record(
            "stream.settings_changed",
            actor_id=call.user.id,
            target=name,
            record=call.body.record,
            format=call.body.format,
            ladder=call.body.ladder,
        )
        return (await service.stream_options(name)).public(name)

    @api.route("GET", "/api/live/recordings", query=RecordingsQuery, tags=("live",))
    async def recordings(call: Call[None]) -> dict[str, Any]:
        """The caller's recordings, newest first (admins see everyone's)."""
        q: RecordingsQuery = call.query
        where, args = [], []
        if not call.user.is_admin:
            where.append("owner_id = ?")
            args.append(call.user.id)
        if q.stream:
            where.append("stream = ?")
            args.append(q.stream)
        sql = (
            "SELECT id, stream, owner_id, format, started_at, ended_at, size, file_id"
            " FROM live_recordings"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await service.store.fetchall(
            sql + " ORDER BY started_at DESC LIMIT ?", *args, q.limit
        )
        return {"recordings": rows}
