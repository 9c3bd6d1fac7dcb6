"""The node-addressed control channel: a request to one node's named service, and its reply.

The broadcast bus reaches every node; some work must run on one node only — the node that
holds a chess game, a blackjack table, a live session. ``await control.request(node, service,
payload, timeout)`` runs ``service``'s handler on ``node`` and returns what it returned; a
node offers a service with ``control.serve(service, handler)``.

Messages are JSON, correlated by a request id:
``{"k":"req","id":I,"from":NODE,"svc":S,"p":PAYLOAD}`` and
``{"k":"rep","id":I,"ok":RESULT}`` or ``{"k":"rep","id":I,"err":{"status","code","detail"}}``.
The engines carry them: in memory between channels of one process, over Redis on a channel
per node (see :mod:`.redis_control`).

Failures are :class:`Problem` with stable codes: ``node_unavailable`` (503: no such node is
listening — it is gone, fail fast), ``node_timeout`` (503: no reply in time; a reply that
comes later is dropped), ``request_too_large`` (413), ``unknown_service`` (404 from the
target), and whatever :class:`Problem` the handler raised there (its status, code and
detail); a handler that failed otherwise is an ``internal_error`` (500), logged where it ran.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from .. import jsoncodec
from ..errors import Problem
from ..ids import new_id

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024  # a request or reply, encoded
DEFAULT_TIMEOUT = 5.0
RETRY_AFTER_SECONDS = 1

Handler = Callable[[Any], Awaitable[Any]]


class NodeUnavailable(Problem):
    """No node of that id listens on the control channel (it is gone or never was)."""

    def __init__(self, node: str) -> None:
        super().__init__(
            503, "node_unavailable", f"node {node!r} is not connected; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, retry_after=RETRY_AFTER_SECONDS,
        )  # fmt: skip
        self.node = node


class NodeTimeout(Problem):
    """The node did not reply in time (it may have died after it received the request)."""

    def __init__(self, node: str, service: str, timeout: float) -> None:
        super().__init__(
            503, "node_timeout", f"node {node!r} did not answer {service} within {timeout:g} s",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, retry_after=RETRY_AFTER_SECONDS,
        )  # fmt: skip
        self.node = node


def _encode(message: dict[str, Any], what: str) -> str:
    text = jsoncodec.dumps(message)
    if len(text) > MAX_MESSAGE_BYTES:
        raise Problem(413, f"{what}_too_large", f"a control {what} holds {MAX_MESSAGE_BYTES} bytes")
    return text


class ControlChannel(ABC):
    """Request/reply between nodes. Subclasses only carry encoded messages to a node."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._services: dict[str, Handler] = {}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.late_replies = 0  # replies that came after their request gave up

    @abstractmethod
    async def _send(self, node: str, message: str) -> bool:
        """Hand ``message`` to ``node``'s channel; False if no such node listens."""

    @abstractmethod
    async def start(self) -> None:
        """Begin receiving (requests to this node's services and replies to its requests)."""

    async def stop(self) -> None:
        """Stop receiving; requests still waiting fail with ``node_timeout`` or sooner."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def serve(self, service: str, handler: Handler) -> Callable[[], None]:
        """Run ``handler(payload)`` for requests to ``service`` on this node; returns the
        function that withdraws it."""
        if service in self._services:
            raise ValueError(f"control service {service!r} is already served")
        self._services[service] = handler

        def withdraw() -> None:
            self._services.pop(service, None)

        return withdraw

    async def request(
        self, node: str, service: str, payload: Any, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """What ``service`` on ``node`` returns for ``payload`` (see the module's errors)."""
        request_id = new_id()
        message = _encode(
            {"k": "req", "id": request_id, "from": self.node_id, "svc": service, "p": payload},
            "request",
        )
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            if not await self._send(node, message):
                raise NodeUnavailable(node)
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise NodeTimeout(node, service, timeout) from None
        finally:
            self._pending.pop(request_id, None)
        error = reply.get("err")
        if error is not None:
            raise Problem(int(error["status"]), str(error["code"]), str(error["detail"]))
        return reply.get("ok")

    def _received(self, text: str) -> None:
        """One message for this node, as its engine hands it over (must not raise)."""
        try:
            message = jsoncodec.loads(text)
            kind, request_id = message["k"], message["id"]
        except (ValueError, TypeError, KeyError):
            log.warning("control.bad_message", message=text[:200])
            return
        if kind == "rep":
            future = self._pending.get(request_id)
            if future is None or future.done():
                self.late_replies += 1
                log.info("control.late_reply", request=request_id)
            else:
                future.set_result(message)
        elif kind == "req":
            task = asyncio.get_running_loop().create_task(self._answer(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: dict[str, Any]) -> None:
        service = message.get("svc")
        handler = self._services.get(service) if isinstance(service, str) else None
        try:
            if handler is None:
                raise Problem(404, "unknown_service", f"node {self.node_id!r} serves no {service}")
            text = _encode(
                {"k": "rep", "id": message["id"], "ok": await handler(message.get("p"))}, "reply"
            )
        except Exception as exc:
            if not isinstance(exc, Problem):
                log.exception("control.handler_failed", service=service)
                exc = Problem(500, "internal_error", f"{service} failed on node {self.node_id!r}")
            error = {"status": exc.status, "code": exc.code, "detail": exc.detail}
            text = jsoncodec.dumps({"k": "rep", "id": message["id"], "err": error})
        try:
            if not await self._send(str(message.get("from")), text):
                log.info("control.requester_gone", node=message.get("from"), service=service)
        except Problem as problem:  # the engine is away: the requester times out
            log.warning("control.reply_failed", service=service, code=problem.code)
