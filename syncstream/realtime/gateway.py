"""The one WebSocket endpoint, ``/ws``, and what the rest of the server asks of realtime.

:class:`Gateway` is the facade the app and the plugins use (publish, revoke, presence,
namespaces, the control channel); behind it each part has one job:

- :mod:`.wire` — every frame's schema; :mod:`.namespace` — topic families and permissions;
- :mod:`.client` — one socket: its protocol, its send queue, its subscriptions;
- :mod:`.hub` — topic -> sockets, the fan-out of frames encoded once;
- :mod:`.presence` — who is in a topic, joins/leaves, the refresh loop;
- :mod:`.revocation` — ending access to topics on every node;
- :mod:`.bridge` — the event bus <-> sockets (``bus:`` topics, bans, revoked tokens);
- the engine (:mod:`.engine`: broker, presence manager, and :mod:`.control`: node-addressed
  request/reply), memory or Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

import structlog
from aiohttp import web

from ..auth import Auth, User
from ..bus import EventBus
from ..config import RealtimeSettings
from ..errors import Problem
from ..ids import new_id
from ..metrics import Metrics
from ..ratelimit import TokenBucket
from ..runtime.ws_text_tap import usable as ws_text_tap_usable
from .bridge import BusBridge
from .client import Client
from .control import ControlChannel
from .engine import Broker, PresenceManager, Publication
from .hub import Hub
from .namespace import Namespace, Namespaces, Published, admins, allowed
from .presence import PresenceTracker
from .revocation import NOTICE_TOPIC, Revocation, Revoker
from .wire import CLOSE_GOING_AWAY

log = structlog.get_logger(__name__)


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
        *,
        ws_text_tap: bool = True,
    ) -> None:
        self.settings = settings
        self.ws_text_tap = ws_text_tap_usable(ws_text_tap)  # the seam reading text frames
        self.broker = broker
        self.presence = presence
        self.control = control  # node-addressed request/reply (see .control)
        self.auth = auth
        self.bus = bus
        self.metrics = metrics
        self.node_id = node_id
        self.namespaces = Namespaces()
        self.hub = Hub(metrics, settings.send_buffer_bytes, self._unheard)
        self.revoker = Revoker(node_id, broker, self.hub)
        self.members = PresenceTracker(settings, presence, broker, self.namespaces, self.hub)
        self.bridge = BusBridge(bus, self.hub, self.revoker, node_id)
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self._tasks: set[asyncio.Future[Any]] = set()
        self.register(
            Namespace("user", can_subscribe=lambda u, t: u.is_admin or t == f"user:{u.id}")
        )
        self.register(Namespace("broadcast"))
        self.register(Namespace("bus", can_subscribe=admins, can_publish=lambda u, t: False))

    @property
    def connections(self) -> set[Client]:
        """This node's sockets."""
        return self.hub.clients

    def register(self, namespace: Namespace) -> None:
        """Make a namespace of topics available (plugins call this from ``setup``)."""
        self.namespaces.register(namespace)

    def namespace_of(self, topic: Any) -> Namespace:
        """The namespace of a topic; 400/404 problems for malformed or unknown ones."""
        return self.namespaces.of(topic)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        # Kept: get_running_loop() makes a getpid() system call each time (CPython 3.11's
        # fork check), ~2 % of a chess move when called per frame.
        self.loop = asyncio.get_running_loop()
        self.hub.start(self.loop)
        await self.broker.start(self.hub.deliver)
        self.broker.on_reconnect(self._broker_back)
        await self.broker.subscribe(NOTICE_TOPIC)
        await self.control.start()
        self.members.start(self.loop)
        self.auth.role_hooks.append(self.revoker.role_changed)
        self.bridge.start()

    async def stop(self) -> None:
        """Close every socket with 1001 (going away) and stop the broker."""
        self.bridge.stop()
        if self.revoker.role_changed in self.auth.role_hooks:
            self.auth.role_hooks.remove(self.revoker.role_changed)
        self.hub.flush()
        self.members.stop()
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

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background, kept until it is done."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unheard(self, pub: Publication) -> None:
        """A publication no socket here subscribes to: the nodes' revocation notices."""
        self.revoker.on_notice(pub)

    def _broker_back(self) -> None:
        """The broker connection is back. Revocations other nodes made meanwhile were not
        heard (they keep no history): every subscription is checked again. Presence may
        have been lost with it (Redis restarted empty): it is rebuilt."""
        self.revoker.apply(Revocation.of("*", "access_changed", None, True, self.node_id))
        self.spawn(self.members.rebuild())

    # --- sockets --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The ``/ws`` endpoint: authenticate, then serve frames until the socket closes."""
        session = await self.auth.session_from_handshake(request)
        transport = request.transport
        if transport is None:  # the client is gone already
            return web.Response(status=499)
        client = Client(
            new_id(),
            session,
            transport,
            TokenBucket(self.settings.rate_per_second, self.settings.rate_burst),
            self,
        )
        return await client.run(request)

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

    # --- presence -------------------------------------------------------------------------

    async def presence_for(self, user: User, topic: Any) -> dict[str, Any]:
        """Who is in a topic, if ``user`` may see it."""
        namespace = self.namespace_of(topic)
        if not namespace.presence:
            raise Problem(400, "no_presence", f"{topic} does not track presence")
        if not await allowed(namespace.can_subscribe, user, topic):
            raise Problem(403, "forbidden", f"you may not see who is in {topic}")
        return {"topic": topic, "presence": await self.presence_of(topic)}

    async def presence_of(self, topic: str) -> list[dict[str, Any]]:
        """Who is in ``topic`` — 503 ``presence_recovering`` while it may still be missing
        sockets of other nodes after the broker came back (callers decide on absence)."""
        return await self.members.of(topic)

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
        await self.revoker.revoke(Revocation.of(topics, reason, user_id, recheck, self.node_id))
