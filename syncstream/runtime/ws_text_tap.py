"""The gateway's WebSocket: aiohttp's, except that text frames reach a callback as they are
parsed instead of waiting in a queue for a ``receive()``.

With ``async for msg in ws`` every socket keeps a read pending between two messages — three
coroutines, a future, the last message, ~8 objects the garbage collector tracks — made
afresh for each message and alive until the next one. With many busy sockets they outlive
the young generation and every middle collection walks them all. Here the handler's one
``receive()`` waits only for control frames (close, ping, pong, errors), which aiohttp still
handles as always; it is made once per socket and lives as long as the socket.

This replaces aiohttp's ``WebSocketResponse._post_start`` and its data queue
(``aiohttp._websocket.reader``), which are not public. Off (``runtime.ws_text_tap: false``),
or on an aiohttp where they changed (:func:`problem`), :func:`gateway_socket` gives a plain
``WebSocketResponse`` and text frames arrive through ``receive()`` like any other message.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from .seams import SEAMS
from .versions import outside

try:
    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
    from aiohttp.helpers import DEFAULT_CHUNK_SIZE
except ImportError as exc:  # an aiohttp that moved them: the plain socket is used
    _missing: str | None = f"aiohttp's WebSocket reader moved ({exc})"
    WebSocketDataQueue = WebSocketReader = None  # type: ignore[assignment]
    DEFAULT_CHUNK_SIZE = 0
else:
    _missing = None

CHECKED = ((3, 14), (3, 15))  # the aiohttp releases this was written and tested against
TextHandler = Callable[[str], None]


def problem() -> str | None:
    """Why the tap cannot be used with the installed aiohttp (None: it can)."""
    if _missing is not None:
        return _missing
    if reason := outside("aiohttp", *CHECKED):
        return reason
    post_start = getattr(web.WebSocketResponse, "_post_start", None)
    if post_start is None:
        return "WebSocketResponse._post_start is gone"
    if list(inspect.signature(post_start).parameters) != ["self", "request", "protocol", "writer"]:
        return "WebSocketResponse._post_start takes other arguments"
    if "feed_data" not in vars(WebSocketDataQueue):
        return "WebSocketDataQueue.feed_data is gone"
    return None


def usable(wanted: bool) -> bool:
    """Whether the gateway may use the tap (its switch, and this aiohttp); checked and
    recorded once, when the gateway is made."""
    return SEAMS.record("ws_text_tap", wanted, problem())


def gateway_socket(on_text: TextHandler, tap: bool, **kwargs: Any) -> web.WebSocketResponse:
    """A server WebSocket for the gateway: with ``tap`` (see :func:`usable`), text frames go to
    ``on_text`` (called inside the protocol's ``data_received``: it must queue the work, not do
    it, and must not raise) and never reach ``receive()``; without, a plain one."""
    if tap:
        return _TappedSocket(on_text, **kwargs)
    return web.WebSocketResponse(**kwargs)


if WebSocketDataQueue is not None:

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

    class _TappedSocket(web.WebSocketResponse):
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
