"""The event bus: patterns, listeners, and events crossing nodes through Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from syncstream.bus import Event, EventBus, MemoryBus, RedisBus
from syncstream.bus.patterns import compile_pattern

from .support import REDIS_URL, eventually

BusFactory = Callable[[str], EventBus]


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("chat.*", "chat.message", True),
        ("chat.*", "chat", False),
        ("chat.*", "chat.room.created", False),
        ("chat.**", "chat", True),
        ("chat.**", "chat.room.created", True),
        ("chat.**", "chatter.message", False),
        ("*.message", "chat.message", True),
        ("*.message", "a.chat.message", False),
        ("**", "anything.at.all", True),
        ("a.**.z", "a.z", True),
        ("a.**.z", "a.b.c.z", True),
        ("a.**.z", "a.b.c", False),
        ("chat", "chat", True),
        ("chat", "chat.message", False),
        ("chat.mess", "chat.message", False),
    ],
)
def test_patterns(pattern: str, event_type: str, expected: bool) -> None:
    assert compile_pattern(pattern)(event_type) is expected


@pytest.mark.parametrize("bad", ["chat.me*", "chat..x", "*x"])
def test_invalid_patterns(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid event pattern"):
        compile_pattern(bad)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    prefix = f"t{secrets.token_hex(4)}"
    buses: list[EventBus] = []

    def factory(node: str) -> EventBus:
        bus: EventBus = (
            RedisBus(node, REDIS_URL, prefix) if request.param == "redis" else MemoryBus(node)
        )
        buses.append(bus)
        return bus

    yield factory
    for bus in buses:
        await bus.stop()


async def test_sync_and_async_listeners(make_bus: BusFactory) -> None:
    bus = make_bus("n1")
    await bus.start()
    got: list[tuple[str, str]] = []

    def sync_listener(event: Event) -> None:
        got.append(("sync", event.type))

    async def async_listener(event: Event) -> None:
        await asyncio.sleep(0)
        got.append(("async", event.type))

    bus.listen("chat.*", sync_listener)
    bus.listen("**", async_listener)
    event = await bus.fire("chat.message", {"text": "hi"})
    assert event.origin == "n1" and event.data == {"text": "hi"} and event.id
    await bus.fire("user.banned", {"user_id": "u"})
    await eventually(lambda: len(got) == 3, "three events")
    assert sorted(got) == [
        ("async", "chat.message"),
        ("async", "user.banned"),
        ("sync", "chat.message"),
    ]


async def test_failing_listener_does_not_stop_others(make_bus: BusFactory) -> None:
    bus = make_bus("n1")
    await bus.start()
    got: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    async def broken_async(event: Event) -> None:
        raise RuntimeError("boom")

    bus.listen("x.*", broken)
    bus.listen("x.*", broken_async)
    bus.listen("x.*", lambda e: got.append(e.type))
    await bus.fire("x.y")
    await bus.fire("x.z")
    assert got == ["x.y", "x.z"]


async def test_unsubscribe(make_bus: BusFactory) -> None:
    bus = make_bus("n1")
    await bus.start()
    got: list[str] = []
    unsubscribe = bus.listen("**", lambda e: got.append(e.type))
    await bus.fire("a.b")
    unsubscribe()
    unsubscribe()  # twice is harmless
    await bus.fire("a.c")
    assert got == ["a.b"]


async def test_non_json_data_is_refused(make_bus: BusFactory) -> None:
    bus = make_bus("n1")
    await bus.start()
    with pytest.raises(TypeError, match=r"bus event 'bad\.event'"):
        await bus.fire("bad.event", {"when": object()})


@pytest.mark.redis
async def test_two_redis_nodes_see_each_others_events_once() -> None:
    prefix = f"t{secrets.token_hex(4)}"
    a, b = RedisBus("node-a", REDIS_URL, prefix), RedisBus("node-b", REDIS_URL, prefix)
    await a.start()
    await b.start()
    try:
        seen_a: list[tuple[str, str]] = []
        seen_b: list[tuple[str, str]] = []
        a.listen("**", lambda e: seen_a.append((e.type, e.origin)))
        b.listen("**", lambda e: seen_b.append((e.type, e.origin)))
        await a.fire("from.a", {"n": 1})
        await b.fire("from.b", {"n": 2})
        await eventually(lambda: len(seen_a) == 2 and len(seen_b) == 2, "both nodes see both")
        await asyncio.sleep(0.1)  # nothing arrives twice
        assert sorted(seen_a) == sorted(seen_b) == [("from.a", "node-a"), ("from.b", "node-b")]
    finally:
        await a.stop()
        await b.stop()


async def test_redis_unreachable_at_start_is_a_clear_error() -> None:
    bus = RedisBus("n", "redis://127.0.0.1:1/0", "x")
    with pytest.raises(ConnectionError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0"):
        await bus.start()
