"""Live streaming end to end: real ffmpeg publishing RTMP, HLS / LL-HLS read back over HTTP."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

from syncstream.bus import Event
from syncstream.media.rtmp import amf
from syncstream.media.rtmp.chunks import COMMAND_AMF0, VIDEO, encode_message

from .browser import CHROMIUM, chromium_page
from .support import Client, eventually, running

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="needs ffmpeg (apt-get install ffmpeg)"
    ),
]


class Live:
    """A running server with RTMP, an account with a stream key, and ffmpeg helpers."""

    def __init__(self, client: Client, rtmp_port: int) -> None:
        self.c = client
        self.rtmp_port = rtmp_port
        self.events: list[Event] = []
        assert client.server is not None and client.server.core is not None
        self.core = client.server.core
        self.core.bus.listen("stream.*", self.events.append)

    async def account(self, name: str) -> tuple[str, str]:
        token = await self.c.register(name)
        _, body, _ = await self.c.call("POST", "/api/auth/stream-key", token, json={})
        return token, body["key"]

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    async def push(self, key: str, seconds: float) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-t",
            str(seconds),
            "-f",
            "flv",
            self.url(key),
            stderr=asyncio.subprocess.PIPE,
        )

    async def playlist(self, name: str, query: str = "") -> str:
        status, text, _ = await self.c.call("GET", f"/live/{name}/index.m3u8{query}")
        assert status == 200, text
        return str(text)

    async def wait_live(self, name: str, timeout: float = 15.0) -> str:
        for _ in range(int(timeout * 10)):
            status, text, _ = await self.c.call("GET", f"/live/{name}/index.m3u8")
            if status == 200 and "seg-" in str(text):
                return str(text)
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name} never had a complete segment")

    async def thumbnail(self, name: str) -> bytes:
        for _ in range(100):
            async with self.c.session.get(self.c.url(f"/live/{name}/thumbnail.jpg")) as resp:
                if resp.status == 200:
                    assert resp.content_type == "image/jpeg"
                    return await resp.read()
                assert (await resp.json())["code"] == "thumbnail_pending"
            await asyncio.sleep(0.1)
        raise AssertionError("no thumbnail")

    async def fetch(self, name: str, file: str) -> bytes:
        async with self.c.session.get(self.c.url(f"/live/{name}/{file}")) as resp:
            assert resp.status == 200, (file, await resp.text())
            return await resp.read()


@asynccontextmanager
async def live_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[Live]:
    """A server with RTMP on a free port (plus ``overrides``, dotted config keys)."""
    settings = {"rtmp.enabled": True, "rtmp.host": "127.0.0.1", "rtmp.port": 0, **overrides}
    async with running(tmp_path, **settings) as client:
        core = client.server.core if client.server else None
        rtmp = core.media.rtmp if core and core.media else None
        assert rtmp is not None
        yield Live(client, rtmp.port)  # the port the server bound: no race with others


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_server(
        tmp_path, **{"live.grace_seconds": 2.0, "live.stats_seconds": 0.3}
    ) as server:
        yield server


def probe(data: bytes) -> dict[str, Any]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "video": (
                video.codec_context.name,
                video.codec_context.width,
                video.codec_context.height,
            ),
            "audio": (audio.codec_context.name, audio.codec_context.sample_rate),
            "frames": frames,
        }


async def test_publish_then_read_hls_back(live: Live) -> None:
    _, key = await live.account("alice")
    ffmpeg = await live.push(key, 6)
    await live.wait_live("alice")
    _, streams, _ = await live.c.call("GET", "/api/live/streams")
    (info,) = streams["streams"]
    assert info["name"] == "alice" and info["state"] == "live"
    assert info["video"] == {
        "kind": "video",
        "codec": "h264",
        "width": 320,
        "height": 240,
        "bframes": False,  # -tune zerolatency: WebRTC viewers get it passed through
    }
    assert info["audio"]["codec"] == "aac" and info["audio"]["sample_rate"] == 48000
    # Stats over the realtime gateway, counting this HLS viewer.
    watcher = await live.c.ws(await live.c.register("watcher"))
    assert (await watcher.request("subscribe", "live:alice"))["op"] == "reply"
    await live.playlist("alice")
    (stats,) = await watcher.events(1, ephemeral=True)
    assert stats["data"]["name"] == "alice" and stats["data"]["viewers"]["hls"] >= 1
    assert stats["data"]["bitrate_kbps"] > 0
    jpeg = await live.thumbnail("alice")
    with av.open(io.BytesIO(jpeg), format="mjpeg") as image:
        picture = next(image.decode(video=0))
        assert (picture.width, picture.height) == (320, 240)
    assert (await ffmpeg.wait()) == 0
    streams = live.core.media.live.streams  # type: ignore[union-attr]
    # The publisher's end closes the last segment.
    await eventually(lambda: streams["alice"].state != "live", "the publisher's end is seen")
    text = await live.playlist("alice")
    (init_uri,) = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)
    init = await live.fetch("alice", init_uri)
    media = b""
    for seg in re.findall(r"^seg-[0-9a-z]+-\d+\.m4s$", text, re.M):
        media += await live.fetch("alice", seg)
    # The segment still open when the publisher left is available as parts.
    tail = text.rsplit("seg-", 1)[-1]
    for part in re.findall(r'^#EXT-X-PART:.*URI="(part-[0-9a-z]+-\d+\.m4s)"', tail, re.M):
        media += await live.fetch("alice", part)
    found = probe(init + media)
    assert found["video"] == ("h264", 320, 240)
    assert found["audio"] == ("aac", 48000)
    assert 170 <= found["frames"] <= 182  # 6 s at 30 fps, nothing re-encoded or lost
    # ffmpeg unpublished at the end of its input: the stream ended, no grace period.
    assert [e.type for e in live.events][:2] == ["stream.started", "stream.ended"]


def parse_playlist(text: str) -> dict[str, Any]:
    lines = text.strip().splitlines()
    assert lines[0] == "#EXTM3U"
    tags = {
        line.split(":", 1)[0]: line.split(":", 1)[1]
        for line in lines
        if ":" in line
        and line.startswith("#EXT-X-")
        and not line.startswith(
            ("#EXT-X-PART:", "#EXT-X-PROGRAM", "#EXT-X-MAP", "#EXT-X-DISCONTINUITY")
        )
    }
    segments: list[dict[str, Any]] = []
    parts: list[tuple[float, str, bool]] = []
    for line in lines:
        if line.startswith("#EXT-X-PART:"):
            duration = float(re.search(r"DURATION=([\d.]+)", line).group(1))  # type: ignore[union-attr]
            uri = re.search(r'URI="([^"]+)"', line).group(1)  # type: ignore[union-attr]
            parts.append((duration, uri, "INDEPENDENT=YES" in line))
        elif line.startswith("#EXTINF:"):
            segments.append({"duration": float(line[8:].rstrip(",")), "parts": parts})
            parts = []
        elif line.startswith("seg-"):
            segments[-1]["uri"] = line
    return {"tags": tags, "segments": segments, "open_parts": parts}


async def test_ll_hls_playlist_follows_the_spec(live: Live) -> None:
    _, key = await live.account("bob")
    ffmpeg = await live.push(key, 8)
    try:
        text = await live.wait_live("bob")
        doc = parse_playlist(text)
        tags = doc["tags"]
        assert int(tags["#EXT-X-VERSION"]) >= 9
        assert "CAN-BLOCK-RELOAD=YES" in tags["#EXT-X-SERVER-CONTROL"]
        part_target = float(tags["#EXT-X-PART-INF"].split("=")[1])
        hold_back = float(
            re.search(r"PART-HOLD-BACK=([\d.]+)", tags["#EXT-X-SERVER-CONTROL"]).group(1)
        )  # type: ignore[union-attr]
        assert hold_back >= 2 * part_target  # RFC 8216bis: at least twice the part target
        target = int(tags["#EXT-X-TARGETDURATION"])
        for segment in doc["segments"]:
            assert round(segment["duration"]) <= target
            if segment["parts"]:
                assert abs(sum(p[0] for p in segment["parts"]) - segment["duration"]) < 0.01
                assert segment["parts"][0][2], "segments start with an independent part"
        for duration, _, _ in [p for s in doc["segments"] for p in s["parts"]] + doc["open_parts"]:
            assert duration <= part_target * 1.5
        hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text)
        assert hint, "a live playlist announces the next part"
        # Blocking playlist reload for the part after the last one listed (RFC 8216bis 6.2.5.2):
        # returns once the hinted part exists, and lists it.
        msn = int(tags["#EXT-X-MEDIA-SEQUENCE"]) + len(doc["segments"])
        part = len(doc["open_parts"])
        blocked = await live.playlist("bob", f"?_HLS_msn={msn}&_HLS_part={part}")
        assert f'URI="{hint.group(1)}"' in blocked
        # Blocking preload-hint part request: the next part is served as soon as it exists.
        hint2 = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', blocked)
        assert hint2 and hint2.group(1) != hint.group(1)
        data = await live.fetch("bob", hint2.group(1))
        assert data[4:8] == b"moof"
        # Bad blocking requests are refused with a problem, not held.
        for query, code in (
            (f"?_HLS_msn={msn + 50}", "too_far_ahead"),
            ("?_HLS_part=1", "invalid_parameter"),
            ("?_HLS_msn=-1", "invalid_parameter"),
            ("?_HLS_msn=abc", "invalid_parameter"),
        ):
            status, body, _ = await live.c.call("GET", f"/live/bob/index.m3u8{query}")
            assert status == 400 and body["code"] == code, (query, body)
        status, _, resp = await live.c.call("GET", "/live/bob/index.m3u8")
        assert resp.content_type == "application/vnd.apple.mpegurl"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)  # type: ignore[union-attr]
        async with live.c.session.get(live.c.url(f"/live/bob/{init_uri}")) as init:
            assert init.content_type == "video/mp4" and "max-age" in init.headers["Cache-Control"]
    finally:
        ffmpeg.kill()
        await ffmpeg.wait()


async def test_unknown_streams_and_files(live: Live) -> None:
    for path, code in (
        ("/live/nobody/index.m3u8", "stream_not_found"),
        ("/live/nobody/seg-a-1.m4s", "stream_not_found"),
        ("/api/live/streams/nobody", "stream_not_found"),
    ):
        status, body, _ = await live.c.call("GET", path)
        assert status == 404 and body["code"] == code
    _, key = await live.account("carl")
    ffmpeg = await live.push(key, 4)
    text = await live.wait_live("carl")
    epoch = re.search(r'#EXT-X-MAP:URI="init-([0-9a-z]+)-0\.mp4"', text).group(1)  # type: ignore[union-attr]
    for file, code in (
        (f"seg-{epoch}-999.m4s", "segment_not_found"),
        (f"part-{epoch}-1{'0' * 11}.m4s", "too_far_ahead"),
        (f"init-{epoch}-7.mp4", "init_not_found"),
        ("seg-zz-999.m4s", "not_found"),  # another session's name
        ("seg-999.m4s", "not_found"),
        ("../../etc/passwd", "not_found"),
        ("nope.txt", "not_found"),
    ):
        status, body, _ = await live.c.call("GET", f"/live/carl/{file}")
        assert status in (400, 404) and body["code"] == code, (file, body)
    await ffmpeg.wait()


async def test_wrong_key_and_second_publisher_are_refused(live: Live) -> None:
    _, key = await live.account("dora")
    bad = await live.push("live_not-a-real-key", 2)
    _, err = await bad.communicate()
    assert bad.returncode != 0
    first = await live.push(key, 6)
    await live.wait_live("dora")
    second = await live.push(key, 2)
    _, err = await second.communicate()
    assert second.returncode != 0, err
    assert first.returncode is None, "the first publisher keeps streaming"
    await first.wait()
    reasons = [
        r["data"]["reason"] for r in await live.core.audit.query(action="stream.publish_refused")
    ]
    assert sorted(reasons) == ["bad_key", "busy"]


async def rtmp_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x03" + bytes(1536))
    await reader.readexactly(1 + 1536 * 2)
    writer.write(bytes(1536))
    return reader, writer


def command(*values: Any, stream_id: int = 0) -> bytes:
    return encode_message(3, COMMAND_AMF0, stream_id, amf.encode(*values), 128)


async def test_garbage_truncation_and_vanishing_publishers(live: Live) -> None:
    threads_before = threading.active_count()
    # Garbage instead of a handshake, and a handshake cut short.
    for junk in (b"GET / HTTP/1.1\r\n\r\n" * 200, b"\x03" + bytes(100)):
        reader, writer = await asyncio.open_connection("127.0.0.1", live.rtmp_port)
        writer.write(junk)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 15) == b""  # refused and closed
        writer.close()
    # A publisher that vanishes in the middle of a chunk.
    _, key = await live.account("eve")
    reader, writer = await rtmp_client(live.rtmp_port)
    writer.write(command("connect", 1, {"app": "live", "tcUrl": "rtmp://x/live"}))
    writer.write(command("createStream", 2, None))
    writer.write(command("publish", 3, None, key, "live", stream_id=1))
    await writer.drain()
    streams = live.core.media.live.streams  # type: ignore[union-attr]
    await eventually(lambda: "eve" in streams and streams["eve"].state == "live", "eve is live")
    video = encode_message(4, VIDEO, 1, b"\x17\x00" + bytes(5000), 128)
    writer.write(video[:700])  # then gone mid-message
    await writer.drain()
    writer.transport.abort()
    streams = live.core.media.live.streams  # type: ignore[union-attr]
    for _ in range(100):
        if streams["eve"].state == "ended":
            break
        await asyncio.sleep(0.05)
    assert streams["eve"].state == "ended"  # the grace period is over
    _, listed, _ = await live.c.call("GET", "/api/live/streams")
    assert "eve" not in [s["name"] for s in listed["streams"]]
    assert [e.type for e in live.events if e.data.get("stream") == "eve"] == [
        "stream.started",
        "stream.interrupted",
        "stream.ended",
    ]
    # Nothing leaked, and the daemon still serves a real publisher.
    await eventually(
        lambda: threading.active_count() <= threads_before + 1, "the stream's threads end"
    )
    _, key2 = await live.account("fred")
    ffmpeg = await live.push(key2, 3)
    await live.wait_live("fred")
    assert await ffmpeg.wait() == 0


async def test_reconnect_within_grace_continues_the_playlist(live: Live) -> None:
    _, key = await live.account("gina")
    first = await live.push(key, 30)
    await live.wait_live("gina")
    first.kill()  # dropped without unpublishing: the stream waits for a reconnect
    await first.wait()
    before = parse_playlist(await live.playlist("gina"))
    second = await live.push(key, 4)
    for _ in range(100):
        text = await live.playlist("gina")
        if "#EXT-X-DISCONTINUITY" in text and re.search(r"init-[0-9a-z]+-1\.mp4", text):
            break
        await asyncio.sleep(0.1)
    assert re.search(r'#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init-[0-9a-z]+-1\.mp4"', text)
    first_uri = before["segments"][0]["uri"]
    assert first_uri in text, "viewers keep the same playlist"
    assert await second.wait() == 0
    kinds = [e.type for e in live.events if e.data.get("stream") == "gina"]
    assert kinds[:3] == ["stream.started", "stream.interrupted", "stream.resumed"]


async def test_kick_and_webhook_refusal(live: Live, tmp_path: Path) -> None:
    token, key = await live.account("hank")
    other = await live.c.register("ivan")
    ffmpeg = await live.push(key, 20)
    await live.wait_live("hank")
    status, body, _ = await live.c.call("DELETE", "/api/live/streams/hank", other)
    assert status == 403 and body["code"] == "forbidden"
    status, _, _ = await live.c.call("DELETE", "/api/live/streams/hank", token)
    assert status == 204
    await asyncio.wait_for(ffmpeg.wait(), 10)
    assert ffmpeg.returncode != 0  # the publisher was cut off


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    calls: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(body)
        return web.Response(status=403 if body["username"] == "blocked" else 204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/hook", calls
    await runner.cleanup()


async def test_publish_webhook_can_refuse(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, calls = webhook
    overrides = {
        "live.on_publish_url": url,
        "live.on_unpublish_url": url,
        "live.grace_seconds": 0.5,
    }
    async with live_server(tmp_path, **overrides) as live:
        _, key = await live.account("blocked")
        refused = await live.push(key, 2)
        await refused.communicate()
        assert refused.returncode != 0
        _, key = await live.account("allowed")
        ok = await live.push(key, 3)
        await live.wait_live("allowed")
        assert await ok.wait() == 0
        for _ in range(50):
            if any(c["event"] == "unpublish" for c in calls):
                break
            await asyncio.sleep(0.1)
    events = [(c["event"], c["username"]) for c in calls]
    assert events == [("publish", "blocked"), ("publish", "allowed"), ("unpublish", "allowed")]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
async def test_watch_page_plays_in_chromium(live: Live) -> None:
    _, key = await live.account("tv")
    ffmpeg = await live.push(key, 25)
    try:
        await live.wait_live("tv")
        status, html, resp = await live.c.call("GET", "/watch/tv")
        assert status == 200 and "hls.light.min.js" in html
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        async with chromium_page(live.c.url("/watch/tv")) as page:
            times = []
            for _ in range(150):
                times.append(await page.evaluate("document.getElementById('video').currentTime"))
                if times[-1] and times[-1] > 3:
                    break
                await asyncio.sleep(0.1)
            first = times[-1]
            assert first and first > 3, f"playback never started: {times[-5:]}"

            async def advances() -> bool:
                now = await page.evaluate("document.getElementById('video').currentTime")
                return bool(now > first + 0.5)

            await eventually(advances, "currentTime advances: the stream plays")
            state = await page.evaluate("document.getElementById('state').textContent")
            assert state == "live"
            # The WebRTC button switches the same page to WHEP.
            await page.evaluate("document.getElementById('mode').click()")
            webrtc = None
            for _ in range(100):
                webrtc = await page.evaluate(
                    "(() => { const v = document.getElementById('video');"
                    " return v.srcObject ? v.currentTime : null; })()"
                )
                if webrtc and webrtc > 1:
                    break
                await asyncio.sleep(0.1)
            assert webrtc and webrtc > 1, f"WebRTC playback did not start: {webrtc}"
            _, info, _ = await live.c.call("GET", "/api/live/streams/tv")
            assert info["viewers"]["webrtc"] == 1
            label = await page.evaluate("document.getElementById('mode').textContent")
            assert label == "Watch with HLS"
    finally:
        ffmpeg.kill()
        await ffmpeg.wait()


async def test_whep_viewer_receives_decodable_video_and_audio(live: Live) -> None:
    _, key = await live.account("rtc")
    ffmpeg = await live.push(key, 30)
    pc = RTCPeerConnection()
    try:
        await live.wait_live("rtc")
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        tracks: dict[str, Any] = {}
        pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
        await pc.setLocalDescription(await pc.createOffer())
        async with live.c.session.post(
            live.c.url("/live/rtc/whep"),
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201, await resp.text()
            assert resp.content_type == "application/sdp"
            location = resp.headers["Location"]
            answer = await resp.text()
        assert "H264/90000" in answer and "VP8" not in answer  # passthrough, no re-encode
        assert "opus/48000" in answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for _ in range(100):
            if {"video", "audio"} <= set(tracks):
                break
            await asyncio.sleep(0.05)
        frames = [await asyncio.wait_for(tracks["video"].recv(), 15) for _ in range(10)]
        assert (frames[-1].width, frames[-1].height) == (320, 240)
        assert frames[-1].pts > frames[0].pts
        sound = await asyncio.wait_for(tracks["audio"].recv(), 10)
        assert sound.sample_rate == 48000
        _, info, _ = await live.c.call("GET", "/api/live/streams/rtc")
        assert info["viewers"]["webrtc"] == 1
        async with live.c.session.delete(live.c.url(location)) as resp:
            assert resp.status == 200
        _, info, _ = await live.c.call("GET", "/api/live/streams/rtc")
        assert info["viewers"]["webrtc"] == 0
        async with live.c.session.delete(live.c.url(location)) as resp:
            assert resp.status == 404 and (await resp.json())["code"] == "session_not_found"
        for path, body, ctype, status, code in (
            ("/live/rtc/whep", "v=0", "text/plain", 415, "unsupported_media_type"),
            ("/live/rtc/whep", "hello", "application/sdp", 400, "invalid_sdp"),
            ("/live/nobody/whep", "v=0\r\nm=video", "application/sdp", 404, "stream_not_found"),
        ):
            async with live.c.session.post(
                live.c.url(path), data=body, headers={"Content-Type": ctype}
            ) as resp:
                assert resp.status == status and (await resp.json())["code"] == code
    finally:
        await pc.close()
        ffmpeg.kill()
        await ffmpeg.wait()


async def test_recording_to_faststart_mp4(live: Live) -> None:
    token, key = await live.account("rec")
    other = await live.c.register("nosy")
    status, body, _ = await live.c.call(
        "PUT", "/api/live/settings/rec", other, json={"record": True}
    )
    assert status == 403 and body["code"] == "forbidden"
    status, body, _ = await live.c.call(
        "PUT", "/api/live/settings/nope", token, json={"record": True}
    )
    assert status == 404 and body["code"] == "stream_not_found"
    status, body, _ = await live.c.call(
        "PUT", "/api/live/settings/rec", token, json={"record": "x"}
    )
    assert status == 422
    status, body, _ = await live.c.call(
        "PUT", "/api/live/settings/rec", token, json={"record": True, "format": "mp4"}
    )
    assert status == 200 and body == {
        "stream": "rec",
        "record": True,
        "format": "mp4",
        "ladder": True,
    }
    _, body, _ = await live.c.call("GET", "/api/live/settings/rec", token)
    assert body["record"] is True
    ffmpeg = await live.push(key, 4)
    await live.wait_live("rec")
    assert await ffmpeg.wait() == 0
    for _ in range(100):
        recorded = [e for e in live.events if e.type == "stream.recorded"]
        if recorded:
            break
        await asyncio.sleep(0.1)
    (event,) = recorded
    assert event.data["owner_id"] and event.data["format"] == "mp4"
    # The files plugin adopts the recording as a file of the broadcaster.
    for _ in range(100):
        _, listing, _ = await live.c.call("GET", "/api/live/recordings", token)
        if listing["recordings"] and listing["recordings"][0]["file_id"]:
            break
        await asyncio.sleep(0.05)
    assert [r["id"] for r in listing["recordings"]] == [event.data["id"]]
    file_id = listing["recordings"][0]["file_id"]
    assert (await live.c.call("GET", "/api/live/recordings", other))[1]["recordings"] == []
    _, info, _ = await live.c.call("GET", f"/api/files/{file_id}", token)
    assert [p["name"] for p in info["path"]] == ["Recordings"] and info["mime"] == "video/mp4"
    assert info["name"].startswith("rec ") and info["name"].endswith(".mp4")
    assert (await live.c.call("GET", f"/api/files/{file_id}", other))[0] == 404
    async with live.c.session.get(
        live.c.url(f"/api/files/{file_id}/content"),
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        data = await resp.read()
    assert data.index(b"moov") < data.index(b"mdat"), "faststart: the index comes first"
    found = probe(data)
    assert found["video"] == ("h264", 320, 240) and found["audio"] == ("aac", 48000)
    assert 110 <= found["frames"] <= 122  # 4 s at 30 fps


async def test_ffmpeg_ladder_makes_a_multivariant_playlist(tmp_path: Path) -> None:
    ladder = [{"name": "small", "height": 120, "video_kbps": 200, "audio_kbps": 64}]
    overrides = {"live.ladder": ladder, "live.grace_seconds": 0.5}
    async with live_server(tmp_path, **overrides) as live:
        _, key = await live.account("ladder")
        ffmpeg = await live.push(key, 10)
        try:
            await live.wait_live("ladder")
            for _ in range(150):
                status, text, _ = await live.c.call("GET", "/live/ladder/master.m3u8")
                if status == 200 and "ladder/small/index.m3u8" in str(text):
                    break
                await asyncio.sleep(0.1)
            assert 'NAME="source"\nindex.m3u8' in text and "RESOLUTION=320x240" in text
            for _ in range(100):
                status, rung, _ = await live.c.call("GET", "/live/ladder/ladder/small/index.m3u8")
                if status == 200 and "seg-" in str(rung):
                    break
                await asyncio.sleep(0.1)
            init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', rung).group(1)  # type: ignore[union-attr]
            init = await live.fetch("ladder", f"ladder/small/{init_uri}")
            segment = re.findall(r"^(seg-[0-9a-z]+-\d+\.m4s)$", rung, re.M)[0]
            data = init + await live.fetch("ladder", f"ladder/small/{segment}")
            with av.open(io.BytesIO(data)) as container:
                video = container.streams.video[0]
                assert video.codec_context.height == 120 and container.streams.audio
            for bad in (
                "ladder/other/index.m3u8",
                "ladder/small/..%2F..%2Fx",
                "ladder/small/x.txt",
            ):
                status, body, _ = await live.c.call("GET", f"/live/ladder/{bad}")
                assert status == 404 and body["code"] == "not_found", bad
        finally:
            ffmpeg.kill()
            await ffmpeg.wait()
        # A stream whose owner switched the ladder off gets none.
        token, key = await live.account("noladder")
        status, _, _ = await live.c.call(
            "PUT", "/api/live/settings/noladder", token, json={"record": False, "ladder": False}
        )
        assert status == 200
        ffmpeg = await live.push(key, 4)
        await live.wait_live("noladder")
        status, body, _ = await live.c.call("GET", "/live/noladder/master.m3u8")
        assert status == 404 and body["code"] == "no_ladder"
        await ffmpeg.wait()
    async with running(tmp_path / "plain") as plain:
        status, _, _ = await plain.call("GET", "/live/none/master.m3u8")
        assert status == 404


async def test_whep_video_only_offer(live: Live) -> None:
    _, key = await live.account("solo")
    ffmpeg = await live.push(key, 20)
    pc = RTCPeerConnection()
    try:
        await live.wait_live("solo")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with live.c.session.post(
            live.c.url("/live/solo/whep"),
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201
            answer = await resp.text()
        assert "m=audio" not in answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    finally:
        await pc.close()
        ffmpeg.kill()
        await ffmpeg.wait()


async def test_whep_viewers_without_h264_share_one_vp8_transcode(live: Live) -> None:
    _, key = await live.account("vp")
    ffmpeg = await live.push(key, 30)
    peers = [RTCPeerConnection() for _ in range(2)]
    try:
        await live.wait_live("vp")
        vp8 = [c for c in RTCRtpReceiver.getCapabilities("video").codecs if c.name == "VP8"]
        tracks: list[Any] = []
        for pc in peers:
            transceiver = pc.addTransceiver("video", direction="recvonly")
            transceiver.setCodecPreferences(vp8)  # a browser without H.264
            pc.on("track", tracks.append)
            await pc.setLocalDescription(await pc.createOffer())
            assert "H264" not in pc.localDescription.sdp
            async with live.c.session.post(
                live.c.url("/live/vp/whep"),
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp:
                assert resp.status == 201, await resp.text()
                answer = await resp.text()
            assert "VP8/90000" in answer and "H264" not in answer
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for _ in range(100):
            if len(tracks) == 2:
                break
            await asyncio.sleep(0.05)
        for track in tracks:
            frames = [await asyncio.wait_for(track.recv(), 15) for _ in range(10)]
            assert (frames[-1].width, frames[-1].height) == (320, 240)
            assert frames[-1].pts > frames[0].pts
        assert live.c.server is not None and live.c.server.core is not None
        media = live.c.server.core.media
        assert media is not None
        relay = media.live.streams["vp"].relay
        assert relay is not None and "vp8" in relay._video, "one transcoder for both viewers"
        threads = [t.name for t in threading.enumerate() if t.name == "syncstream-webrtc-vp8"]
        assert len(threads) == 1
    finally:
        for pc in peers:
            await pc.close()
        ffmpeg.kill()
        await ffmpeg.wait()


async def test_recording_is_finished_when_the_server_stops(tmp_path: Path) -> None:
    async with live_server(tmp_path, **{"live.record": True}) as live:
        _, key = await live.account("late")
        ffmpeg = await live.push(key, 30)
        await live.wait_live("late")
        await asyncio.sleep(1)
    await ffmpeg.wait()
    files = list((tmp_path / "data" / "recordings" / "late").iterdir())
    assert not [f for f in files if f.suffix != ".mp4"], "finalised, no .part file left"
    # Streams end while the node still runs its plugins, so the files plugin adopts the
    # recording (moves it into the broadcaster's Recordings folder) as on any stream's end.
    with sqlite3.connect(tmp_path / "data" / "syncstream.db") as db:
        rows = db.execute(
            "SELECT id, size FROM files_nodes WHERE name LIKE 'late %.mp4'"
        ).fetchall()
    assert len(rows) + len(files) == 1, (rows, files)
    blobs = [p for r in rows for p in (tmp_path / "data").rglob(f"*{r[0]}*") if p.is_file()]
    blobs += files
    found = probe(blobs[0].read_bytes())
    assert found["video"] == ("h264", 320, 240) and found["frames"] > 30
