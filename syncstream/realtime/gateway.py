"""The one WebSocket endpoint, ``/ws``: auth, topics, resume, presence, backpressure, limits.

Frames are JSON ``{"op", "id"?, "topic"?, "data"?}``. Client ops: ``subscribe`` (with optional
``data.since`` + ``data.epoch`` to resume), ``unsubscribe``, ``publish``, ``presence``, ``ping``.
Server frames: ``hello``, ``reply`` (to an ``id``), ``error`` (stable ``code``), ``event``
(``seq``/``epoch`` per topic), ``pong``, and ``unsubscribe`` when the server ends a
subscription because the user's access to the topic was revoked:
``{"op": "unsubscribe", "topic": T, "data": {"reason": R}}`` (R as the revoker said: ``left``,
``kicked``, ``banned``, ``room_private``, ``removed``, ``call_ended``, ``role_changed`` ...).
Nothing published on T after the revocation reaches that socket; see :mod:`.revocation` and
:meth:`Gateway.revoke`.

Topics are ``<namespace>:<name>``. Plugins register namespaces with their permission checks.
The core namespaces: ``user:<user id>`` (that user's private feed), ``broadcast:<name>`` (any
user reads, admins publish), ``bus:<pattern>`` (admins watch bus events live).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, get_args

import structlog
from aiohttp import WSMsgType, web

from .. import jsoncodec
from ..api import dumps
from ..auth import Auth, Session, User
from ..auth.service import Role
from ..bus import Event, EventBus
from ..config import RealtimeSettings
from ..errors import Problem
from ..ids import new_id
from ..metrics import Metrics
from ..ratelimit import TokenBucket
from .control import ControlChannel
from .engine import Broker, BrokerUnavailable, PresenceManager, Publication
from .revocation import NOTICE_TOPIC, Revocation
from .socket import GatewaySocket
from .wire import (
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_RATE_LIMITED,
    CLOSE_SLOW_CONSUMER,
    CLOSE_UNAUTHORIZED,
    text_frame,
)

log = structlog.get_logger(__name__)

TOPIC_RE = re.compile(r"^([a-z][a-z0-9_-]{0,31}):([A-Za-z0-9_.:@*~=+-]{1,200})$")
PRESENCE_BATCH = 200  # sockets refreshed per turn of the event loop
INBOX_LIMIT = 128  # frames waiting to be served before a socket's reading pauses
SUBSCRIBE_CHECKS = 5  # permission checks a subscribe makes while revocations overtake them
Check = Callable[[User, str], "bool | Awaitable[bool]"]
PublishHook = Callable[[User, str, Any], Awaitable[Any]]


def anyone(user: User, topic: str) -> bool:
    return True


def admins(user: User, topic: str) -> bool:
    return user.is_admin


async def allowed(check: Check, user: User, topic: str) -> bool:
    result = check(user, topic)
    if isinstance(result, bool):  # most checks are plain; isawaitable's ABC check is slow
        return result
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


@dataclass(frozen=True)
class Published:
    """What an ``on_publish`` hook may return instead of plain data: ``data`` for the
    subscribers (None: nothing is broadcast, e.g. a retried message) and ``reply`` fields
    for the publisher's reply."""

    data: Any
    reply: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Namespace:
    """A family of topics and who may do what on them.

    ``on_publish`` may validate or rewrite what a client publishes (raise :class:`Problem` to
    refuse); the returned value (or :class:`Published`) is what subscribers get. ``presence``
    tracks subscribers; with ``presence_events`` off, joins and leaves are not broadcast and
    the subscribe reply carries no member list (big rooms: every join would reach everyone,
    n^2 frames in a connection storm) — the ``presence`` op still answers. ``ephemeral``
    publications from clients are delivered but not kept for resume (typing indicators).
    ``history`` keeps fewer publications per topic for resumes than ``realtime.history_size``
    (topics whose every event is a full snapshot need only the last few).
    """

    name: str
    can_subscribe: Check = anyone
    can_publish: Check = admins
    on_publish: PublishHook | None = None
    presence: bool = False
    presence_events: bool = True
    ephemeral: bool = False
    history: int | None = None


@dataclass(eq=False)
class Connection:
    """One authenticated socket. Frames for it are queued in ``out`` and written to its
    transport together at the end of the event loop's turn (see :meth:`Gateway._write`);
    frames from it wait in ``inbox`` and are served in order by one task at a time."""

    id: str
    session: Session
    transport: asyncio.Transport
    bucket: TokenBucket
    ws: web.WebSocketResponse = field(init=False)
    inbox: deque[str] = field(default_factory=deque)
    serving: asyncio.Task[None] | None = None
    ready: bool = False  # the hello is out: frames may be served
    topics: set[str] = field(default_factory=set)
    recovering: dict[str, list[Publication]] = field(default_factory=dict)
    bus_listeners: dict[str, Callable[[], None]] = field(default_factory=dict)
    strikes: int = 0
    closing: bool = False
    out: list[bytes] = field(default_factory=list)  # frames queued in this turn of the loop

    @property
    def user(self) -> User:
        return self.session.user


class Gateway:
    """Routes publications from the broker to sockets and client requests to the broker."""

    def __init__(
        self,
        settings: RealtimeSettings,
        broker: Broker,
        presence: PresenceManager,
        control: ControlChannel,
        auth: Auth,
        bus: EventBus,
        metrics: Metrics,
        node_id: str,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.presence = presence
        self.control = control  # node-addressed request/reply (see .control)
        self.auth = auth
        self.bus = bus
        self.metrics = metrics
        self.node_id = node_id
        self.namespaces: dict[str, Namespace] = {}
        self.connections: set[Connection] = set()
        self._subs: dict[str, set[Connection]] = {}
        self._unflushed: list[Connection] = []
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._unlisten: list[Callable[[], None]] = []
        self._revocations = 0  # revocations applied here: a subscribe's check may be stale
        # After the broker came back (Redis restarted empty) presence lists only the nodes
        # that refreshed theirs since: until every node has had a refresh period, absence
        # means nothing and presence answers 503.
        self._presence_settles_at = 0.0
        self.register(
            Namespace("user", can_subscribe=lambda u, t: u.is_admin or t == f"user:{u.id}")
        )
        self.register(Namespace("broadcast"))
        self.register(Namespace("bus", can_subscribe=admins, can_publish=lambda u, t: False))

    def register(self, namespace: Namespace) -> None:
        """Make a namespace of topics available (plugins call this from ``setup``)."""
        if namespace.name in self.namespaces:
            raise ValueError(f"realtime namespace {namespace.name!r} is already registered")
        self.namespaces[namespace.name] = namespace

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        # Kept: get_running_loop() makes a getpid() system call each time (CPython 3.11's
        # fork check), ~2 % of a chess move when called per frame.
        self._loop = asyncio.get_running_loop()
        await self.broker.start(self._deliver)
        self.broker.on_reconnect(self._broker_back)
        await self.broker.subscribe(NOTICE_TOPIC)
        await self.control.start()
        self._refresher = asyncio.create_task(self._refresh_presence())
        self.auth.role_hooks.append(self._role_changed)
        self._unlisten = [
            self.bus.listen("user.banned", self._on_banned),
            self.bus.listen("auth.tokens_revoked", self._on_revoked),
            self.bus.listen("user.role_changed", self._on_role_changed),
        ]

    async def stop(self) -> None:
        """Close every socket with 1001 (going away) and stop the broker."""
        for unlisten in self._unlisten:
            unlisten()
        if self._role_changed in self.auth.role_hooks:
            self.auth.role_hooks.remove(self._role_changed)
        self._flush()
        if self._refresher:
            self._refresher.cancel()
        await asyncio.gather(
            *(
                c.ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down")
                for c in list(self.connections)
            ),
            return_exceptions=True,
        )
        # Let the handlers unsubscribe (presence leave) before the engine goes away.
        for _ in range(50):
            if not self.connections:
                break
            await asyncio.sleep(0.02)
        await self.control.stop()
        await self.broker.stop()
        await self.presence.close()

    # --- publishing -----------------------------------------------------------------------

    async def publish(self, topic: str, data: Any, *, ephemeral: bool = False) -> Publication:
        """Publish to every subscriber of ``topic`` on every node; returns the publication."""
        namespace = self.namespace_of(topic)
        return await self.broker.publish(
            topic, data, ephemeral=ephemeral, history=namespace.history
        )

    async def publish_ordered(
        self, topic: str, items: Sequence[tuple[int, Any]]
    ) -> list[Publication]:
        """Publish a store's numbered changes in version order, each once (see
        :meth:`Broker.publish_ordered`): what an outbox hands over."""
        namespace = self.namespace_of(topic)
        return await self.broker.publish_ordered(topic, items, history=namespace.history)

    def _deliver(self, pub: Publication) -> None:
        """Broker callback: queue one publication for every local subscriber (the body of
        :meth:`_write`, inlined: this loop runs once per subscriber per publication)."""
        subscribers = self._subs.get(pub.topic)
        if not subscribers:
            if pub.topic == NOTICE_TOPIC:  # (no socket subscribes to it: off the hot path)
                self._on_notice(pub)
            return
        wire = text_frame(pub.frame)
        unflushed = self._unflushed
        if not unflushed:
            self._loop.call_soon(self._flush)
        sent = 0
        for conn in subscribers:
            pending = conn.recovering.get(pub.topic)
            if pending is not None:
                pending.append(pub)
                continue
            if conn.closing or conn.transport.is_closing():
                continue  # a socket that went away is dropped by its own handler
            if not conn.out:
                unflushed.append(conn)
            conn.out.append(wire)
            sent += 1
        self.metrics.ws_messages_out.inc(sent)

    def _write(self, conn: Connection, frame: bytes) -> None:
        """Queue ``frame`` for ``conn``, unless the socket is going away (its own handler
        drops it). What is queued in one turn of the event loop goes out in one write per
        socket: a move's broadcast and the mover's reply cost one system call, not two."""
        if conn.closing or conn.transport.is_closing():
            return
        if not conn.out:
            if not self._unflushed:
                self._loop.call_soon(self._flush)
            self._unflushed.append(conn)
        conn.out.append(frame)

    def _flush(self) -> None:
        connections, self._unflushed = self._unflushed, []
        limit = self.settings.send_buffer_bytes
        for conn in connections:
            out, transport = conn.out, conn.transport
            if not out or conn.closing or transport.is_closing():
                out.clear()
                continue
            # The list is kept and emptied: a new one per socket per turn would outlive
            # the young generation (it waits for the socket's next frame).
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
            if transport.get_write_buffer_size() > limit:
                self._close(conn, CLOSE_SLOW_CONSUMER, "slow consumer: send buffer full")
                self.metrics.ws_slow_consumers.inc()

    # --- connection handling --------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The ``/ws`` endpoint: authenticate, then serve frames until the socket closes."""
        session = await self.auth.session_from_handshake(request)
        transport = request.transport
        if transport is None:  # the client is gone already
            return web.Response(status=499)
        conn = Connection(
            new_id(),
            session,
            transport,
            TokenBucket(self.settings.rate_per_second, self.settings.rate_burst),
        )
        conn.ws = ws = GatewaySocket(
            lambda text: self._received(conn, text),
            heartbeat=self.settings.heartbeat_seconds,
            max_msg_size=self.settings.max_message_bytes,
            compress=False,
            timeout=2.0,  # for the client's close handshake
        )
        await ws.prepare(request)
        self.connections.add(conn)
        self.metrics.ws_connections.inc()
        log.info("ws.connected", conn=conn.id, user=conn.user.username)
        try:
            self._send(
                conn,
                "hello",
                data={
                    "client_id": conn.id,
                    "node": self.node_id,
                    "user": conn.user.public(),
                    "heartbeat": self.settings.heartbeat_seconds,
                },
            )
            conn.ready = True
            if conn.inbox:  # frames that came with the handshake
                self._start_serving(conn)
            async for msg in ws:  # control frames only: text goes to _received
                if msg.type == WSMsgType.BINARY:
                    self._error(conn, None, "invalid_frame", "send JSON text frames")
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            await self._drop(conn)
        return ws

    def _received(self, conn: Connection, text: str) -> None:
        """A text frame, as the socket's parser reads it: queued, and served by a task."""
        if conn.closing:
            return
        conn.inbox.append(text)
        if len(conn.inbox) == INBOX_LIMIT:  # aiohttp's queue paused reading; so do we
            conn.transport.pause_reading()
            self.metrics.ws_reads_paused.inc()
        if conn.serving is None and conn.ready:
            self._start_serving(conn)

    def _start_serving(self, conn: Connection) -> None:
        conn.serving = self._loop.create_task(self._serve(conn))

    async def _serve(self, conn: Connection) -> None:
        inbox = conn.inbox
        try:
            while inbox and not conn.closing:
                await self._on_text(conn, inbox.popleft())
                if len(inbox) == INBOX_LIMIT // 2 and not conn.transport.is_closing():
                    conn.transport.resume_reading()
                if inbox:
                    # Frames that came together would otherwise run back to back: a burst
                    # of publishes (each a fan-out) must not hold the loop from everyone.
                    await asyncio.sleep(0)
        finally:
            conn.serving = None

    async def _drop(self, conn: Connection) -> None:
        if conn.serving is not None:  # what the client sent before it went is served
            await asyncio.wait({conn.serving})
        conn.closing = True
        try:
            for topic in list(conn.topics):
                await self._unsubscribe(conn, topic)
        except Exception:
            log.exception("ws.unsubscribe_failed", conn=conn.id)
        finally:
            self.connections.discard(conn)
            self.metrics.ws_connections.dec()
        log.info("ws.closed", conn=conn.id, code=conn.ws.close_code)

    def _close(self, conn: Connection, code: int, reason: str) -> None:
        if conn.closing:
            return
        if conn.out and not conn.transport.is_closing():  # what was queued goes before it
            conn.transport.write(b"".join(conn.out))
        conn.out.clear()
        conn.closing = True
        if not conn.transport.is_closing():  # the client's close frame must get through
            conn.transport.resume_reading()
        log.info("ws.closing", conn=conn.id, code=code, reason=reason)
        self._spawn(conn.ws.close(code=code, message=reason.encode()))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, conn: Connection, op: str, **fields: Any) -> None:
        self._write(conn, text_frame(dumps({"op": op, **fields})))

    def _error(self, conn: Connection, req_id: Any, code: str, detail: str, **extra: Any) -> None:
        log.info("ws.error", conn=conn.id, user=conn.user.username, code=code)
        self._send(conn, "error", id=req_id, code=code, detail=detail, **extra)

    async def _on_text(self, conn: Connection, text: str) -> None:
        self.metrics.ws_messages_in.inc()
        if not conn.bucket.take():
            conn.strikes += 1
            self.metrics.ws_rate_limited.inc()
            if conn.strikes >= self.settings.rate_burst:
                self._close(conn, CLOSE_RATE_LIMITED, "rate limit exceeded")
            else:
                self._error(
                    conn,
                    None,
                    "rate_limited",
                    "slow down: too many messages",
                    retry_after=round(conn.bucket.retry_after(), 3),
                )
            return
        conn.strikes = 0
        try:
            frame = jsoncodec.loads(text)
        except json.JSONDecodeError:
            self._error(conn, None, "invalid_json", "the frame is not valid JSON")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("op"), str):
            self._error(conn, None, "invalid_frame", "frames are objects with an 'op'")
            return
        req_id = frame.get("id")
        handler = self._ops.get(frame["op"])
        if handler is None:
            self._error(conn, req_id, "unknown_op", f"unknown op {frame['op']!r}")
            return
        try:
            data = await handler(self, conn, frame)
        except Problem as problem:
            self._error(conn, req_id, problem.code, problem.detail, **problem.extra)
            return
        except Exception:
            log.exception("ws.op_failed", op=frame["op"], conn=conn.id)
            self._error(conn, req_id, "internal_error", "the server failed; it is logged")
            return
        if data is not None:  # None: the op has replied itself
            self._send(conn, "reply", id=req_id, topic=frame.get("topic"), data=data)

    def namespace_of(self, topic: Any) -> Namespace:
        """The namespace of a topic; 400/404 problems for malformed or unknown ones."""
        if not isinstance(topic, str) or not (match := TOPIC_RE.match(topic)):
            raise Problem(400, "invalid_topic", "topics look like 'namespace:name'")
        namespace = self.namespaces.get(match.group(1))
        if namespace is None:
            raise Problem(404, "unknown_topic", f"no topic namespace {match.group(1)!r}")
        return namespace

    # --- ops ------------------------------------------------------------------------------

    async def _op_ping(self, conn: Connection, frame: dict[str, Any]) -> None:
        self._send(conn, "pong", id=frame.get("id"), time=time.time())

    async def _op_subscribe(self, conn: Connection, frame: dict[str, Any]) -> dict[str, Any] | None:
        topic = frame.get("topic")
        namespace = self.namespace_of(topic)
        assert isinstance(topic, str)
        await self._check_subscribe(conn, namespace, topic)
        # From here to the registration below nothing awaits: no revocation slips between.
        if topic in conn.topics:
            raise Problem(409, "already_subscribed", f"already subscribed to {topic}")
        if len(conn.topics) >= self.settings.max_subscriptions:
            raise Problem(429, "too_many_subscriptions", "unsubscribe from something first")
        if namespace.name == "bus":
            return self._subscribe_bus(conn, topic)
        opts = frame.get("data") or {}
        since, epoch = opts.get("since"), opts.get("epoch")
        if since is not None and (not isinstance(since, int) or since < 0):
            raise Problem(400, "invalid_frame", "'since' is a non-negative integer")
        conn.topics.add(topic)
        conn.recovering[topic] = []
        subscribers = self._subs.setdefault(topic, set())
        subscribers.add(conn)
        try:
            if len(subscribers) == 1:
                await self.broker.subscribe(topic)
            if since is not None:
                result = await self.broker.history(topic, since, epoch)
                missed, top, current_epoch, recovered = (
                    result.publications,
                    result.top_seq,
                    result.epoch,
                    result.recovered,
                )
            else:
                missed, recovered = [], False
                top, current_epoch = await self.broker.position(topic)
        except BaseException:
            await self._unsubscribe(conn, topic)
            raise
        reply: dict[str, Any] = {"seq": top, "epoch": current_epoch, "recovered": recovered}
        if namespace.presence:
            await self.presence.add(topic, conn.id, self._presence_info(conn))
            if namespace.presence_events:
                reply["presence"] = await self._presence_list(topic)
        if topic not in conn.topics:  # revoked while it was being set up
            if namespace.presence:
                await self.presence.remove(topic, conn.id)
            raise Problem(403, "forbidden", f"your access to {topic} was revoked")
        self._send(conn, "reply", id=frame.get("id"), topic=topic, data=reply)
        # Replay what was missed, then what arrived meanwhile, without duplicates; a client
        # that did not ask to resume starts at the position in the reply.
        last = since if since is not None else top
        for pub in [*missed, *conn.recovering.pop(topic, [])]:
            if pub.seq and pub.seq <= last:
                continue
            last = max(last, pub.seq)
            self._write(conn, text_frame(pub.frame))
        if namespace.presence and namespace.presence_events:  # everyone hears of the join
            await self.broker.publish(
                topic, {"presence": "join", "user": self._presence_info(conn)}, ephemeral=True
            )
        return None

    async def _check_subscribe(self, conn: Connection, namespace: Namespace, topic: str) -> None:
        """403 unless the user may subscribe, by a check no revocation overtook: one applied
        here while an awaited check ran may be meant for this very subscription, which was
        not there yet to be dropped — so the check runs again."""
        for _ in range(SUBSCRIBE_CHECKS):
            seen = self._revocations
            if not await allowed(namespace.can_subscribe, conn.user, topic):
                raise Problem(403, "forbidden", f"you may not subscribe to {topic}")
            if seen == self._revocations:
                return
        raise Problem(503, "try_again", "access to topics is changing: subscribe again")

    def _subscribe_bus(self, conn: Connection, topic: str) -> dict[str, Any]:
        pattern = topic.split(":", 1)[1]
        seq = 0

        def forward(event: Event) -> None:
            nonlocal seq
            seq += 1
            frame = dumps(
                {
                    "op": "event",
                    "topic": topic,
                    "seq": seq,
                    "data": {
                        "type": event.type,
                        "data": event.data,
                        "origin": event.origin,
                        "time": event.time,
                    },
                }
            )
            self._write(conn, text_frame(frame))

        conn.topics.add(topic)
        conn.bus_listeners[topic] = self.bus.listen(pattern, forward)
        return {"seq": 0, "epoch": "", "recovered": False}

    async def _op_unsubscribe(self, conn: Connection, frame: dict[str, Any]) -> dict[str, Any]:
        topic = frame.get("topic")
        if topic not in conn.topics:
            raise Problem(404, "not_subscribed", f"not subscribed to {topic}")
        assert isinstance(topic, str)
        await self._unsubscribe(conn, topic)
        return {}

    async def _unsubscribe(self, conn: Connection, topic: str) -> None:
        if self._detach(conn, topic):
            await self._release(conn, topic)

    def _detach(self, conn: Connection, topic: str) -> bool:
        """The socket gets nothing more of ``topic`` from now on (synchronous: a revocation
        must take effect before the next publication is delivered). True if the engine
        side is left to :meth:`_release`."""
        conn.topics.discard(topic)
        conn.recovering.pop(topic, None)
        unlisten = conn.bus_listeners.pop(topic, None)
        if unlisten is not None:
            unlisten()
            return False
        subscribers = self._subs.get(topic)
        if subscribers is None or conn not in subscribers:
            return False
        subscribers.discard(conn)
        if not subscribers:
            del self._subs[topic]
        return True

    async def _release(self, conn: Connection, topic: str) -> None:
        """The engine side of an unsubscribe: the node's interest (unless another socket
        subscribed since) and the socket's presence."""
        if topic not in self._subs:
            await self.broker.unsubscribe(topic)
        namespace = self.namespaces.get(topic.split(":", 1)[0])
        if namespace is not None and namespace.presence:
            # With the broker away the entry expires by itself; the socket's other topics
            # must still be let go of.
            with contextlib.suppress(BrokerUnavailable):
                await self.presence.remove(topic, conn.id)
                if namespace.presence_events:
                    await self.broker.publish(
                        topic,
                        {"presence": "leave", "user": self._presence_info(conn)},
                        ephemeral=True,
                    )

    async def _op_publish(self, conn: Connection, frame: dict[str, Any]) -> dict[str, Any]:
        return await self.publish_as(conn.user, frame.get("topic"), frame.get("data"))

    async def publish_as(self, user: User, topic: Any, data: Any) -> dict[str, Any]:
        """Publish on behalf of a client (WebSocket or HTTP), with its permission checks."""
        namespace = self.namespace_of(topic)
        if not await allowed(namespace.can_publish, user, topic):
            raise Problem(403, "forbidden", f"you may not publish to {topic}")
        extra: dict[str, Any] = {}
        if namespace.on_publish is not None:
            data = await namespace.on_publish(user, topic, data)
            if isinstance(data, Published):
                data, extra = data.data, data.reply
                if data is None:
                    return extra
        pub = await self.broker.publish(
            topic, data, ephemeral=namespace.ephemeral, history=namespace.history
        )
        return {**extra, "seq": pub.seq}

    async def _op_presence(self, conn: Connection, frame: dict[str, Any]) -> dict[str, Any]:
        return await self.presence_for(conn.user, frame.get("topic"))

    async def presence_for(self, user: User, topic: Any) -> dict[str, Any]:
        """Who is in a topic, if ``user`` may see it."""
        namespace = self.namespace_of(topic)
        if not namespace.presence:
            raise Problem(400, "no_presence", f"{topic} does not track presence")
        if not await allowed(namespace.can_subscribe, user, topic):
            raise Problem(403, "forbidden", f"you may not see who is in {topic}")
        return {"topic": topic, "presence": await self.presence_of(topic)}

    _ops: dict[
        str, Callable[[Gateway, Connection, dict[str, Any]], Awaitable[dict[str, Any] | None]]
    ] = {
        "ping": _op_ping,
        "subscribe": _op_subscribe,
        "unsubscribe": _op_unsubscribe,
        "publish": _op_publish,
        "presence": _op_presence,
    }

    # --- presence -------------------------------------------------------------------------

    def _presence_info(self, conn: Connection) -> dict[str, Any]:
        return {"user_id": conn.user.id, "username": conn.user.username, "client_id": conn.id}

    async def _presence_list(self, topic: str) -> list[dict[str, Any]]:
        """Present users (one entry per user however many sockets they have)."""
        users: dict[str, dict[str, Any]] = {}
        for info in (await self.presence.list(topic)).values():
            entry = users.setdefault(
                info["user_id"],
                {"user_id": info["user_id"], "username": info["username"], "connections": 0},
            )
            entry["connections"] += 1
        return sorted(users.values(), key=lambda u: str(u["username"]))

    async def presence_of(self, topic: str) -> list[dict[str, Any]]:
        """Who is in ``topic`` — 503 ``presence_recovering`` while it may still be missing
        sockets of other nodes after the broker came back (callers decide on absence)."""
        wait = self._presence_settles_at - self._loop.time()
        if wait > 0:
            raise Problem(
                503, "presence_recovering",
                "presence is being rebuilt after the realtime broker came back; retry shortly",
                headers={"Retry-After": str(math.ceil(wait))}, retry_after=math.ceil(wait),
            )  # fmt: skip
        return await self._presence_list(topic)

    async def _refresh_presence(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_ttl_seconds / 3)
            await self._refresh_presence_once()

    async def _refresh_presence_once(self) -> None:
        for n, conn in enumerate(list(self.connections), 1):
            if n % PRESENCE_BATCH == 0:  # 2,000 sockets in one go held the loop ~8 ms
                await asyncio.sleep(0)
            for topic in list(conn.topics):
                namespace = self.namespaces.get(topic.split(":", 1)[0])
                if namespace is not None and namespace.presence:
                    try:
                        await self.presence.add(topic, conn.id, self._presence_info(conn))
                    except Exception:
                        log.exception("presence.refresh_failed", topic=topic)

    # --- bans and revocations -------------------------------------------------------------

    def _on_banned(self, event: Event) -> None:
        for conn in list(self.connections):
            if conn.user.id == event.data.get("user_id"):
                self._close(conn, CLOSE_FORBIDDEN, "account banned")

    async def _role_changed(self, user_id: str, role: Role) -> None:
        """Auth's hook, awaited before a role change returns: the user's sockets on every
        node take the new role and keep only the subscriptions it still allows (an admin
        demoted loses ``bus:*``, ``admin:*``, others' ``user:*``)."""
        await self._broadcast(Revocation.of("*", "role_changed", user_id, True, self.node_id, role))

    def _on_role_changed(self, event: Event) -> None:
        """The same from the bus, for a change the hook did not see (made by another
        process); sockets that have the role already are left alone."""
        user_id, role = event.data.get("user_id"), event.data.get("role")
        if isinstance(user_id, str) and isinstance(role, str):
            self._apply(Revocation.of("*", "role_changed", user_id, True, self.node_id, role))

    # --- revoking access to topics (see .revocation) --------------------------------------

    async def revoke(
        self,
        user_id: str | None,
        topics: str | Iterable[str],
        reason: str,
        *,
        recheck: bool = False,
    ) -> None:
        """End subscriptions of ``user_id`` (None: of every user) to ``topics`` (topics, or
        prefixes ending in ``*``) on every node, telling each socket ``reason`` in an
        ``unsubscribe`` frame. With ``recheck`` only those whose namespace's
        ``can_subscribe`` now refuses go. Call it after the change that revokes access is
        stored and before the change is acknowledged or announced: nothing published after
        it returns reaches a revoked socket."""
        await self._broadcast(Revocation.of(topics, reason, user_id, recheck, self.node_id))

    async def _broadcast(self, revocation: Revocation) -> None:
        self._apply(revocation)
        await self.broker.publish(NOTICE_TOPIC, revocation.notice(), ephemeral=True)

    def _broker_back(self) -> None:
        """The broker connection is back. Revocations other nodes made meanwhile were not
        heard (they keep no history): every subscription is checked again. Presence may
        have been lost with it (Redis restarted empty): this node's is written again now,
        and presence answers wait a refresh period for the other nodes to do the same."""
        self._apply(Revocation.of("*", "access_changed", None, True, self.node_id))
        self._presence_settles_at = self._loop.time() + self.settings.presence_ttl_seconds / 3
        task = self._loop.create_task(self._refresh_presence_once())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_notice(self, pub: Publication) -> None:
        """Another node's revocation (this node's own were applied when made)."""
        try:
            frame = jsoncodec.loads(pub.frame)
            if frame.get("op") == "resync":  # the engine's own after a Redis restart
                return  # (what revocations were missed, the recheck on reconnect covers)
            revocation = Revocation.from_notice(frame.get("data"))
        except (ValueError, AttributeError):
            log.warning("realtime.bad_revocation", frame=pub.frame[:200])
            return
        if revocation.origin != self.node_id:
            self._apply(revocation)

    def _apply(self, revocation: Revocation) -> None:
        self._revocations += 1
        for conn in list(self.connections):
            if conn.closing or (
                revocation.user_id is not None and conn.user.id != revocation.user_id
            ):
                continue
            if revocation.role is not None:
                if conn.user.role == revocation.role:
                    continue  # applied already (the notice and the bus event both come)
                if revocation.role not in get_args(Role):
                    self._close(conn, CLOSE_UNAUTHORIZED, "role changed: reconnect")
                    continue
                user = dataclasses.replace(conn.user, role=cast(Role, revocation.role))
                conn.session = dataclasses.replace(conn.session, user=user)
            for topic in [t for t in conn.topics if revocation.matches(t)]:
                if revocation.recheck:
                    self._recheck(conn, topic, revocation.reason)
                else:
                    self._revoke(conn, topic, revocation.reason)

    def _revoke(self, conn: Connection, topic: str, reason: str) -> None:
        """End one subscription now and tell the socket why."""
        released = self._detach(conn, topic)
        self._send(conn, "unsubscribe", topic=topic, data={"reason": reason})
        if released:
            self._spawn(self._release_quietly(conn, topic))

    async def _release_quietly(self, conn: Connection, topic: str) -> None:
        try:
            await self._release(conn, topic)
        except Exception:
            log.exception("ws.unsubscribe_failed", conn=conn.id, topic=topic)

    def _recheck(self, conn: Connection, topic: str, reason: str) -> None:
        """Keep ``topic`` only if its namespace still lets the user subscribe. A check that
        must be awaited holds the topic's publications for the socket meanwhile."""
        namespace = self.namespaces.get(topic.split(":", 1)[0])
        if namespace is None:
            self._revoke(conn, topic, reason)
            return
        try:
            result = namespace.can_subscribe(conn.user, topic)
        except Exception:
            log.exception("ws.recheck_failed", conn=conn.id, topic=topic)
            result = False
        if isinstance(result, bool) or not inspect.isawaitable(result):
            if not result:
                self._revoke(conn, topic, reason)
            return
        held: list[Publication] | None = None
        if topic not in conn.recovering:  # (a subscribe in progress holds them already)
            held = conn.recovering[topic] = []
        self._spawn(self._settle(conn, topic, result, held, reason))

    async def _settle(
        self,
        conn: Connection,
        topic: str,
        check: Awaitable[Any],
        held: list[Publication] | None,
        reason: str,
    ) -> None:
        try:
            still = bool(await check)
        except Exception:
            log.exception("ws.recheck_failed", conn=conn.id, topic=topic)
            still = False
        if conn.closing or topic not in conn.topics:
            return
        if not still:
            self._revoke(conn, topic, reason)
        elif held is not None and conn.recovering.get(topic) is held:
            del conn.recovering[topic]
            for pub in held:
                self._write(conn, text_frame(pub.frame))

    def _on_revoked(self, event: Event) -> None:
        revoked = set(event.data.get("token_ids") or ())
        for conn in list(self.connections):
            if conn.session.token_id in revoked:
                self._close(conn, CLOSE_UNAUTHORIZED, "token revoked")
