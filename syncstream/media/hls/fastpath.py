"""A fast path for live HLS delivery: the node's own protocol on its listening socket.

Why: at a thousand LL-HLS viewers each part lands with ~2,000 blocked requests to answer at
once (a playlist reload and the part itself per viewer). Through aiohttp each answer pays for
request parsing, routing, the middleware chain and a response object; answered one after
another, the last viewer heard of a part far later than the first. Here the happy path of the
public live routes (``routes.py``) - the playlist incl. blocking ``_HLS_msn``/``_HLS_part``
reloads, parts incl. the preload hint's, segments and init sections - is answered straight from
the timeline: one request head parsed, one response head written, and the cached body object
handed to the transport as is (never copied).

Everything else stays aiohttp's: another path or method, HTTP/1.0, a header this path does not
implement (Range, conditionals, Upgrade, a body ...), an unknown stream or file, an error known
before waiting, an oversized head. At that request the connection is handed over - a protocol
from aiohttp's low-level server (``web.Server``, the AppRunner's protocol factory) takes the
transport and the bytes read so far - and it is aiohttp's from then on. Errors that only appear
after a blocking wait (the part did not come in time, the stream ended) are answered here with
the same problem JSON as the routes'.

Requests on one connection are answered in order: the next head is read only once the previous
answer is written, and not while the transport's buffer is above its high-water mark (reading
pauses while unread input piles up). Answers are counted in ``syncstream_http_requests_total``
under the routes' names (aggregated until the next scrape) but not timed: most of a blocking
request's time is the wait it asked for. ``live.hls_fast_path: false`` turns this off.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import cast

import structlog

from ...api import parse_natural
from ...errors import PROBLEM_CONTENT_TYPE, Problem
from ...metrics import Metrics
from ..live import LiveService
from ..routes import (
    INIT_MAX_AGE,
    INIT_RE,
    NAME,
    PART_MAX_AGE,
    PART_RE,
    PLAYLIST_HEADERS,
    PLAYLIST_TYPE,
    SEGMENT_MAX_AGE,
    SEGMENT_RE,
    media_headers,
    msn_too_far,
    not_yet,
    part_not_found,
    part_too_far,
    stream_starting,
    wait_timeout,
)
from .timeline import Timeline

log = structlog.get_logger(__name__)

HEAD_LIMIT = 8190  # bytes of a request head (aiohttp's line limit); longer ones go to aiohttp
IDLE_SECONDS = 75.0  # an idle keep-alive connection is closed after this (as aiohttp does)
SWEEP_SECONDS = 15.0
PATH_RE = re.compile(rf"/live/({NAME})/([a-z0-9.-]{{1,48}})")
HEADER_NAME_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Request headers whose meaning this path does not implement: such requests are aiohttp's.
FOREIGN_HEADERS = frozenset(
    {
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"upgrade",
        b"expect",
        b"transfer-encoding",
        b"content-length",
    }
)
PLAYLIST_ROUTE = "/live/{name}/index.m3u8"  # the routes' canonical names, for the metrics
MEDIA_ROUTE = "/live/{name}/{file}"
MAX_QUERY_NUMBER = 10**12 - 1


class Shape:
    """Status and headers of an answer, with the head's unchanging part rendered once."""

    __slots__ = ("fields", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.fields = _fields(status, reason, headers)


def _fields(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status} {reason}\r\n{lines}".encode("latin-1")


# An answer: its shape and its body (sent as is).
Reply = tuple[Shape, bytes]
Cors = Callable[[str], dict[str, str] | None]
PLAYLIST = Shape(200, "OK", {"Content-Type": PLAYLIST_TYPE, **PLAYLIST_HEADERS})
PART = Shape(200, "OK", media_headers(PART_MAX_AGE))
SEGMENT = Shape(200, "OK", media_headers(SEGMENT_MAX_AGE))
INIT = Shape(200, "OK", media_headers(INIT_MAX_AGE))


def _problem(problem: Problem) -> Reply:
    headers = {"Content-Type": f"{PROBLEM_CONTENT_TYPE}; charset=utf-8", **problem.headers}
    return Shape(problem.status, problem.title, headers), problem.text().encode()


class LiveFastPath:
    """The listening socket's protocol factory: a :class:`LiveConnection` per connection."""

    def __init__(
        self,
        service: LiveService,
        fallback: Callable[[], asyncio.Protocol],
        cors: Cors,
        metrics: Metrics,
        access_log: bool,
    ) -> None:
        self.service = service
        self.fallback = fallback
        self.cors = cors
        self.metrics = metrics
        self.access_log = access_log
        self.connections: set[LiveConnection] = set()
        self.draining = False
        self._date = b""
        self._date_second = -1
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> LiveConnection:
        return LiveConnection(self)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def pre_shutdown(self) -> None:
        """Close idle connections; those with a request in flight close once it is answered."""
        self.draining = True
        for connection in list(self.connections):
            connection.close_if_idle()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.abort()

    def _sweep(self) -> None:
        cutoff = time.monotonic() - IDLE_SECONDS
        for connection in list(self.connections):
            if connection.seen < cutoff:
                connection.close_if_idle()
        self.start()

    # --- answering ------------------------------------------------------------------------

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = formatdate(now, usegmt=True).encode()
        return self._date

    def head(self, reply: Reply, origin: str | None, close: bool) -> bytes:
        shape, body = reply
        cors = self.cors(origin) if origin is not None else None
        fields = (
            _fields(shape.status, shape.reason, {**shape.headers, **cors}) if cors else shape.fields
        )
        return b"%sContent-Length: %d\r\nDate: %s\r\n%s\r\n" % (
            fields,
            len(body),
            self.date(),
            b"Connection: close\r\n" if close else b"",
        )

    def served(
        self, method: str, route: str, path: str, status: int, started: float, ip: str
    ) -> None:
        self.metrics.count_request(method, route, status)
        if self.access_log:
            log.info(
                "http.request",
                method=method,
                path=path,
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
                ip=ip,
            )

    def serve(self, connection: LiveConnection, head: bytes) -> bool:
        """Answer (or start waiting to answer) the request with this head; False: not ours."""
        lines = head.split(b"\r\n")
        request_line = lines[0].split(b" ")
        if (
            len(request_line) != 3
            or request_line[2] != b"HTTP/1.1"
            or request_line[0] not in (b"GET", b"HEAD")
        ):
            return False
        origin: str | None = None
        agent = ""
        close = False
        for line in lines[1:]:
            raw_name, colon, raw_value = line.partition(b":")
            if not colon or not HEADER_NAME_RE.fullmatch(raw_name):
                return False
            name = raw_name.lower()
            if name in FOREIGN_HEADERS:
                return False
            if name == b"connection":
                tokens = {t.strip() for t in raw_value.lower().split(b",")}
                if b"upgrade" in tokens:
                    return False
                close = close or b"close" in tokens
            elif name == b"origin" and origin is None:
                origin = raw_value.strip().decode("utf-8", "surrogateescape")
            elif name == b"user-agent" and not agent:
                agent = raw_value.strip().decode("utf-8", "surrogateescape")
        path, question, query = request_line[1].decode("latin-1").partition("?")
        match = PATH_RE.fullmatch(path)
        if match is None:
            return False
        stream = self.service.streams.get(match.group(1))
        if stream is None:
            return False
        timeline, file = stream.timeline, match.group(2)
        method = request_line[0].decode()
        if file == "index.m3u8":
            numbers = _blocking_query(query) if question else (None, None)
            if numbers is None:
                return False
            msn, part = numbers
            if (part is not None and msn is None) or (
                msn is not None and msn_too_far(timeline, msn)
            ):
                return False
            if msn is None and not timeline.segments:
                return False
            stream.saw_hls_viewer(f"{connection.remote}|{agent}")
            connection.start(method, PLAYLIST_ROUTE, path, origin, close)
            if msn is None:
                connection.reply(self._playlist(timeline))
            else:
                at = (msn, part)
                connection.wait(
                    timeline,
                    lambda: timeline.has_part(*at),
                    lambda: self._playlist(timeline),
                )
            return True
        if question:
            return False
        reply: Reply | None = None
        if (found := PART_RE.match(file)) and found.group(1) == timeline.epoch:
            number = int(found.group(2))
            if number >= timeline.next_part:
                if part_too_far(timeline, number):
                    return False
                connection.start(method, MEDIA_ROUTE, path, origin, close)
                connection.wait(
                    timeline,
                    lambda: number < timeline.next_part,
                    lambda: self._part(timeline, number),
                )
                return True
            if timeline.part(number) is not None:
                reply = self._part(timeline, number)
        elif (found := SEGMENT_RE.match(file)) and found.group(1) == timeline.epoch:
            segment = timeline.segment(int(found.group(2)))
            if segment is not None and segment.complete:
                reply = SEGMENT, segment.data()
        elif (found := INIT_RE.match(file)) and found.group(1) == timeline.epoch:
            init = timeline.inits.get(int(found.group(2)))
            if init is not None:
                reply = INIT, init
        if reply is None:
            return False
        connection.start(method, MEDIA_ROUTE, path, origin, close)
        connection.reply(reply)
        return True

    def _playlist(self, timeline: Timeline) -> Reply:
        if not timeline.segments:
            return _problem(stream_starting())
        return PLAYLIST, timeline.playlist()

    def _part(self, timeline: Timeline, number: int) -> Reply:
        part = timeline.part(number)
        if part is None:
            return _problem(part_not_found())
        return PART, part.data


def _blocking_query(query: str) -> tuple[int | None, int | None] | None:
    """(``_HLS_msn``, ``_HLS_part``) of a playlist query; None for any other query."""
    msn = part = None
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        number = parse_natural(value, MAX_QUERY_NUMBER) if equals else None
        if number is None:
            return None
        if key == "_HLS_msn" and msn is None:
            msn = number
        elif key == "_HLS_part" and part is None:
            part = number
        else:
            return None
    return msn, part


class LiveConnection(asyncio.Protocol):
    """One client connection while its requests are live-media GETs; handed to aiohttp at the
    first that is not."""

    def __init__(self, path: LiveFastPath) -> None:
        self.path = path
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self.seen = time.monotonic()
        self._buffer = bytearray()
        self._eof = False
        self._write_paused = False
        self._read_paused = False
        # The request being answered: how it is labelled, and while it waits, what for.
        self._method = "GET"
        self._route = ""
        self._path = ""
        self._origin: str | None = None
        self._close = False
        self._started = 0.0
        self._busy = False
        self._timeline: Timeline | None = None
        self._ready: Callable[[], bool] = bool
        self._finish: Callable[[], Reply] | None = None
        self._changed: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else ""
        self.path.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.seen = time.monotonic()
        self._buffer += data
        if self._busy or self._write_paused:
            if len(self._buffer) > HEAD_LIMIT and not self._read_paused and self.transport:
                self._read_paused = True
                self.transport.pause_reading()
            return
        self._advance()

    def eof_received(self) -> bool:
        """The client sends nothing more: what it asked is still answered, then it is closed."""
        self._eof = True
        if not self._busy:
            self._advance()
        return True

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._busy:
            self._advance()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self.transport = None
        self.path.connections.discard(self)

    # --- the connection's life ------------------------------------------------------------

    def close_if_idle(self) -> None:
        if not self._busy and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _advance(self) -> None:
        """Serve the buffered requests in order until one waits, the transport's buffer is
        full, or one is not ours (then the connection becomes aiohttp's)."""
        while not self._busy and not self._write_paused and self.transport is not None:
            end = self._buffer.find(b"\r\n\r\n", 0, HEAD_LIMIT + 4)
            if end < 0:
                if len(self._buffer) > HEAD_LIMIT:
                    self._hand_over()
                elif self._eof or (self.path.draining and not self._buffer):
                    self.transport.close()
                elif self._read_paused:
                    self._read_paused = False
                    self.transport.resume_reading()
                return
            if not self.path.serve(self, bytes(self._buffer[:end])):
                self._hand_over()
                return
            del self._buffer[: end + 4]

    def _hand_over(self) -> None:
        transport = self.transport
        assert transport is not None
        self.transport = None
        self.path.connections.discard(self)
        handler = self.path.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._buffer:
            handler.data_received(bytes(self._buffer))
        if self._eof:
            handler.eof_received()
        if self._read_paused:
            transport.resume_reading()

    # --- one request ----------------------------------------------------------------------

    def start(self, method: str, route: str, path: str, origin: str | None, close: bool) -> None:
        self._method, self._route, self._path = method, route, path
        self._origin, self._close = origin, close
        self._started = time.perf_counter()
        self._busy = True

    def reply(self, reply: Reply) -> None:
        """Write the answer to the current request."""
        transport = self.transport
        self._busy = False
        self.seen = time.monotonic()
        if transport is None:
            return
        close = self._close or self.path.draining or self._eof
        head = self.path.head(reply, self._origin, close)
        if self._method == "HEAD":
            transport.write(head)
        else:
            transport.writelines((head, reply[1]))
        self.path.served(
            self._method, self._route, self._path, reply[0].status, self._started, self.remote
        )
        if close:
            self._buffer.clear()
            self.transport = None
            self.path.connections.discard(self)
            transport.close()

    def wait(
        self, timeline: Timeline, ready: Callable[[], bool], finish: Callable[[], Reply]
    ) -> None:
        """Answer with ``finish()`` once ``ready()`` or the stream ended; 503 on timeout."""
        if ready() or timeline.ended:
            self.reply(finish())
            return
        self._timeline, self._ready, self._finish = timeline, ready, finish
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(wait_timeout(timeline), self._timed_out)
        self._listen()

    def _listen(self) -> None:
        assert self._timeline is not None
        self._changed = self._timeline.changed()
        self._changed.add_done_callback(self._woken)

    def _woken(self, changed: asyncio.Future[None]) -> None:
        self._changed = None
        assert self._timeline is not None
        if self._timeline.ended or self._ready():
            self._answer(ready=True)
        else:
            self._listen()

    def _timed_out(self) -> None:
        self._timer = None
        self._answer(ready=self._ready())

    def _answer(self, ready: bool) -> None:
        finish = self._finish
        assert finish is not None
        self._stop_waiting()
        self.reply(finish() if ready else _problem(not_yet()))
        if not self._busy:
            self._advance()

    def _stop_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._changed is not None:
            self._changed.remove_done_callback(self._woken)
            self._changed = None
        self._timeline, self._finish = None, None
