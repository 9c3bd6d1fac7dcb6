"""The RTMP read path: the chunk parser fed in arbitrary pieces, both drivers
(``rtmp.fast_reader`` on and off) with a real ffmpeg publisher, and messages that arrive
behind a ``publish`` that is still being checked."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from syncstream.media.rtmp.chunks import (
    ABORT,
    AUDIO,
    SET_CHUNK_SIZE,
    VIDEO,
    ChunkParser,
    Message,
    ProtocolError,
    encode_message,
)

from .test_live import command, live_server, rtmp_client

pytestmark = pytest.mark.slow


def sample_stream() -> bytes:
    """Chunks of every format, an extended timestamp, a chunk-size change and an abort."""
    out = encode_message(4, AUDIO, 1, b"a" * 10, 128, timestamp=1000)
    out += bytes([0x80 | 4]) + (23).to_bytes(3, "big") + b"b" * 10  # type 2: delta 23
    out += bytes([0xC0 | 4]) + b"c" * 10  # type 3 starting a message: the delta again
    out += encode_message(5, VIDEO, 1, bytes(range(256)) * 2, 128, timestamp=5)  # 4 chunks
    out += encode_message(6, VIDEO, 1, b"x" * 20, 128, timestamp=0xFFFFFF)[:1]
    out += b"\xff\xff\xff" + (20).to_bytes(3, "big") + bytes([VIDEO]) + struct.pack("<I", 1)
    out += struct.pack(">I", 0x1234567) + b"x" * 20  # extended timestamp
    out += encode_message(2, SET_CHUNK_SIZE, 0, struct.pack(">I", 4096), 128)
    out += encode_message(5, VIDEO, 1, b"v" * 5000, 4096, timestamp=40)  # 2 chunks of 4096
    big = encode_message(7, VIDEO, 1, b"z" * 5000, 4096, timestamp=50)
    out += big[: 12 + 4096]  # the first chunk of a message ...
    out += encode_message(2, ABORT, 0, struct.pack(">I", 7), 4096)  # ... that is aborted
    out += encode_message(7, AUDIO, 1, b"after", 4096, timestamp=60)
    return out


def parse(pieces: list[bytes]) -> list[Message]:
    parser = ChunkParser()
    return [m for piece in pieces for m in parser.feed(piece)]


def test_parser_gives_the_same_messages_however_the_bytes_arrive() -> None:
    data = sample_stream()
    whole = parse([data])
    assert [(m.type_id, m.timestamp, len(m.payload)) for m in whole] == [
        (AUDIO, 1000, 10),
        (AUDIO, 1023, 10),
        (AUDIO, 1046, 10),
        (VIDEO, 5, 512),
        (VIDEO, 0x1234567, 20),
        (SET_CHUNK_SIZE, 0, 4),
        (VIDEO, 40, 5000),
        (ABORT, 0, 4),
        (AUDIO, 60, 5),
    ]
    assert whole[3].payload == bytes(range(256)) * 2
    assert parse([data[i : i + 1] for i in range(len(data))]) == whole  # byte by byte
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 12))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert parse(pieces) == whole
    parser = ChunkParser()
    parser.feed(data[:100])
    assert parser.bytes_read == 100


def test_parser_refuses_broken_streams() -> None:
    with pytest.raises(ProtocolError):
        ChunkParser().feed(bytes([0xC0 | 9]) + b"x")  # continues a stream never started
    with pytest.raises(ProtocolError):
        ChunkParser().feed(encode_message(2, SET_CHUNK_SIZE, 0, struct.pack(">I", 0), 128))


@pytest.mark.parametrize("fast", [True, False])
async def test_both_readers_carry_a_real_publisher(tmp_path: Path, fast: bool) -> None:
    async with live_server(tmp_path, **{"rtmp.fast_reader": fast}) as live:
        _, key = await live.account("olga")
        ffmpeg = await live.push(key, 3)
        text = await live.wait_live("olga")
        assert "#EXT-X-PART:" in text
        assert await ffmpeg.wait() == 0
        stream = live.core.media.live.streams["olga"]  # type: ignore[union-attr]
        assert {t.kind for t in stream.tracks} == {"video", "audio"}


@pytest.fixture
async def slow_hook() -> AsyncIterator[tuple[str, asyncio.Event, list[str]]]:
    """An on_publish webhook that answers only when the test lets it."""
    release, calls = asyncio.Event(), []

    async def hook(request: web.Request) -> web.Response:
        calls.append((await request.json())["event"])
        if calls[-1] == "publish":
            await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", release, calls
    await runner.cleanup()


async def wait_for(condition: Any, what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_messages_behind_a_pending_publish_keep_their_order(
    tmp_path: Path, slow_hook: tuple[str, asyncio.Event, list[str]]
) -> None:
    url, release, calls = slow_hook
    overrides = {"live.on_publish_url": url, "live.grace_seconds": 0.3}
    async with live_server(tmp_path, **overrides) as live:
        events = live.events
        _, key = await live.account("pia")
        _, writer = await rtmp_client(live.rtmp_port)
        # publish and deleteStream in one write: the unpublish must wait for the publish.
        writer.write(command("connect", 1, {"app": "live", "tcUrl": "rtmp://x/live"}))
        writer.write(command("createStream", 2, None))
        writer.write(command("publish", 3, None, key, "live", stream_id=1))
        writer.write(command("deleteStream", 4, None, 1.0))
        await writer.drain()
        await wait_for(lambda: calls == ["publish"], "the webhook was called")
        await asyncio.sleep(0.3)
        assert not [e for e in events if e.data.get("stream") == "pia"]
        release.set()
        await wait_for(
            lambda: (
                [e.type for e in events if e.data.get("stream") == "pia"][-1:] == ["stream.ended"]
            ),
            "the stream started, then ended",
        )
        assert next(e.type for e in events if e.data.get("stream") == "pia") == "stream.started"
        writer.close()

        # A publisher that leaves while its publish is checked leaves no session behind.
        release.clear()
        _, key = await live.account("quinn")
        _, writer = await rtmp_client(live.rtmp_port)
        writer.write(command("connect", 1, {"app": "live", "tcUrl": "rtmp://x/live"}))
        writer.write(command("createStream", 2, None))
        writer.write(command("publish", 3, None, key, "live", stream_id=1))
        await writer.drain()
        await wait_for(lambda: calls.count("publish") == 2, "the second webhook call")
        writer.transport.abort()
        await asyncio.sleep(0.3)
        release.set()
        streams = live.core.media.live.streams  # type: ignore[union-attr]
        await wait_for(lambda: "quinn" in streams, "the checked publish went through")
        await wait_for(
            lambda: streams["quinn"].state == "ended",
            "the session of the vanished publisher ended",
        )
