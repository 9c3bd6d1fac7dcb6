"""Decompression bombs against the files plugin's thumbnails: small files that claim huge
pictures are refused from their headers, before anything is decoded, with a reason; the worker
pool and the server carry on. The bombs are made here, byte by byte."""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

from plugins.files.config import Config

from .files_support import processed, tus_upload
from .support import Client, running

SIDE = 14100  # 199 M pixels: under twice Pillow's limit, where Pillow only warns
HUGE = 15000  # 225 M pixels: over twice the limit, where Pillow errs (naming 2x the limit)
LIMIT = Config().max_pixels  # the tests run with the default files.max_pixels


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(width: int, height: int, channels: int = 1) -> bytes:
    """A complete, valid PNG of ``width`` x ``height`` black pixels (grey or RGB): a few
    hundred KB that decode to ``width * height * channels`` bytes."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + width * channels)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    color = {1: 0, 3: 2}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A 16 x 16 JPEG whose frame header (SOF0) says ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 0, 0)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


GIF_PIXEL = b"\x02\x02\x44\x01\x00"  # LZW (min code size 2): clear, colour 0, end


def gif(screen: tuple[int, int], frames: list[tuple[int, int]]) -> bytes:
    """A GIF with a logical screen and frames of the given sizes, each one pixel of data."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    for width, height in frames:
        out += b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + GIF_PIXEL
    return out + b";"


def mkv_claiming(width: int, height: int) -> bytes:
    """A Matroska MJPEG video whose track and frames say ``width`` x ``height``."""
    frame = jpeg_claiming(width, height)
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream: Any = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        for index in range(3):
            packet = av.Packet(frame)
            packet.stream = stream
            packet.pts = packet.dts = index
            packet.time_base = Fraction(1, 25)
            out.mux(packet)
    return buf.getvalue()


async def thumbnail_state(c: Client, token: str, data: bytes, name: str) -> dict[str, Any]:
    file_id = await tus_upload(c, token, data, name)
    return await processed(c, token, file_id)


async def assert_pool_works(c: Client, token: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 90, 200)).save(buf, "PNG")
    info = await thumbnail_state(c, token, buf.getvalue(), "fine.png")
    assert info["thumbnails"] == "ready", info


async def test_bombs_are_refused_from_their_headers_with_a_reason(tmp_path: Path) -> None:
    bombs = {
        "bomb.png": (png_bomb(SIDE, SIDE), "image/png", "image too large"),
        "bomb.jpg": (jpeg_claiming(SIDE, SIDE), "image/jpeg", "image too large"),
        "screen.gif": (gif((SIDE, SIDE), [(1, 1)]), "image/gif", "image too large"),
        "frame.gif": (gif((1, 1), [(SIDE, SIDE)]), "image/gif", "image too large"),
        "bomb.mkv": (mkv_claiming(SIDE, SIDE), "video/x-matroska", "video too large"),
        "huge.png": (png_bomb(HUGE, HUGE), "image/png", "image too large"),
        "huge.jpg": (jpeg_claiming(HUGE, HUGE), "image/jpeg", "image too large"),
        "huge-frame.gif": (gif((1, 1), [(HUGE, HUGE)]), "image/gif", "image too large"),
    }
    assert len(bombs["bomb.png"][0]) < 400_000, "a few hundred KB claiming 199 M pixels"
    async with running(tmp_path) as c:
        token = await c.register("alice")
        for name, (data, mime, reason) in bombs.items():
            info = await thumbnail_state(c, token, data, name)
            assert info["mime"] == mime, info
            assert info["thumbnails"] == "failed", (name, info)
            error = info["meta"]["error"]
            assert error.startswith(reason) and "pixels" in error, (name, error)
            assert f"over {LIMIT} pixels" in error, (name, error)  # our limit, not Pillow's 2x
            assert str(2 * LIMIT) not in error and "DOS" not in error, (name, error)
            assert info["meta"]["code"] == "media_too_large", info["meta"]
        await assert_pool_works(c, token)
        # Many frames cost nothing more: only the first is decoded, the rest are counted.
        many = gif((32, 32), [(1, 1)] * 20_000)
        info = await thumbnail_state(c, token, many, "many.gif")
        assert info["thumbnails"] == "ready" and info["meta"]["frames"] == 20_000, info


async def test_a_picture_over_the_workers_memory_is_refused_and_the_pool_goes_on(
    tmp_path: Path,
) -> None:
    """Under the pixel limit but over the worker's address space: a refusal, not a crash."""
    async with running(tmp_path, **{"plugins.files.worker_memory_mb": 512}) as c:
        token = await c.register("alice")
        await assert_pool_works(c, token)
        # 100 M pixels (the limit) of RGB: 400 MB decoded, on top of the worker's own ~300 MB.
        info = await thumbnail_state(c, token, png_bomb(10_000, 10_000, 3), "wide.png")
        assert info["thumbnails"] == "failed", info
        assert "memory" in info["meta"]["error"], info
        assert info["meta"]["code"] == "media_too_large", info["meta"]
        await assert_pool_works(c, token)
