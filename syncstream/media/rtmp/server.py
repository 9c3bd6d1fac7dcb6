"""The RTMP ingest server: what OBS and FFmpeg need to publish, and nothing else.

connect -> (releaseStream, FCPublish) -> createStream -> publish <key> -> @setDataFrame +
audio/video messages. The stream key is checked at ``publish``; refusals are answered with an
``onStatus`` error before the connection is closed. Playback over RTMP is not offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

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
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkReader,
    Message,
    ProtocolError,
    encode_message,
    server_handshake,
)

log = structlog.get_logger(__name__)

OUT_CHUNK_SIZE = 4096
WINDOW = 5_000_000
HANDSHAKE_TIMEOUT = 10.0
CSID_CONTROL, CSID_COMMAND, CSID_STREAM = 2, 3, 5
STREAM_ID = 1


class Connection:
    """One RTMP client connection."""

    def __init__(
        self,
        service: LiveService,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle_timeout: float,
    ) -> None:
        self.service = service
        self.reader = reader
        self.writer = writer
        self.idle_timeout = idle_timeout
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = str(peer[0])
        self.app = ""
        self.session: PublishSession | None = None
        self.closing = False
        self.ack_window = 0
        self.acked = 0
        self._last_read = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        await asyncio.wait_for(server_handshake(self.reader, self.writer), HANDSHAKE_TIMEOUT)
        chunks = ChunkReader(self.reader)
        loop = asyncio.get_running_loop()
        self._last_read = loop.time()
        self._watchdog = loop.call_later(self.idle_timeout, self._check_idle)
        try:
            while not self.closing:
                message = await chunks.read_message()
                self._last_read = loop.time()
                if self.ack_window and chunks.bytes_read - self.acked >= self.ack_window:
                    self.acked = chunks.bytes_read
                    self._send(CSID_CONTROL, ACK, struct.pack(">I", chunks.bytes_read & 0xFFFFFFFF))
                await self._dispatch(message)
                if self.writer.transport.get_write_buffer_size():
                    await self.writer.drain()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()

    def _check_idle(self) -> None:
        """Drop a peer that sent nothing for ``idle_timeout`` (one timer, not one per read)."""
        loop = asyncio.get_running_loop()
        silent = loop.time() - self._last_read
        if silent >= self.idle_timeout:
            self.close(f"silent for {silent:.0f} s")
        elif not self.closing:
            self._watchdog = loop.call_later(self.idle_timeout - silent, self._check_idle)

    def close(self, reason: str) -> None:
        """Drop the connection (kick, refusal, takeover); the read loop ends."""
        if not self.closing:
            log.info("rtmp.closing", peer=self.peer, reason=reason)
        self.closing = True
        self.writer.close()

    def _send(self, csid: int, type_id: int, payload: bytes, stream_id: int = 0) -> None:
        self.writer.write(encode_message(csid, type_id, stream_id, payload, OUT_CHUNK_SIZE))

    def _command(self, *values: Any, stream_id: int = 0) -> None:
        csid = CSID_STREAM if stream_id else CSID_COMMAND
        self._send(csid, COMMAND_AMF0, amf.encode(*values), stream_id)

    def _status(self, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self._command("onStatus", 0, None, info, stream_id=STREAM_ID)

    async def _dispatch(self, message: Message) -> None:
        kind = message.type_id
        if kind in (AUDIO, VIDEO):
            if self.session is not None and message.payload:
                tag = TAG_AUDIO if kind == AUDIO else TAG_VIDEO
                self._media(tag, message.timestamp, message.payload)
        elif kind == AGGREGATE:
            self._aggregate(message)
        elif kind in (COMMAND_AMF0, COMMAND_AMF3):
            payload = message.payload[1:] if kind == COMMAND_AMF3 else message.payload
            await self._on_command(amf.decode_all(payload))
        elif kind == WINDOW_ACK_SIZE and len(message.payload) >= 4:
            self.ack_window = struct.unpack(">I", message.payload[:4])[0]

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

    async def _on_command(self, values: list[Any]) -> None:
        if not values or not isinstance(values[0], str):
            raise ProtocolError("a command message without a name")
        name = values[0]
        txid = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        if name == "connect":
            await self._connect(txid, values[2] if len(values) > 2 else {})
        elif name in ("releaseStream", "FCPublish", "getStreamLength"):
            if txid:
                self._command("_result", txid, None, None)
        elif name == "createStream":
            self._command("_result", txid, None, float(STREAM_ID))
        elif name == "publish":
            key = values[3] if len(values) > 3 and isinstance(values[3], str) else ""
            await self._publish(key)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            self.end_session()
        elif name == "play":
            self._status(
                "error",
                "NetStream.Play.Failed",
                "this server only ingests; watch over HLS or WebRTC",
            )
            self.close("play is not supported")

    async def _connect(self, txid: float, command: Any) -> None:
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
            self.session = await self.service.publish(key, self.peer, self.close)
        except PublishRefused as refused:
            self._status("error", refused.code, refused.reason)
            await self.writer.drain()
            self.close(refused.reason)
            return
        self._send(CSID_CONTROL, USER_CONTROL, struct.pack(">HI", 0, STREAM_ID))  # StreamBegin
        self._status("status", "NetStream.Publish.Start", f"{self.session.stream.name} is now live")

    def end_session(self) -> None:
        if self.session is not None:
            self.session.finish()
            self.session = None


class RtmpServer:
    """Accepts RTMP connections; one task per connection, errors stay inside it."""

    def __init__(self, service: LiveService, host: str, port: int) -> None:
        self.service = service
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()

    async def start(self) -> None:
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
        conn = Connection(self.service, reader, writer, self.service.settings.idle_timeout_seconds)
        self._connections.add(conn)
        try:
            await conn.run()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the peer went away
        except TimeoutError:
            log.info("rtmp.timeout", peer=conn.peer)
        except (ProtocolError, amf.AmfError) as exc:
            log.warning("rtmp.protocol_error", peer=conn.peer, error=str(exc))
        except Exception:
            log.exception("rtmp.failed", peer=conn.peer)
        finally:
            self._connections.discard(conn)
            conn.end_session()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
