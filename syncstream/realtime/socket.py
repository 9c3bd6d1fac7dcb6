"""The gateway's WebSocket: aiohttp's, except that text frames reach a callback as they are
parsed instead of waiting in a queue for a ``receive()``.

With ``async for msg in ws`` every socket keeps a read pending between two messages — three
coroutines, a future, the last message, ~8 objects the garbage collector tracks — made
afresh for each message and alive until the next one. At a move a second on 2,000 sockets
they outlive the young generation and every middle collection walks them all (~12k objects
of ~35k, a 5-15 ms pause: the move round trip's tail). Here the handler's one ``receive()``
waits only for control frames (close, ping, pong, errors), which aiohttp still handles as
always; it is made once per socket and lives as long as the socket.

This hooks into aiohttp's reader (``_post_start`` and the data queue), hence the pinned
minor version of aiohttp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE

TextHandler = Callable[[str], None]


class _TextTap(WebSocketDataQueue):
    """The socket's message queue, except that text messages go to ``on_text`` at once."""

    def __init__(self, protocol: Any, limit: int, *, loop: Any, on_text: TextHandler) -> None:
        super().__init__(protocol, limit, loop=loop)
        self.on_text = on_text

    def feed_data(self, data: Any, size: int) -> None:
        if data[0] is WSMsgType.TEXT:
            self.on_text(data[1])
        else:
            super().feed_data(data, size)


class GatewaySocket(web.WebSocketResponse):
    """A server WebSocket whose text frames go to ``on_text`` (called inside the protocol's
    ``data_received``: it must queue the work, not do it, and must not raise)."""

    def __init__(self, on_text: TextHandler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_text = on_text

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        # aiohttp's own, with the tap in place of its data queue.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        assert self._loop is not None
        self._reader = _TextTap(
            request._protocol, DEFAULT_CHUNK_SIZE, loop=self._loop, on_text=self.on_text
        )
        self._parser = WebSocketReader(
            self._reader, self._max_msg_size, compress=bool(self._compress), decode_text=True
        )
        on_data = None if self._heartbeat is None else self._on_data_received
        request.protocol.set_parser(self._parser, data_received_cb=on_data)
        request.protocol.keep_alive(False)
