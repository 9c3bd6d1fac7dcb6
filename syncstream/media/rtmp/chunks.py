"""RTMP handshake and chunk stream (de)multiplexing over asyncio streams.

pyrtmp's own chunk reader parses bit by bit with bitstring and drops the timestamp delta of
type-3 chunks that start a new message (FFmpeg sends those for constant-size audio frames), so
the chunk layer is ours: ``readexactly`` on whole headers, absolute timestamps kept per chunk
stream (RTMP spec §5.3.1).
"""

from __future__ import annotations

import asyncio
import os
import struct
from dataclasses import dataclass

HANDSHAKE_SIZE = 1536
MAX_MESSAGE = 16 << 20  # no audio/video/command message is anywhere near this

# Message type ids
SET_CHUNK_SIZE, ABORT, ACK, USER_CONTROL, WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH = 1, 2, 3, 4, 5, 6
AUDIO, VIDEO = 8, 9
DATA_AMF3, COMMAND_AMF3, DATA_AMF0, COMMAND_AMF0, AGGREGATE = 15, 17, 18, 20, 22


class ProtocolError(Exception):
    """The peer broke the RTMP protocol; the connection is dropped."""


@dataclass(slots=True)
class Message:
    type_id: int
    stream_id: int
    timestamp: int  # milliseconds, absolute
    payload: bytes


@dataclass(slots=True)
class _ChunkStream:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    partial: bytearray | None = None


async def server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """C0+C1 -> S0+S1+S2 -> C2 (the simple handshake, accepted by OBS and FFmpeg)."""
    c0c1 = await reader.readexactly(1 + HANDSHAKE_SIZE)
    if c0c1[0] != 3:
        raise ProtocolError(f"unsupported RTMP version {c0c1[0]}")
    s1 = bytes(8) + os.urandom(HANDSHAKE_SIZE - 8)
    writer.write(b"\x03" + s1 + c0c1[1:])
    await writer.drain()
    await reader.readexactly(HANDSHAKE_SIZE)


class ChunkReader:
    """Reassembles messages from the interleaved chunks of one connection."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.chunk_size = 128
        self.bytes_read = 0
        self._streams: dict[int, _ChunkStream] = {}

    async def _read(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        self.bytes_read += n
        return data

    async def read_message(self) -> Message:
        """The next complete message (raises IncompleteReadError at end of stream)."""
        while True:
            message = await self._read_chunk()
            if message is not None:
                return message

    async def _read_chunk(self) -> Message | None:
        first = (await self._read(1))[0]
        fmt, csid = first >> 6, first & 0x3F
        if csid == 0:
            csid = 64 + (await self._read(1))[0]
        elif csid == 1:
            low, high = await self._read(2)
            csid = 64 + low + 256 * high
        cs = self._streams.get(csid)
        if cs is None:
            if fmt != 0:
                raise ProtocolError(f"chunk stream {csid} starts without a full header")
            cs = self._streams[csid] = _ChunkStream()
        new_message = cs.partial is None
        if fmt == 0:
            ts, length, type_id, stream_id = struct.unpack(">3s3sBI", await self._read(11))
            cs.length, cs.type_id = int.from_bytes(length, "big"), type_id
            cs.stream_id = int.from_bytes(stream_id.to_bytes(4, "big"), "little")
            raw = int.from_bytes(ts, "big")
            cs.extended = raw == 0xFFFFFF
            if cs.extended:
                raw = struct.unpack(">I", await self._read(4))[0]
            cs.timestamp, cs.delta = raw, 0
        elif fmt in (1, 2):
            header = await self._read(7 if fmt == 1 else 3)
            raw = int.from_bytes(header[:3], "big")
            if fmt == 1:
                cs.length, cs.type_id = int.from_bytes(header[3:6], "big"), header[6]
            cs.extended = raw == 0xFFFFFF
            if cs.extended:
                raw = struct.unpack(">I", await self._read(4))[0]
            cs.delta = raw
            cs.timestamp += raw
        else:
            if cs.extended:
                await self._read(4)
            if new_message:
                cs.timestamp += cs.delta
        if cs.length > MAX_MESSAGE:
            raise ProtocolError(f"message of {cs.length} bytes is too large")
        if new_message:
            cs.partial = bytearray()
        assert cs.partial is not None
        take = min(self.chunk_size, cs.length - len(cs.partial))
        cs.partial += await self._read(take)
        if len(cs.partial) < cs.length:
            return None
        payload, cs.partial = bytes(cs.partial), None
        message = Message(cs.type_id, cs.stream_id, cs.timestamp & 0xFFFFFFFF, payload)
        if message.type_id == SET_CHUNK_SIZE:
            if len(payload) < 4:
                raise ProtocolError("short SetChunkSize")
            size = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
            if not 1 <= size <= MAX_MESSAGE:
                raise ProtocolError(f"invalid chunk size {size}")
            self.chunk_size = size
        elif message.type_id == ABORT:
            aborted = self._streams.get(struct.unpack(">I", payload[:4])[0])
            if aborted is not None:
                aborted.partial = None
        return message


def encode_message(
    csid: int, type_id: int, stream_id: int, payload: bytes, chunk_size: int, timestamp: int = 0
) -> bytes:
    """One message as chunks: a type-0 header, then type-3 continuations."""
    header = struct.pack(">B", csid & 0x3F) + timestamp.to_bytes(3, "big")
    header += len(payload).to_bytes(3, "big") + bytes([type_id]) + struct.pack("<I", stream_id)
    out = bytearray(header)
    for offset in range(0, len(payload), chunk_size):
        if offset:
            out.append(0xC0 | (csid & 0x3F))
        out += payload[offset : offset + chunk_size]
    return bytes(out)
