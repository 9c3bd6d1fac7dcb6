"""RTMP handshake and chunk stream (de)multiplexing.

pyrtmp's own chunk reader parses bit by bit with bitstring and drops the timestamp delta of
type-3 chunks that start a new message (FFmpeg sends those for constant-size audio frames), so
the chunk layer is ours: a parser without I/O (:class:`ChunkParser`) that takes each socket
read whole, absolute timestamps kept per chunk stream (RTMP spec §5.3.1).
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import deque
from dataclasses import dataclass

HANDSHAKE_SIZE = 1536
READ_SIZE = 65536
MESSAGE_HEADER = (11, 7, 3, 0)  # bytes of the message header by chunk format
MAX_MESSAGE = 16 << 20  # no audio/video/command message is anywhere near this
_U32BE, _U32LE = struct.Struct(">I"), struct.Struct("<I")

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


def handshake_reply(c0c1: bytes) -> bytes:
    """S0+S1+S2 for the client's C0+C1 (the simple handshake, accepted by OBS and FFmpeg)."""
    if c0c1[0] != 3:
        raise ProtocolError(f"unsupported RTMP version {c0c1[0]}")
    return b"\x03" + bytes(8) + os.urandom(HANDSHAKE_SIZE - 8) + c0c1[1:]


async def server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """C0+C1 -> S0+S1+S2 -> C2."""
    writer.write(handshake_reply(await reader.readexactly(1 + HANDSHAKE_SIZE)))
    await writer.drain()
    await reader.readexactly(HANDSHAKE_SIZE)


class ChunkParser:
    """Reassembles messages from the interleaved chunks of one connection (no I/O).

    ``feed`` takes whatever one socket read returned and parses every complete chunk in it at
    once, so a read costs one call however many chunks it holds. Bytes are parsed where they
    lie: only an incomplete tail is kept (copied) until the next read completes it.
    """

    def __init__(self) -> None:
        self.chunk_size = 128
        self.bytes_read = 0
        self._streams: dict[int, _ChunkStream] = {}
        self._tail = b""

    def feed(self, data: bytes) -> list[Message]:
        """The messages completed by ``data`` (a :class:`ProtocolError` for broken input)."""
        self.bytes_read += len(data)
        buf = self._tail + data if self._tail else data
        messages: list[Message] = []
        pos, end = 0, len(buf)
        while pos < end:
            done = self._chunk(buf, pos, end, messages)
            if done < 0:
                break
            pos = done
        self._tail = buf[pos:] if pos < end else b""
        return messages

    def _chunk(self, buf: bytes, pos: int, end: int, messages: list[Message]) -> int:
        """Consume the chunk at ``pos`` if ``buf`` holds all of it: its end, or -1 (wait for
        more bytes). A message it completes is appended to ``messages``."""
        first = buf[pos]
        fmt, csid = first >> 6, first & 0x3F
        pos += 1
        if csid == 0:
            if pos + 1 > end:
                return -1
            csid, pos = 64 + buf[pos], pos + 1
        elif csid == 1:
            if pos + 2 > end:
                return -1
            csid, pos = 64 + buf[pos] + 256 * buf[pos + 1], pos + 2
        header = MESSAGE_HEADER[fmt]
        if pos + header > end:
            return -1
        cs = self._streams.get(csid)
        if cs is None and fmt != 0:
            raise ProtocolError(f"chunk stream {csid} starts without a full header")
        raw = int.from_bytes(buf[pos : pos + 3], "big") if fmt < 3 else 0
        extended = raw == 0xFFFFFF if fmt < 3 else bool(cs and cs.extended)
        length = int.from_bytes(buf[pos + 3 : pos + 6], "big") if fmt < 2 else cs.length  # type: ignore[union-attr]
        if length > MAX_MESSAGE:
            raise ProtocolError(f"message of {length} bytes is too large")
        body = pos + header + (4 if extended else 0)
        partial = cs.partial if cs is not None and fmt != 0 else None
        take = min(self.chunk_size, length - (len(partial) if partial is not None else 0))
        if body + take > end:
            return -1
        # The whole chunk is buffered: apply it.
        if cs is None:
            cs = self._streams[csid] = _ChunkStream()
        if extended:
            raw = _U32BE.unpack_from(buf, pos + header)[0]
        new_message = fmt == 0 or cs.partial is None
        if fmt == 0:
            cs.timestamp, cs.delta = raw, 0
            cs.length, cs.type_id = length, buf[pos + 6]
            cs.stream_id = _U32LE.unpack_from(buf, pos + 7)[0]
        elif fmt == 1:
            cs.length, cs.type_id = length, buf[pos + 6]
            cs.delta = raw
            cs.timestamp += raw
        elif fmt == 2:
            cs.delta = raw
            cs.timestamp += raw
        elif new_message:
            cs.timestamp += cs.delta
        cs.extended = extended
        stop = body + take
        if new_message:
            if take == length:  # the usual case: a message in one chunk, one copy
                cs.partial = None
                self._complete(cs, buf[body:stop], messages)
                return stop
            cs.partial = bytearray()
        assert cs.partial is not None
        cs.partial += buf[body:stop]
        if len(cs.partial) >= cs.length:
            payload, cs.partial = bytes(cs.partial), None
            self._complete(cs, payload, messages)
        return stop

    def _complete(self, cs: _ChunkStream, payload: bytes, messages: list[Message]) -> None:
        message = Message(cs.type_id, cs.stream_id, cs.timestamp & 0xFFFFFFFF, payload)
        if message.type_id in (SET_CHUNK_SIZE, ABORT):
            self._control(message)
        messages.append(message)

    def _control(self, message: Message) -> None:
        """Apply the chunk-layer control messages as they pass."""
        payload = message.payload
        if message.type_id == SET_CHUNK_SIZE:
            if len(payload) < 4:
                raise ProtocolError("short SetChunkSize")
            size = _U32BE.unpack_from(payload)[0] & 0x7FFFFFFF
            if not 1 <= size <= MAX_MESSAGE:
                raise ProtocolError(f"invalid chunk size {size}")
            self.chunk_size = size
        elif message.type_id == ABORT and len(payload) >= 4:
            aborted = self._streams.get(_U32BE.unpack_from(payload)[0])
            if aborted is not None:
                aborted.partial = None


class ChunkReader:
    """:class:`ChunkParser` over an ``asyncio.StreamReader`` (the ``rtmp.fast_reader: false``
    path): one ``read`` per await, messages handed out one at a time."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.parser = ChunkParser()
        self._ready: deque[Message] = deque()

    @property
    def bytes_read(self) -> int:
        return self.parser.bytes_read

    async def read_message(self) -> Message:
        """The next complete message (raises IncompleteReadError at end of stream)."""
        while not self._ready:
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            self._ready.extend(self.parser.feed(data))
        return self._ready.popleft()


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
