"""LL-HLS delivery with publishers that look like OBS (x264 with B-frames, CBR, 48 kHz AAC)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import weakref
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from syncstream.media.mp4 import read_tracks

from .browser import CHROMIUM, chromium_page
from .support import Client, free_port, spawn_node
from .test_live import Live, live_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="needs ffmpeg (apt-get install ffmpeg)"
    ),
]
HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"')


def obs_args(
    url: str, seconds: float, *, size: str = "640x360", sample_rate: int = 48000
) -> list[str]:
    """An ffmpeg command line publishing like OBS's defaults: x264 CBR with 2 B-frames and a
    2 s keyframe interval, AAC at 48 kHz stereo."""
    return [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=30",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate={sample_rate}",
        "-ac",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-g",
        "60",
        "-b:v",
        "800k",
        "-minrate",
        "800k",
        "-maxrate",
        "800k",
        "-bufsize",
        "800k",
        "-x264-params",
        "nal-hrd=cbr",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ar",
        str(sample_rate),
        "-t",
        str(seconds),
        "-f",
        "flv",
        url,
    ]


async def obs_push(
    live: Live, key: str, seconds: float, **kwargs: Any
) -> asyncio.subprocess.Process:
    args = obs_args(live.url(key), seconds, **kwargs)
    return await asyncio.create_subprocess_exec(*args, stderr=asyncio.subprocess.PIPE)


@pytest.fixture
async def live(tmp_path: Path) -> Any:
    async with live_server(tmp_path, **{"live.grace_seconds": 1.0}) as server:
        yield server


async def test_every_hinted_part_is_served_across_segment_boundaries(live: Live) -> None:
    """A player following EXT-X-PRELOAD-HINT never asks for a part that will not exist."""
    _, key = await live.account("hinted")
    ffmpeg = await obs_push(live, key, 30)
    try:
        text = await live.wait_live("hinted")
        hint = HINT.search(text)
        assert hint
        uri, first_msn = hint.group(1), None
        seen_msns: set[int] = set()
        hinted = 0
        while len(seen_msns) < 5:  # four segment boundaries crossed
            async with live.c.session.get(live.c.url(f"/live/hinted/{uri}")) as resp:
                assert resp.status == 200, (uri, await resp.text())
                assert (await resp.read())[4:8] == b"moof"
            hinted += 1
            text = await live.playlist("hinted")
            listed = [line for line in text.splitlines() if f'URI="{uri}"' in line]
            assert listed, f"{uri} was served but is not in the playlist"
            # Which segment the part landed in: count the EXTINFs before it.
            before = text[: text.index(f'URI="{uri}"')]
            msn = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
            msn += before.count("#EXTINF:")
            first_msn = msn if first_msn is None else first_msn
            seen_msns.add(msn)
            nxt = HINT.search(text)
            assert nxt, text
            uri = nxt.group(1)
        assert hinted > 20
    finally:
        ffmpeg.kill()
        await ffmpeg.wait()


async def test_48khz_audio_keeps_its_sample_rate(live: Live) -> None:
    """The sample rate and channels come from the AudioSpecificConfig, not the FLV tag flags
    (which cannot say 48 kHz), and the audio track is muxed on a 1/48,000 timescale."""
    _, key = await live.account("hz")
    ffmpeg = await obs_push(live, key, 20)
    try:
        text = await live.wait_live("hz")
        _, info, _ = await live.c.call("GET", "/api/live/streams/hz")
        assert info["audio"] == {
            "kind": "audio",
            "codec": "aac",
            "sample_rate": 48000,
            "channels": 2,
        }
        init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)  # type: ignore[union-attr]
        tracks = read_tracks(await live.fetch("hz", init_uri))
        assert sorted((t.kind, t.timescale) for t in tracks.values() if t.kind == "audio") == [
            ("audio", 48000)
        ]
    finally:
        ffmpeg.kill()
        await ffmpeg.wait()


async def ffprobe_frames(path: Path) -> dict[str, list[float]]:
    """The presentation times (s) of every frame ffprobe decodes, per stream kind, sorted."""
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries", "frame=media_type,pts_time", "-of", "json",
        str(path), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    times: dict[str, list[float]] = {}
    for frame in json.loads(out)["frames"]:
        times.setdefault(frame["media_type"], []).append(float(frame["pts_time"]))
    return {kind: sorted(values) for kind, values in times.items()}


@pytest.mark.parametrize("muxer", ["native", "pyav"])
async def test_ll_hls_output_decodes_frame_exact(tmp_path: Path, muxer: str) -> None:
    """8 s of an OBS-like publisher, read back from the ended playlist with ffprobe: every video
    frame (240) at 1/30 s steps, AAC frames without gaps, and EXTINF / part durations that add
    up to the media."""
    settings = {"live.muxer": muxer, "live.grace_seconds": 1.0}
    async with live_server(tmp_path, **settings) as live:
        _, key = await live.account("exact")
        ffmpeg = await obs_push(live, key, 8)
        assert await ffmpeg.wait() == 0
        text = ""
        for _ in range(100):
            text = await live.playlist("exact")
            if text.endswith("#EXT-X-ENDLIST\n"):
                break
            await asyncio.sleep(0.1)
        assert text.endswith("#EXT-X-ENDLIST\n"), text
        (init,) = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)
        media = await live.fetch("exact", init)
        lines = text.splitlines()
        extinfs = [float(line[8:].rstrip(",")) for line in lines if line.startswith("#EXTINF:")]
        for name in [line for line in lines if line.startswith("seg-")]:
            media += await live.fetch("exact", name)
        # The parts listed for a segment add up to its EXTINF.
        parts: list[float] = []
        for line in lines:
            if line.startswith("#EXT-X-PART:"):
                parts.append(float(re.search(r"DURATION=([\d.]+)", line).group(1)))  # type: ignore[union-attr]
            elif line.startswith("#EXTINF:"):
                if parts:
                    assert abs(sum(parts) - float(line[8:].rstrip(","))) < 0.001
                    assert max(parts) <= 0.21, parts
                parts = []
    path = tmp_path / "stream.mp4"
    path.write_bytes(media)
    frames = await ffprobe_frames(path)
    video, audio = frames["video"], frames["audio"]
    assert len(video) == 240
    steps = [b - a for a, b in pairwise(video)]
    assert all(abs(step - 1 / 30) < 0.0015 for step in steps), steps
    assert abs(sum(extinfs) - 8.0) < 0.05, extinfs
    assert 8.0 * 48000 / 1024 - 2 <= len(audio) <= 8.0 * 48000 / 1024 + 3
    gaps = [b - a for a, b in pairwise(audio)]
    if muxer == "pyav":
        gaps = gaps[1:]  # FFmpeg's muxer moves the first audio frame to 0, ahead of the rest
    assert all(abs(gap - 1024 / 48000) < 0.0015 for gap in gaps), gaps


MEDIA_URI = re.compile(r"((?:part|seg|init)-[0-9a-z]+-\d+\.(?:m4s|mp4))")


async def test_restart_gives_new_names_and_sigterm_ends_the_playlist(tmp_path: Path) -> None:
    """Publish, SIGTERM the node, start it again, publish again: no media URL of the second
    session equals one of the first (caches may hold those), sequence numbers keep growing,
    and the viewer blocked on the next part at SIGTERM gets the final playlist (ENDLIST)."""
    rtmp_port = free_port()
    config = tmp_path / "node.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "server: {host: 127.0.0.1}\n"
        f"rtmp: {{enabled: true, host: 127.0.0.1, port: {rtmp_port}}}\n"
        "logging: {level: warning, access_log: false}\n"
    )
    sessions: list[set[str]] = []
    sequences: list[int] = []
    discontinuities: list[int] = []
    async with aiohttp.ClientSession() as http:
        for round_ in range(2):
            node = spawn_node(config)
            publisher: asyncio.subprocess.Process | None = None
            try:
                await node.wait_ready()
                client = Client(node.base, http)
                token = await (client.register if round_ == 0 else client.login)("phoenix")
                if round_ == 0:
                    _, body, _ = await client.call("POST", "/api/auth/stream-key", token, json={})
                    key = body["key"]
                url = f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"
                publisher = await asyncio.create_subprocess_exec(
                    *obs_args(url, 60), stderr=asyncio.subprocess.PIPE
                )
                names: set[str] = set()
                text = ""
                for _ in range(300):
                    status, text, _ = await client.call("GET", "/live/phoenix/index.m3u8")
                    if status == 200:
                        names |= set(MEDIA_URI.findall(text))
                        if text.count("#EXTINF") >= 2:
                            break
                    await asyncio.sleep(0.1)
                assert text.count("#EXTINF") >= 2, text
                sequences.append(int(re.search(r"MEDIA-SEQUENCE:(\d+)", text).group(1)))  # type: ignore[union-attr]
                discontinuities.append(
                    int(re.search(r"DISCONTINUITY-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
                )
                # A viewer waits for a segment two ahead; the node is told to stop meanwhile.
                last = sequences[-1] + text.count("#EXTINF") - 1
                blocked = asyncio.ensure_future(
                    client.call("GET", f"/live/phoenix/index.m3u8?_HLS_msn={last + 2}")
                )
                await asyncio.sleep(0.5)
                assert not blocked.done()
                node.proc.send_signal(signal.SIGTERM)
                status, final, _ = await asyncio.wait_for(blocked, 30)
                assert status == 200, final
                assert final.endswith("#EXT-X-ENDLIST\n"), final
                assert "PRELOAD-HINT" not in final
                names |= set(MEDIA_URI.findall(final))
                sessions.append(names)
                assert await asyncio.to_thread(node.proc.wait, 30) == 0
                # The publisher was cut off by the shutdown.
                assert await asyncio.wait_for(publisher.wait(), 30) != 0
            finally:
                node.stop()
                if publisher is not None and publisher.returncode is None:
                    publisher.kill()
                    await publisher.wait()
    first, second = sessions
    assert any(n.startswith("part-") for n in first) and any(n.startswith("seg-") for n in first)
    assert not first & second, "a media URL was reused across sessions"
    assert sequences[1] > sequences[0], "the media sequence never goes back"
    # The second session is a discontinuity to a player that saw the first.
    assert discontinuities[1] > discontinuities[0]


PLAYER_PAGE = """<!doctype html>
<video id="video" muted autoplay playsinline></video>
<script src="{server}/static/live/vendor/hls.light.min.js"></script>
<script>
  const video = document.getElementById("video");
  const hls = new Hls({{ lowLatencyMode: true }});
  hls.on(Hls.Events.ERROR, (_, data) => {{ window.errors.push(data.details); }});
  window.errors = [];
  window.hls = hls;
  hls.loadSource("{server}/live/{stream}/master.m3u8");
  hls.attachMedia(video);
</script>
"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
async def test_hls_js_can_force_every_rung_of_the_ladder(tmp_path: Path) -> None:
    """hls.js in Chromium, told to play each level of the master playlist, shows its size."""
    ladder = [
        {"name": "360p", "height": 360, "video_kbps": 500, "audio_kbps": 64},
        {"name": "240p", "height": 240, "video_kbps": 250, "audio_kbps": 64},
    ]
    async with live_server(tmp_path, **{"live.ladder": ladder}) as live:
        _, key = await live.account("rungs")
        ffmpeg = await obs_push(live, key, 120, size="640x480")
        page_app = web.Application()
        html = PLAYER_PAGE.format(server=live.c.base, stream="rungs")

        async def page(_: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        page_app.router.add_get("/", page)
        runner = web.AppRunner(page_app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            await live.wait_live("rungs")
            _, info, _ = await live.c.call("GET", "/api/live/streams/rungs")
            assert info["master"] == "/live/rungs/master.m3u8", "players find the renditions"
            text = ""
            for _ in range(300):
                status, text, _ = await live.c.call("GET", "/live/rungs/master.m3u8")
                if status == 200 and text.count("#EXT-X-STREAM-INF") == 3:
                    break
                await asyncio.sleep(0.1)
            for height in (480, 360, 240):
                assert re.search(
                    rf"RESOLUTION=\d+x{height},CODECS=\"avc1\.[0-9a-f]{{6}},mp4a\.40\.2\"", text
                ), text
            async with chromium_page(f"http://127.0.0.1:{port}/") as page:
                levels: Any = None
                for _ in range(300):
                    levels = await page.evaluate("window.hls && hls.levels.map(l => l.height)")
                    playing = await page.evaluate("video.currentTime")
                    if levels and len(levels) == 3 and playing:
                        break
                    await asyncio.sleep(0.1)
                assert levels and sorted(levels) == [240, 360, 480], levels
                for index, height in sorted(enumerate(levels), key=lambda x: x[1]):
                    await page.evaluate(f"hls.currentLevel = {index}")
                    shown = None
                    for _ in range(300):
                        shown = await page.evaluate("video.videoHeight")
                        if shown == height:
                            break
                        await asyncio.sleep(0.1)
                    errors = await page.evaluate("window.errors")
                    assert shown == height, (index, height, shown, errors)
                    start = await page.evaluate("video.currentTime")
                    for _ in range(100):
                        if await page.evaluate("video.currentTime") > start + 0.5:
                            break
                        await asyncio.sleep(0.1)
                    assert await page.evaluate("video.currentTime") > start + 0.5, "it plays on"
        finally:
            await runner.cleanup()
            ffmpeg.kill()
            await ffmpeg.wait()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def test_publish_sessions_leave_nothing_behind(tmp_path: Path) -> None:
    """A stream's media is freed by reference counting once the stream is over: nothing waits
    for the cyclic collector (which the server's GC policy runs every 15 minutes). Per session
    the timeline, its parts and the session are gone, and RSS stays flat over the cycles
    (``python -m benchmarks.live_sessions`` runs 100 cycles)."""
    overrides = {
        "live.grace_seconds": 0.0,
        "live.window_segments": 3,
        "live.segment_seconds": 1.0,
        "live.thumbnail_seconds": 1.0,
    }
    async with live_server(tmp_path, **overrides) as live:
        _, key = await live.account("cycles")
        service = live.core.media.live  # type: ignore[union-attr]
        sizes: list[float] = []
        for cycle in range(6):
            publisher = await obs_push(live, key, 3)
            await live.wait_live("cycles")
            stream = service.streams["cycles"]
            refs = [weakref.ref(stream), weakref.ref(stream.timeline)]
            refs += [weakref.ref(p) for s in stream.timeline.segments for p in s.parts]
            session = stream.session
            assert session is not None
            refs.append(weakref.ref(session))
            del stream, session
            assert await publisher.wait() == 0
            for _ in range(300):
                if "cycles" not in service.streams:
                    break
                await asyncio.sleep(0.05)
            assert "cycles" not in service.streams
            for _ in range(40):  # the session's last tasks finish (a loaded machine: slowly)
                if all(r() is None for r in refs):
                    break
                await asyncio.sleep(0.05)
            alive = [r() for r in refs if r() is not None]
            assert not alive, f"session {cycle}: {[type(o).__name__ for o in alive]} still alive"
            sizes.append(rss_mb())
        # The first session warms caches up (codecs, thread arenas); after that, flat within
        # the 10 MB (the cycles are short; the refcount checks above are the sharp ones).
        assert max(sizes[1:]) - sizes[1] < 10.0, sizes
