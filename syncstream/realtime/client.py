"""One socket on ``/ws``: its protocol state, its send queue, and the ops it serves.

Frames from the client wait in ``inbox`` (bounded: reading pauses when it is full) and are
served in order by one task at a time; frames for it are queued in ``out`` and written by
the :class:`.hub.Hub` at the end of the event loop's turn. Subscriptions: permission check,
the engine's interest, resume from history, presence — and their end, by the client, by a
revocation (see :mod:`.revocation`) or when the socket goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from aiohttp import WSMsgType, web

from ..auth import Session, User
from ..errors import Problem
from ..ratelimit import TokenBucket
from ..runtime.ws_text_tap import gateway_socket
from .engine import BrokerUnavailable, Publication
from .namespace import Namespace, allowed
from .wire import CLOSE_RATE_LIMITED, read_frame, server_frame, text_frame

if TYPE_CHECKING:
    from .gateway import Gateway

log = structlog.get_logger(__name__)

INBOX_LIMIT = 128  # frames waiting to be served before a socket's reading pauses
SUBSCRIBE_CHECKS = 5  # permission checks a subscribe makes while revocations overtake them

Op = Callable[["Client", dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass(eq=False)
class Client:
    """One authenticated socket."""

    id: str
    session: Session
    transport: asyncio.Transport
    bucket: TokenBucket
    gateway: Gateway
    ws: web.WebSocketResponse = field(init=False)
    inbox: deque[str] = field(default_factory=deque)
    serving: asyncio.Task[None] | None = None
    ready: bool = False  # the hello is out: frames may be served
    topics: set[str] = field(default_factory=set)
    recovering: dict[str, list[Publication]] = field(default_factory=dict)
    strikes: int = 0
    closing: bool = False
    out: list[bytes] = field(default_factory=list)  # frames queued in this turn of the loop

    @property
    def user(self) -> User:
        return self.session.user

    # --- the socket -----------------------------------------------------------------------

    async def run(self, request: web.Request) -> web.WebSocketResponse:
        """Serve frames until the socket closes."""
        gateway = self.gateway
        settings = gateway.settings
        self.ws = ws = gateway_socket(
            self.received,
            gateway.ws_text_tap,
            heartbeat=settings.heartbeat_seconds,
            max_msg_size=settings.max_message_bytes,
            compress=False,
            timeout=2.0,  # for the client's close handshake
        )
        await ws.prepare(request)
        gateway.hub.clients.add(self)
        gateway.metrics.ws_connections.inc()
        log.info("ws.connected", conn=self.id, user=self.user.username)
        try:
            self.send(
                "hello",
                data={
                    "client_id": self.id,
                    "node": gateway.node_id,
                    "user": self.user.public(),
                    "heartbeat": settings.heartbeat_seconds,
                },
            )
            self.ready = True
            if self.inbox:  # frames that came with the handshake
                self._start_serving()
            async for msg in ws:  # with the tap, control frames only: text goes to received()
                if msg.type == WSMsgType.TEXT:
                    self.received(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.error(None, "invalid_frame", "send JSON text frames")
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            await self._drop()
        return ws

    def received(self, text: str) -> None:
        """A text frame, as the socket's parser reads it: queued, and served by a task."""
        if self.closing:
            return
        self.inbox.append(text)
        if len(self.inbox) == INBOX_LIMIT:  # aiohttp's queue paused reading; so do we
            self.transport.pause_reading()
            self.gateway.metrics.ws_reads_paused.inc()
        if self.serving is None and self.ready:
            self._start_serving()

    def _start_serving(self) -> None:
        self.serving = self.gateway.loop.create_task(self._serve())

    async def _serve(self) -> None:
        inbox = self.inbox
        try:
            while inbox and not self.closing:
                await self._on_text(inbox.popleft())
                if len(inbox) == INBOX_LIMIT // 2 and not self.transport.is_closing():
                    self.transport.resume_reading()
                if inbox:
                    # Frames that came together would otherwise run back to back: a burst
                    # of publishes (each a fan-out) must not hold the loop from everyone.
                    await asyncio.sleep(0)
        finally:
            self.serving = None

    async def _drop(self) -> None:
        if self.serving is not None:  # what the client sent before it went is served
            await asyncio.wait({self.serving})
        self.closing = True
        try:
            for topic in list(self.topics):
                await self.unsubscribe(topic)
        except Exception:
            log.exception("ws.unsubscribe_failed", conn=self.id)
        finally:
            self.gateway.hub.clients.discard(self)
            self.gateway.metrics.ws_connections.dec()
        log.info("ws.closed", conn=self.id, code=self.ws.close_code)

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        if self.out and not self.transport.is_closing():  # what was queued goes before it
            self.transport.write(b"".join(self.out))
        self.out.clear()
        self.closing = True
        if not self.transport.is_closing():  # the client's close frame must get through
            self.transport.resume_reading()
        log.info("ws.closing", conn=self.id, code=code, reason=reason)
        self.gateway.spawn(self.ws.close(code=code, message=reason.encode()))

    # --- the send queue -------------------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """Queue ``frame``, unless the socket is going away (its own handler drops it)."""
        if self.closing or self.transport.is_closing():
            return
        if not self.out:
            self.gateway.hub.queued(self)
        self.out.append(frame)

    def send(self, op: str, **fields: Any) -> None:
        self.write(server_frame(op, **fields))

    def error(self, req_id: Any, code: str, detail: str, **extra: Any) -> None:
        log.info("ws.error", conn=self.id, user=self.user.username, code=code)
        self.send("error", id=req_id, code=code, detail=detail, **extra)

    # --- ops ------------------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        gateway = self.gateway
        gateway.metrics.ws_messages_in.inc()
        if not self.bucket.take():
            self.strikes += 1
            gateway.metrics.ws_rate_limited.inc()
            if self.strikes >= gateway.settings.rate_burst:
                self.close(CLOSE_RATE_LIMITED, "rate limit exceeded")
            else:
                self.error(
                    None,
                    "rate_limited",
                    "slow down: too many messages",
                    retry_after=round(self.bucket.retry_after(), 3),
                )
            return
        self.strikes = 0
        try:
            frame = read_frame(text)
        except Problem as problem:
            self.error(None, problem.code, problem.detail)
            return
        req_id = frame.get("id")
        handler = self._ops.get(frame["op"])
        if handler is None:
            self.error(req_id, "unknown_op", f"unknown op {frame['op']!r}")
            return
        try:
            data = await handler(self, frame)
        except Problem as problem:
            self.error(req_id, problem.code, problem.detail, **problem.extra)
            return
        except Exception:
            log.exception("ws.op_failed", op=frame["op"], conn=self.id)
            self.error(req_id, "internal_error", "the server failed; it is logged")
            return
        if data is not None:  # None: the op has replied itself
            self.send("reply", id=req_id, topic=frame.get("topic"), data=data)

    async def _op_ping(self, frame: dict[str, Any]) -> None:
        self.send("pong", id=frame.get("id"), time=time.time())

    async def _op_subscribe(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        gateway = self.gateway
        topic = frame.get("topic")
        namespace = gateway.namespaces.of(topic)
        assert isinstance(topic, str)
        await self._check_subscribe(namespace, topic)
        # From here to the registration below nothing awaits: no revocation slips between.
        if topic in self.topics:
            raise Problem(409, "already_subscribed", f"already subscribed to {topic}")
        if len(self.topics) >= gateway.settings.max_subscriptions:
            raise Problem(429, "too_many_subscriptions", "unsubscribe from something first")
        if namespace.name == "bus":
            self.topics.add(topic)
            return gateway.bridge.subscribe(self, topic)
        opts = frame.get("data") or {}
        since, epoch = opts.get("since"), opts.get("epoch")
        if since is not None and (not isinstance(since, int) or since < 0):
            raise Problem(400, "invalid_frame", "'since' is a non-negative integer")
        self.topics.add(topic)
        self.recovering[topic] = []
        broker = gateway.broker
        try:
            if gateway.hub.add(self, topic):
                await broker.subscribe(topic)
            if since is not None:
                result = await broker.history(topic, since, epoch)
                missed, top, current_epoch, recovered = (
                    result.publications,
                    result.top_seq,
                    result.epoch,
                    result.recovered,
                )
            else:
                missed, recovered = [], False
                top, current_epoch = await broker.position(topic)
        except BaseException:
            await self.unsubscribe(topic)
            raise
        reply: dict[str, Any] = {"seq": top, "epoch": current_epoch, "recovered": recovered}
        presence = gateway.members
        if namespace.presence:
            await presence.add(self, topic)
            if namespace.presence_events:
                reply["presence"] = await presence.members(topic)
        if topic not in self.topics:  # revoked while it was being set up
            if namespace.presence:
                await presence.remove(self, topic)
            raise Problem(403, "forbidden", f"your access to {topic} was revoked")
        self.send("reply", id=frame.get("id"), topic=topic, data=reply)
        # Replay what was missed, then what arrived meanwhile, without duplicates; a client
        # that did not ask to resume starts at the position in the reply.
        last = since if since is not None else top
        for pub in [*missed, *self.recovering.pop(topic, [])]:
            if pub.seq and pub.seq <= last:
                continue
            last = max(last, pub.seq)
            self.write(text_frame(pub.frame))
        if namespace.presence and namespace.presence_events:  # everyone hears of the join
            await presence.announce(self, topic, "join")
        return None

    async def _check_subscribe(self, namespace: Namespace, topic: str) -> None:
        """403 unless the user may subscribe, by a check no revocation overtook: one applied
        here while an awaited check ran may be meant for this very subscription, which was
        not there yet to be dropped — so the check runs again."""
        revoker = self.gateway.revoker
        for _ in range(SUBSCRIBE_CHECKS):
            seen = revoker.applied
            if not await allowed(namespace.can_subscribe, self.user, topic):
                raise Problem(403, "forbidden", f"you may not subscribe to {topic}")
            if seen == revoker.applied:
                return
        raise Problem(503, "try_again", "access to topics is changing: subscribe again")

    async def _op_unsubscribe(self, frame: dict[str, Any]) -> dict[str, Any]:
        topic = frame.get("topic")
        if topic not in self.topics:
            raise Problem(404, "not_subscribed", f"not subscribed to {topic}")
        assert isinstance(topic, str)
        await self.unsubscribe(topic)
        return {}

    async def _op_publish(self, frame: dict[str, Any]) -> dict[str, Any]:
        return await self.gateway.publish_as(self.user, frame.get("topic"), frame.get("data"))

    async def _op_presence(self, frame: dict[str, Any]) -> dict[str, Any]:
        return await self.gateway.presence_for(self.user, frame.get("topic"))

    _ops: ClassVar[dict[str, Op]] = {
        "ping": _op_ping,
        "subscribe": _op_subscribe,
        "unsubscribe": _op_unsubscribe,
        "publish": _op_publish,
        "presence": _op_presence,
    }

    # --- ending subscriptions -------------------------------------------------------------

    async def unsubscribe(self, topic: str) -> None:
        if self._detach(topic):
            await self._release(topic)

    def _detach(self, topic: str) -> bool:
        """The socket gets nothing more of ``topic`` from now on (synchronous: a revocation
        must take effect before the next publication is delivered). True if the engine
        side is left to :meth:`_release`."""
        self.topics.discard(topic)
        self.recovering.pop(topic, None)
        if self.gateway.bridge.unsubscribe(self, topic):
            return False
        return self.gateway.hub.remove(self, topic)

    async def _release(self, topic: str) -> None:
        """The engine side of an unsubscribe: the node's interest (unless another socket
        subscribed since) and the socket's presence."""
        gateway = self.gateway
        if topic not in gateway.hub.topics:
            await gateway.broker.unsubscribe(topic)
        namespace = gateway.namespaces.holding(topic)
        if namespace is not None and namespace.presence:
            # With the broker away the entry expires by itself; the socket's other topics
            # must still be let go of.
            with contextlib.suppress(BrokerUnavailable):
                await gateway.members.remove(self, topic)
                if namespace.presence_events:
                    await gateway.members.announce(self, topic, "leave")

    def revoke(self, topic: str, reason: str) -> None:
        """End one subscription now and tell the socket why."""
        released = self._detach(topic)
        self.send("unsubscribe", topic=topic, data={"reason": reason})
        if released:
            self.gateway.spawn(self._release_quietly(topic))

    async def _release_quietly(self, topic: str) -> None:
        try:
            await self._release(topic)
        except Exception:
            log.exception("ws.unsubscribe_failed", conn=self.id, topic=topic)

    def recheck(self, topic: str, reason: str) -> None:
        """Keep ``topic`` only if its namespace still lets the user subscribe. A check that
        must be awaited holds the topic's publications for the socket meanwhile."""
        namespace = self.gateway.namespaces.holding(topic)
        if namespace is None:
            self.revoke(topic, reason)
            return
        try:
            result = namespace.can_subscribe(self.user, topic)
        except Exception:
            log.exception("ws.recheck_failed", conn=self.id, topic=topic)
            result = False
        if isinstance(result, bool) or not inspect.isawaitable(result):
            if not result:
                self.revoke(topic, reason)
            return
        held: list[Publication] | None = None
        if topic not in self.recovering:  # (a subscribe in progress holds them already)
            held = self.recovering[topic] = []
        self.gateway.spawn(self._settle(topic, result, held, reason))

    async def _settle(
        self, topic: str, check: Awaitable[Any], held: list[Publication] | None, reason: str
    ) -> None:
        try:
            still = bool(await check)
        except Exception:
            log.exception("ws.recheck_failed", conn=self.id, topic=topic)
            still = False
        if self.closing or topic not in self.topics:
            return
        if not still:
            self.revoke(topic, reason)
        elif held is not None and self.recovering.get(topic) is held:
            del self.recovering[topic]
            for pub in held:
                self.write(text_frame(pub.frame))
