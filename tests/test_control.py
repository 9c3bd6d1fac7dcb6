"""The node-addressed control channel (request/reply to one node), memory and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from syncstream.errors import Problem
from syncstream.realtime import ControlChannel, NodeTimeout, NodeUnavailable
from syncstream.realtime.control import MAX_MESSAGE_BYTES
from syncstream.realtime.memory_engine import MemoryControl
from syncstream.realtime.redis_control import RedisControl
from syncstream.realtime.redis_engine import RedisBroker

from .redis_server import RedisServer, own_redis
from .support import eventually

NodeFactory = Callable[[str], Awaitable[ControlChannel]]


async def redis_node(url: str, prefix: str, name: str) -> tuple[RedisBroker, RedisControl]:
    broker = RedisBroker(url, prefix, name, 10, 60)
    await broker.start(lambda pub: None)
    control = RedisControl(broker)
    await control.start()
    return broker, control


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_node(request: pytest.FixtureRequest) -> AsyncIterator[NodeFactory]:
    stops: list[Callable[[], Awaitable[None]]] = []
    network: dict[str, MemoryControl] = {}
    prefix = f"t{secrets.token_hex(4)}"
    async with contextlib.AsyncExitStack() as stack:
        redis = request.param == "redis"
        server = await stack.enter_async_context(own_redis()) if redis else None

        async def factory(name: str) -> ControlChannel:
            if server is None:
                control: ControlChannel = MemoryControl(name, network)
                await control.start()
                stops.append(control.stop)
                return control
            broker, control = await redis_node(server.url, prefix, name)
            stops.extend((broker.stop, control.stop))
            return control

        yield factory
        for stop in reversed(stops):
            await stop()


async def test_a_request_runs_on_the_named_node_and_errors_come_back(
    make_node: NodeFactory,
) -> None:
    a, b = await make_node("a"), await make_node("b")
    seen: list[str] = []

    async def double(payload: Any) -> Any:
        seen.append("b")
        if payload["n"] < 0:
            raise Problem(409, "negative", "no negatives")
        return {"n": payload["n"] * 2}

    async def crash(payload: Any) -> Any:
        raise RuntimeError("boom")

    b.serve("double", double)
    b.serve("crash", crash)
    assert await a.request("b", "double", {"n": 21}) == {"n": 42}
    assert seen == ["b"]
    with pytest.raises(Problem) as refused:
        await a.request("b", "double", {"n": -1})
    assert (refused.value.status, refused.value.code) == (409, "negative")
    with pytest.raises(Problem) as crashed:
        await a.request("b", "crash", None)
    assert (crashed.value.status, crashed.value.code) == (500, "internal_error")
    with pytest.raises(Problem) as unknown:
        await a.request("b", "nothing", None)
    assert unknown.value.code == "unknown_service"
    with pytest.raises(Problem) as big:
        await a.request("b", "double", {"n": "x" * MAX_MESSAGE_BYTES})
    assert (big.value.status, big.value.code) == (413, "request_too_large")
    started = time.monotonic()
    with pytest.raises(NodeUnavailable) as gone:
        await a.request("nobody", "double", {"n": 1}, timeout=30)
    assert gone.value.code == "node_unavailable"
    assert time.monotonic() - started < 10, "a node that is not there fails fast"


async def test_a_reply_after_the_timeout_is_dropped(make_node: NodeFactory) -> None:
    a, b = await make_node("a"), await make_node("b")
    release = asyncio.Event()

    async def slow(payload: Any) -> Any:
        await release.wait()
        return payload

    b.serve("slow", slow)
    with pytest.raises(NodeTimeout) as late:
        await a.request("b", "slow", 1, timeout=0.2)
    assert late.value.code == "node_timeout"
    release.set()
    await eventually(lambda: a.late_replies == 1, "the late reply arrives and is dropped")
    assert await a.request("b", "slow", 2) == 2, "the next request gets its own reply"


async def test_many_requests_in_flight_get_their_own_replies(make_node: NodeFactory) -> None:
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")

    async def echo_later(payload: Any) -> Any:
        await asyncio.sleep((payload % 7) / 1000)  # replies come back out of order
        return payload

    b.serve("echo", echo_later)
    c.serve("echo", echo_later)
    numbers = list(range(300))
    replies = await asyncio.gather(
        *(a.request("b" if n % 2 else "c", "echo", n, timeout=60) for n in numbers)
    )
    assert replies == numbers


CHILD = """
import asyncio, sys
from syncstream.realtime.redis_control import RedisControl
from syncstream.realtime.redis_engine import RedisBroker

async def main(url, prefix):
    broker = RedisBroker(url, prefix, "child", 10, 60)
    await broker.start(lambda pub: None)
    control = RedisControl(broker)
    await control.start()
    async def echo(payload):
        return payload
    async def hang(payload):
        print("hanging", flush=True)
        await asyncio.Event().wait()
    control.serve("echo", echo)
    control.serve("hang", hang)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.redis
async def test_a_killed_node_fails_its_requests() -> None:
    prefix = f"t{secrets.token_hex(4)}"
    async with own_redis() as server:
        broker, control = await redis_node(server.url, prefix, "parent")
        child = await spawn_child(server, prefix)
        try:
            assert await control.request("child", "echo", {"x": 1}, timeout=30) == {"x": 1}
            pending = asyncio.create_task(control.request("child", "hang", None, timeout=5))
            assert child.stdout is not None
            assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"hanging"
            os.kill(child.pid, signal.SIGKILL)
            await child.wait()
            with pytest.raises(NodeTimeout):
                await pending  # received, then the node died: no reply comes

            async def refused() -> bool:
                try:
                    await control.request("child", "echo", None, timeout=5)
                except NodeUnavailable:
                    return True
                return False

            await eventually(refused, "Redis saw the node go; requests to it fail fast")
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
            await control.stop()
            await broker.stop()


async def spawn_child(server: RedisServer, prefix: str) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, server.url, prefix, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 60)
    assert line.strip() == b"ready"
    return child
