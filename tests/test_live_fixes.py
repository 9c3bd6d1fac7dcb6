"""Live streaming as real players found it: how a stream ends, when its segments began."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from .support import Client, eventually, free_port, spawn_node
from .test_live import live_server
from .test_live_hls import obs_args

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="needs ffmpeg (apt-get install ffmpeg)"
    ),
]

GRACE = 30.0  # long enough that an end inside it cannot be the grace period running out


@pytest.mark.parametrize("fast_reader", [True, False])
async def test_a_clean_unpublish_ends_the_stream_at_once(tmp_path: Path, fast_reader: bool) -> None:
    overrides = {"live.grace_seconds": GRACE, "rtmp.fast_reader": fast_reader}
    async with live_server(tmp_path, **overrides) as live:
        _, key = await live.account("stopper")
        ffmpeg = await asyncio.create_subprocess_exec(*obs_args(live.url(key), 3, size="320x240"))
        await live.wait_live("stopper")
        assert await ffmpeg.wait() == 0  # the end of its input: FCUnpublish + deleteStream
        streams = live.core.media.live.streams  # type: ignore[union-attr]
        await eventually(
            lambda: streams["stopper"].state == "ended", "still not ended", timeout=GRACE - 10
        )
        assert "#EXT-X-ENDLIST" in await live.playlist("stopper")
        _, listed, _ = await live.c.call("GET", "/api/live/streams")
        assert "stopper" not in [s["name"] for s in listed["streams"]]
        kinds = [e.type for e in live.events if e.data.get("stream") == "stopper"]
        assert kinds == ["stream.started", "stream.ended"]
        ended = next(e for e in live.events if e.type == "stream.ended")
        assert ended.data["reason"] == "unpublished"


@pytest.mark.parametrize("fast_reader", [True, False])
async def test_a_killed_publisher_still_gets_the_grace_period(
    tmp_path: Path, fast_reader: bool
) -> None:
    overrides = {"live.grace_seconds": GRACE, "rtmp.fast_reader": fast_reader}
    async with live_server(tmp_path, **overrides) as live:
        _, key = await live.account("crasher")
        ffmpeg = await asyncio.create_subprocess_exec(*obs_args(live.url(key), 30, size="320x240"))
        await live.wait_live("crasher")
        ffmpeg.send_signal(signal.SIGKILL)  # no unpublish: the connection just goes
        await ffmpeg.wait()
        streams = live.core.media.live.streams  # type: ignore[union-attr]
        await eventually(
            lambda: streams["crasher"].state != "live", "the drop went unnoticed", timeout=15
        )
        assert streams["crasher"].state == "reconnecting"
        _, info, _ = await live.c.call("GET", "/api/live/streams/crasher")
        assert info["state"] == "reconnecting"
        assert "#EXT-X-ENDLIST" not in await live.playlist("crasher")


PDT = re.compile(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)")


async def test_program_date_time_is_when_the_first_frame_arrived(tmp_path: Path) -> None:
    """A client blocked on the first part of each new segment receives it one part after the
    segment's EXT-X-PROGRAM-DATE-TIME (the part had to be filled first), never before."""
    overrides = {"live.segment_seconds": 1.0, "live.part_seconds": 0.2}
    async with live_server(tmp_path, **overrides) as live:
        _, key = await live.account("clock")
        ffmpeg = await asyncio.create_subprocess_exec(*obs_args(live.url(key), 30, size="320x240"))
        try:
            text = await live.wait_live("clock")
            msn = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
            msn += text.count("#EXTINF:") + 1  # the segment after the one being filled
            leads: list[tuple[float, float]] = []
            for _ in range(5):
                text = await live.playlist("clock", f"?_HLS_msn={msn}&_HLS_part=0")
                arrived = time.time()  # the client has the segment's first part now
                start = text.count("#EXTINF:")
                first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))  # type: ignore[union-attr]
                segment = text.split("#EXT-X-PROGRAM-DATE-TIME:")[msn - first + 1]
                assert start == msn - first, "the part waited for belongs to the open segment"
                pdt = datetime.fromisoformat(segment.split("\n", 1)[0]).timestamp()
                part = float(re.search(r"#EXT-X-PART:DURATION=([\d.]+)", segment).group(1))  # type: ignore[union-attr]
                leads.append((arrived - pdt, part))
                msn += 1
            # The first frame arrived before its part was served...
            assert all(lead >= 0 for lead, _ in leads), leads
            # ...about one part earlier, not ~0 s.
            assert min(lead - 0.5 * part for lead, part in leads) > 0, leads
        finally:
            ffmpeg.kill()
            await ffmpeg.wait()


async def test_a_recording_ended_by_sigterm_keeps_its_file(tmp_path: Path) -> None:
    """SIGTERM while recording: the recording is finalised, adopted by the files plugin and
    linked to its file before the node exits, with no task failing on the way out."""
    rtmp_port = free_port()
    config = tmp_path / "node.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "server: {host: 127.0.0.1}\n"
        f"rtmp: {{enabled: true, host: 127.0.0.1, port: {rtmp_port}}}\n"
        "logging: {level: info, access_log: false}\n"
    )
    async with aiohttp.ClientSession() as http:
        node = spawn_node(config)
        publisher: asyncio.subprocess.Process | None = None
        try:
            await node.wait_ready()
            client = Client(node.base, http)
            token = await client.register("taper")
            _, body, _ = await client.call("POST", "/api/auth/stream-key", token, json={})
            status, _, _ = await client.call(
                "PUT", "/api/live/settings/taper", token, json={"record": True}
            )
            assert status == 200
            url = f"rtmp://127.0.0.1:{rtmp_port}/live/{body['key']}"
            publisher = await asyncio.create_subprocess_exec(
                *obs_args(url, 60, size="320x240"), stderr=asyncio.subprocess.DEVNULL
            )
            text = ""
            for _ in range(300):
                status, text, _ = await client.call("GET", "/live/taper/index.m3u8")
                if status == 200 and text.count("#EXTINF") >= 2:
                    break
                await asyncio.sleep(0.1)
            assert text.count("#EXTINF") >= 2, text
            node.proc.send_signal(signal.SIGTERM)  # while live and recording
            _, stderr = await asyncio.to_thread(node.proc.communicate, timeout=60)
            assert node.proc.returncode == 0, stderr
        finally:
            node.stop()
            if publisher is not None and publisher.returncode is None:
                publisher.kill()
                await publisher.wait()
        assert "recording.saved" in stderr and "files.recording_adopted" in stderr, stderr
        assert "Task exception was never retrieved" not in stderr, stderr
        assert "cannot schedule new futures" not in stderr, stderr
        node = spawn_node(config)
        try:
            await node.wait_ready()
            client = Client(node.base, http)
            token = await client.login("taper")
            _, listing, _ = await client.call("GET", "/api/live/recordings", token)
            (recording,) = listing["recordings"]
            assert recording["file_id"], recording
            status, info, _ = await client.call("GET", f"/api/files/{recording['file_id']}", token)
            assert status == 200 and info["mime"] == "video/mp4", info
        finally:
            node.stop()
