"""The RTMP ingest server: what OBS and FFmpeg need to publish, and nothing else.

connect -> (releaseStream, FCPublish) -> createStream -> publish <key> -> @setDataFrame +
audio/video messages. The stream key is checked at ``publish``; refusals are answered with an
``onStatus`` error before the connection is closed. Playback over RTMP is not offered.

:class:`Connection` knows what the messages mean; two drivers feed it. The default
(``rtmp.fast_reader: true``) is :class:`RtmpProtocol`, an ``asyncio.Protocol`` that parses
each socket read inside ``data_received`` and hands the media straight to the session: no task
wakeup, future or stream buffer per read, which was most of the CPU an ingested stream cost.
``rtmp.fast_reader: false`` switches back to the plain asyncio-streams loop (:func:`serve_streams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from collections.abc import Awaitable
from typing import Any, cast

import structlog

from ..ingest import TAG_AUDIO, TAG_VIDEO, MediaError
from ..live import LiveService, PublishRefused, PublishSession
from . import amf
from .chunks import (
    ACK,
    AGGREGATE,
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    HANDSHAKE_SIZE,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkParser,
    ChunkReader,
    Message,
    ProtocolError,
    encode_message,
    handshake_reply,
    server_handshake,
)

log = structlog.get_logger(__name__)
assert (AUDIO, VIDEO) == (TAG_AUDIO, TAG_VIDEO)  # messages go on as FLV tags of the same type

OUT_CHUNK_SIZE = 4096
WINDOW = 5_000_000
HANDSHAKE_TIMEOUT = 10.0
CSID_CONTROL, CSID_COMMAND, CSID_STREAM = 2, 3, 5
STREAM_ID = 1


class Connection:
    """One RTMP client connection: what its messages mean. A driver feeds it the messages
    (:meth:`handle`) and reports each read (:meth:`received`)."""

    def __init__(
        self, service: LiveService, transport: asyncio.WriteTransport, idle_timeout: float
    ) -> None:
        self.service = service
        self.transport = transport
        self.idle_timeout = idle_timeout
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer = str(peer[0])
        self.app = ""
        self.session: PublishSession | None = None
        self.closing = False
        self.ack_window = 0
        self.acked = 0
        self._loop = asyncio.get_running_loop()
        self._last_read = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    def start_watchdog(self) -> None:
        """The handshake is done: from now on a peer silent for ``idle_timeout`` is dropped."""
        self._last_read = self._loop.time()
        self._watchdog = self._loop.call_later(self.idle_timeout, self._check_idle)

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def received(self, bytes_read: int) -> None:
        """Bytes arrived (``bytes_read`` in all): the peer is alive; acknowledge each window."""
        self._last_read = self._loop.time()
        if self.ack_window and bytes_read - self.acked >= self.ack_window:
            self.acked = bytes_read
            self._send(CSID_CONTROL, ACK, struct.pack(">I", bytes_read & 0xFFFFFFFF))

    def _check_idle(self) -> None:
        """Drop a peer that sent nothing for ``idle_timeout`` (one timer, not one per read)."""
        silent = self._loop.time() - self._last_read
        if silent >= self.idle_timeout:
            self.close(f"silent for {silent:.0f} s")
        elif not self.closing:
            self._watchdog = self._loop.call_later(self.idle_timeout - silent, self._check_idle)

    def close(self, reason: str) -> None:
        """Drop the connection (kick, refusal, takeover); the read loop ends."""
        if not self.closing:
            log.info("rtmp.closing", peer=self.peer, reason=reason)
        self.closing = True
        self.transport.close()  # after what is buffered has been sent

    def _send(self, csid: int, type_id: int, payload: bytes, stream_id: int = 0) -> None:
        self.transport.write(encode_message(csid, type_id, stream_id, payload, OUT_CHUNK_SIZE))

    def _command(self, *values: Any, stream_id: int = 0) -> None:
        csid = CSID_STREAM if stream_id else CSID_COMMAND
        self._send(csid, COMMAND_AMF0, amf.encode(*values), stream_id)

    def _status(self, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self._command("onStatus", 0, None, info, stream_id=STREAM_ID)

    def handle(self, message: Message) -> Awaitable[None] | None:
        """Act on one message; what it returns must be awaited before the next message
        (only ``publish`` returns something: the key check and the webhook)."""
        kind = message.type_id
        if kind in (AUDIO, VIDEO):  # the hot path: FLV tag types equal these ids
            if self.session is not None and message.payload:
                self._media(kind, message.timestamp, message.payload)
        elif kind == AGGREGATE:
            self._aggregate(message)
        elif kind in (COMMAND_AMF0, COMMAND_AMF3):
            payload = message.payload[1:] if kind == COMMAND_AMF3 else message.payload
            return self._on_command(amf.decode_all(payload))
        elif kind == WINDOW_ACK_SIZE and len(message.payload) >= 4:
            self.ack_window = struct.unpack(">I", message.payload[:4])[0]
        return None

    def _media(self, tag: int, timestamp: int, payload: bytes) -> None:
        assert self.session is not None
        try:
            self.session.write(tag, timestamp, payload)
        except MediaError as exc:
            self._status("error", "NetStream.Publish.Failed", str(exc))
            self.close(f"media error: {exc}")

    def _aggregate(self, message: Message) -> None:
        """An aggregate message: FLV tags back to back, timestamps relative to the first."""
        data, pos, base = message.payload, 0, None
        while pos + 11 <= len(data) and self.session is not None:
            tag = data[pos]
            size = int.from_bytes(data[pos + 1 : pos + 4], "big")
            ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
            base = ts if base is None else base
            body = data[pos + 11 : pos + 11 + size]
            if tag in (TAG_AUDIO, TAG_VIDEO) and len(body) == size:
                self._media(tag, message.timestamp + ts - base, body)
            pos += 11 + size + 4

    def _on_command(self, values: list[Any]) -> Awaitable[None] | None:
        if not values or not isinstance(values[0], str):
            raise ProtocolError("a command message without a name")
        name = values[0]
        txid = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        if name == "connect":
            self._connect(txid, values[2] if len(values) > 2 else {})
        elif name in ("releaseStream", "FCPublish", "getStreamLength"):
            if txid:
                self._command("_result", txid, None, None)
        elif name == "createStream":
            self._command("_result", txid, None, float(STREAM_ID))
        elif name == "publish":
            key = values[3] if len(values) > 3 and isinstance(values[3], str) else ""
            return self._publish(key)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            self.end_session(unpublished=True)  # a deliberate stop: no reconnect to wait for
        elif name == "play":
            self._status(
                "error",
                "NetStream.Play.Failed",
                "this server only ingests; watch over HLS or WebRTC",
            )
            self.close("play is not supported")
        return None

    def _connect(self, txid: float, command: Any) -> None:
        self.app = str(command.get("app", "")) if isinstance(command, dict) else ""
        self._send(CSID_CONTROL, WINDOW_ACK_SIZE, struct.pack(">I", WINDOW))
        self._send(CSID_CONTROL, SET_PEER_BANDWIDTH, struct.pack(">IB", WINDOW, 2))
        self._send(CSID_CONTROL, SET_CHUNK_SIZE, struct.pack(">I", OUT_CHUNK_SIZE))
        if self.app.strip("/") != self.service.settings.app:
            self._command(
                "_error",
                txid,
                None,
                {
                    "level": "error",
                    "code": "NetConnection.Connect.Rejected",
                    "description": f"unknown application {self.app!r}",
                },
            )
            self.close(f"unknown application {self.app!r}")
            return
        self._command(
            "_result",
            txid,
            {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,
            },
        )

    async def _publish(self, key: str) -> None:
        if self.session is not None:
            raise ProtocolError("publish twice on one connection")
        key = key.split("?", 1)[0]
        try:
            self.session = await self.service.admit_publisher(key, self.peer, self.close)
        except PublishRefused as refused:
            self._status("error", refused.code, refused.reason)
            self.close(refused.reason)
            return
        self._send(CSID_CONTROL, USER_CONTROL, struct.pack(">HI", 0, STREAM_ID))  # StreamBegin
        self._status("status", "NetStream.Publish.Start", f"{self.session.stream.name} is now live")

    def end_session(self, unpublished: bool = False) -> None:
        """The session is over: ``unpublished`` if the publisher said so, else the connection
        went (the stream then waits ``grace_seconds`` for a reconnect)."""
        if self.session is not None:
            self.session.finish(unpublished)
            self.session = None


def log_end(peer: str, exc: BaseException) -> None:
    """How a connection ended, in the log."""
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionError):
        return  # the peer went away
    if isinstance(exc, TimeoutError):
        log.info("rtmp.timeout", peer=peer)
    elif isinstance(exc, ProtocolError | amf.AmfError):
        log.warning("rtmp.protocol_error", peer=peer, error=str(exc))
    else:
        log.error("rtmp.failed", peer=peer, exc_info=exc)


async def serve_streams(
    conn: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The asyncio-streams driver (``rtmp.fast_reader: false``): one task, an await per read
    and per message."""
    await asyncio.wait_for(server_handshake(reader, writer), HANDSHAKE_TIMEOUT)
    chunks = ChunkReader(reader)
    conn.start_watchdog()
    try:
        while not conn.closing:
            message = await chunks.read_message()
            conn.received(chunks.bytes_read)
            waiter = conn.handle(message)
            if waiter is not None:
                await waiter
            if writer.transport.get_write_buffer_size():
                await writer.drain()
    finally:
        conn.stop_watchdog()


class RtmpProtocol(asyncio.Protocol):
    """The fast driver: every read is parsed inside ``data_received`` and its media handed
    on at once. While a ``publish`` is pending, reading pauses and the messages already read
    wait in order behind it."""

    def __init__(self, server: RtmpServer) -> None:
        self.server = server
        self.parser = ChunkParser()
        self._handshake: bytes | None = b""  # C0+C1+C2 so far; None once complete
        self._backlog: deque[Message] | None = None  # not None while a publish is pending
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Future[None] | None = None  # the pending publish

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.conn = Connection(
            self.server.service, self.transport, self.server.service.settings.idle_timeout_seconds
        )
        self.server._connections.add(self.conn)
        self._timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._too_slow)

    def _too_slow(self) -> None:
        self._fail(TimeoutError())

    def data_received(self, data: bytes) -> None:
        try:
            if self._handshake is not None:
                data = self._shake(data)
                if not data:
                    return
            messages = self.parser.feed(data)
            conn = self.conn
            conn.received(self.parser.bytes_read)
            if self._backlog is not None:
                self._backlog.extend(messages)
                return
            for index, message in enumerate(messages):
                if conn.closing:
                    return
                waiter = conn.handle(message)
                if waiter is not None:
                    self._pause(waiter, deque(messages[index + 1 :]))
                    return
        except Exception as exc:
            self._fail(exc)

    def _shake(self, data: bytes) -> bytes:
        """Collect C0+C1 (answered at once) and C2; what follows them is chunk data."""
        assert self._handshake is not None
        before, buf = len(self._handshake), self._handshake + data
        if before < 1 + HANDSHAKE_SIZE <= len(buf):
            self.transport.write(handshake_reply(buf[: 1 + HANDSHAKE_SIZE]))
        if len(buf) < 1 + 2 * HANDSHAKE_SIZE:
            self._handshake = buf
            return b""
        self._handshake = None
        if self._timer is not None:
            self._timer.cancel()
        self.conn.start_watchdog()
        return buf[1 + 2 * HANDSHAKE_SIZE :]

    def _pause(self, waiter: Awaitable[None], backlog: deque[Message]) -> None:
        """A message must be awaited: stop reading, keep what was read, resume when done."""
        self._backlog = backlog
        self.transport.pause_reading()
        self._task = asyncio.ensure_future(self._wait(waiter))

    def _handle(self, messages: deque[Message]) -> None:
        """Hand on the messages kept while reading was paused, pausing again if need be."""
        conn = self.conn
        while messages and not conn.closing:
            waiter = conn.handle(messages.popleft())
            if waiter is not None:
                self._pause(waiter, messages)
                return

    async def _wait(self, waiter: Awaitable[None]) -> None:
        try:
            await waiter
        except Exception as exc:
            self._fail(exc)
        if self.transport.is_closing():
            self.conn.end_session()  # the peer left while its publish was being checked
            return
        backlog, self._backlog = self._backlog or deque(), None
        self.transport.resume_reading()
        try:
            self._handle(backlog)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        log_end(self.conn.peer, exc)
        self.transport.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.conn.stop_watchdog()
        self.conn.closing = True
        self.server._connections.discard(self.conn)
        self.conn.end_session()


class RtmpServer:
    """Accepts RTMP connections; errors stay inside their connection."""

    def __init__(
        self, service: LiveService, host: str, port: int, fast_reader: bool = True
    ) -> None:
        self.service = service
        self.host, self.port = host, port
        self.fast_reader = fast_reader
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()

    async def start(self) -> None:
        if self.fast_reader:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: RtmpProtocol(self), self.host, self.port
            )
        else:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close("server shutting down")
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        idle = self.service.settings.idle_timeout_seconds
        conn = Connection(self.service, writer.transport, idle)
        self._connections.add(conn)
        try:
            await serve_streams(conn, reader, writer)
        except Exception as exc:
            log_end(conn.peer, exc)
        finally:
            self._connections.discard(conn)
            conn.end_session()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
