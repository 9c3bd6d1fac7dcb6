"""The live fast path answers exactly as aiohttp does.

One node, one live stream, two listening sockets: the node's own (the fast path on) and a second
one served by aiohttp's protocol alone (``runner.server``, the fast path off). The same raw
HTTP/1.1 exchanges go to both, and status, the headers that matter and bodies must match. The
publisher is stopped (SIGSTOP) while they run, so both see the same timeline.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import uvloop

from .support import eventually
from .test_live import Live, live

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="needs ffmpeg (apt-get install ffmpeg)"
    ),
]
__all__ = ["live"]  # the fixture
COMPARED = (
    "content-type",
    "content-length",
    "cache-control",
    "connection",
    "www-authenticate",
    "vary",
    "access-control-allow-origin",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-expose-headers",
)


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Both loops: uvloop's transports (what ``syncstream serve`` runs) are not asyncio's.
    (pytest-asyncio's replacement, the loop-factory hook, would apply to every test.)"""
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_answer(reader: asyncio.StreamReader, head_only: bool) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if head_only:
        body = b""
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return Answer(status, {k: v for k, v in headers.items() if k in COMPARED}, body)


async def exchange(port: int, requests: list[bytes]) -> tuple[list[Answer], bool]:
    """Send ``requests`` at once (pipelined) on one connection; their answers, and whether the
    server closed the connection after the last."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(requests))
        answers = []
        for raw in requests:
            answers.append(await read_answer(reader, raw.startswith(b"HEAD ")))
            if answers[-1].headers.get("connection") == "close":
                break
        closed = answers[-1].headers.get("connection") == "close"
        if closed:
            assert await reader.read() == b""
        return answers, closed
    finally:
        writer.close()


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "User-Agent: conformance", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@asynccontextmanager
async def paused(process: asyncio.subprocess.Process) -> AsyncIterator[None]:
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


@asynccontextmanager
async def aiohttp_only(live: Live) -> AsyncIterator[int]:
    """A second listening socket of the same node, served by aiohttp's protocol only."""
    assert live.c.server is not None and live.c.server.runner is not None
    server = live.c.server.runner.server
    assert server is not None
    listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


async def test_fast_path_answers_as_aiohttp_does(live: Live) -> None:
    assert live.c.server is not None and live.c.server.fast_path is not None
    fast_port = live.c.server.port
    _, key = await live.account("tv")
    ffmpeg = await live.push(key, 60)
    try:
        await live.wait_live("tv")
        streams = live.core.media.live.streams  # type: ignore[union-attr]
        await eventually(lambda: len(streams["tv"].timeline.segments) >= 2, "two segments")
        async with aiohttp_only(live) as plain_port, paused(ffmpeg):
            timeline = streams["tv"].timeline
            first, last = timeline.segments[0], timeline.segments[-1]
            epoch, part = timeline.epoch, last.parts[-1].number
            playlist = "/live/tv/index.m3u8"
            cases = [
                [get(playlist)],
                [get(playlist, method="HEAD")],
                [get(f"{playlist}?_HLS_msn={first.msn}")],
                [get(f"{playlist}?_HLS_msn={last.msn}&_HLS_part=0")],
                [get(f"/live/tv/part-{epoch}-{part}.m4s")],
                [get(f"/live/tv/part-{epoch}-{part}.m4s", method="HEAD")],
                [get(f"/live/tv/seg-{epoch}-{first.msn}.m4s")],
                [get(f"/live/tv/init-{epoch}-0.mp4")],
                [get(f"/live/tv/part-{epoch}-{part}.m4s", "Origin: https://elsewhere.example")],
                [get(playlist, "Origin: https://elsewhere.example")],
                # Not the fast path's: aiohttp answers on both sockets.
                [get(f"/live/tv/part-{epoch}-{part}.m4s", "Range: bytes=0-99")],
                [get(f"/live/tv/seg-{epoch}-{first.msn}.m4s", "If-None-Match: *")],
                [get("/live/nobody/index.m3u8")],
                [get(f"/live/tv/part-{epoch}-{part + 10**9}.m4s")],
                [get(f"/live/tv/seg-{epoch}-{last.msn + 99}.m4s")],
                [get(f"/live/tv/init-{epoch}-7.mp4")],
                [get(f"/live/tv/part-zz-{part}.m4s")],
                [get(f"{playlist}?_HLS_part=1")],
                [get(f"{playlist}?_HLS_msn={last.msn + 50}")],
                [get(f"{playlist}?_HLS_msn=abc")],
                [get(f"{playlist}?token=secret")],
                [get(f"{playlist}?other=1")],
                [get(playlist, method="POST")],
                [get(playlist).replace(b"HTTP/1.1", b"HTTP/1.0")],
                [get(playlist, "X-Big: " + "x" * 9000)],
                # Pipelined on one connection, in order; a mix of live and API requests.
                [
                    get(playlist),
                    get(f"/live/tv/part-{epoch}-{part}.m4s"),
                    get("/api/auth/me"),
                    get(f"/live/tv/init-{epoch}-0.mp4"),
                ],
                [get(f"/live/tv/seg-{epoch}-{first.msn}.m4s"), get(playlist, "Connection: close")],
            ]
            for requests in cases:
                fast = await exchange(fast_port, requests)
                plain = await exchange(plain_port, requests)
                assert fast == plain, requests[0][:120]
            # A request after one with "Connection: close" is not answered (aiohttp refuses
            # the lot with a 400 and answers neither).
            answers, closed = await exchange(fast_port, [get(playlist, "Connection: close")] * 2)
            assert closed and [a.status for a in answers] == [200]
            # Blocking requests for the next part wait on both sockets ...
            msn, index = last.msn, len(last.parts)
            blocking = [
                get(f"{playlist}?_HLS_msn={msn}&_HLS_part={index}"),
                get(f"/live/tv/part-{epoch}-{timeline.next_part}.m4s"),
            ]
            waiting = [
                asyncio.create_task(exchange(port, [request]))
                for request in blocking
                for port in (fast_port, plain_port)
            ]
            fast_path = live.c.server.fast_path
            await eventually(
                lambda: sum(c.transport is not None for c in fast_path.connections) >= 2,
                "the fast path's two requests waiting",
            )
        # ... and are answered alike once the publisher goes on.
        answers = [await task for task in waiting]
        assert answers[0] == answers[1] and answers[2] == answers[3]
        assert answers[0][0][0].status == 200 and answers[2][0][0].body[4:8] == b"moof"
        name = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', answers[0][0][0].body.decode())
        assert name and name.group(1) != f"part-{epoch}-{index}.m4s"
    finally:
        ffmpeg.kill()
        await ffmpeg.wait()


async def test_keep_alive_connection_changes_hands_and_metrics_count(live: Live) -> None:
    assert live.c.server is not None and live.c.server.fast_path is not None
    fast_path = live.c.server.fast_path
    _, key = await live.account("tv")
    ffmpeg = await live.push(key, 30)
    try:
        await live.wait_live("tv")
        reader, writer = await asyncio.open_connection("127.0.0.1", live.c.server.port)
        try:
            writer.write(get("/live/tv/index.m3u8"))
            assert (await read_answer(reader, False)).status == 200
            assert len(fast_path.connections) == 1  # served by the fast path, kept alive
            writer.write(get("/healthz"))
            assert (await read_answer(reader, False)).status == 200
            assert not fast_path.connections  # aiohttp's from the first request not ours
            writer.write(get("/live/tv/index.m3u8"))
            assert (await read_answer(reader, False)).status == 200
        finally:
            writer.close()
        status, text, _ = await live.c.call("GET", "/metrics")
        assert status == 200
        counted = re.search(
            r'syncstream_http_requests_total\{method="GET",route="/live/\{name\}/index.m3u8",'
            r'status="200"\} (\d+)',
            str(text),
        )
        assert counted and int(float(counted.group(1))) >= 2
    finally:
        ffmpeg.kill()
        await ffmpeg.wait()


async def test_blocking_request_that_times_out_gets_the_same_problem(live: Live) -> None:
    _, key = await live.account("tv")
    ffmpeg = await live.push(key, 60)
    try:
        await live.wait_live("tv")
        async with aiohttp_only(live) as plain_port, paused(ffmpeg):
            assert live.c.server is not None
            timeline = live.core.media.live.streams["tv"].timeline  # type: ignore[union-attr]
            request = get(f"/live/tv/part-{timeline.epoch}-{timeline.next_part}.m4s")
            fast, plain = await asyncio.gather(
                exchange(live.c.server.port, [request]), exchange(plain_port, [request])
            )
        assert fast == plain and fast[0][0].status == 503, fast
    finally:
        ffmpeg.kill()
        await ffmpeg.wait()
