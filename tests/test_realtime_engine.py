"""The realtime engine (broker + presence), memory and Redis, including two Redis nodes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from syncstream.realtime import Broker, BrokerUnavailable, PresenceManager, Publication
from syncstream.realtime.memory_engine import MemoryBroker, MemoryPresence
from syncstream.realtime.redis_engine import RedisBroker, RedisPresence

from .redis_server import own_redis
from .support import REDIS_URL

Node = tuple[Broker, list[Publication]]
NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_node(request: pytest.FixtureRequest) -> AsyncIterator[NodeFactory]:
    prefix = f"t{secrets.token_hex(4)}"
    brokers: list[Broker] = []

    async def factory(history_size: int = 10, ttl: int = 60, name: str = "n1") -> Node:
        broker: Broker
        if request.param == "redis":
            broker = RedisBroker(REDIS_URL, prefix, name, history_size, ttl)
        else:
            broker = MemoryBroker(history_size, ttl)
        got: list[Publication] = []
        await broker.start(got.append)
        brokers.append(broker)
        return broker, got

    yield factory
    for broker in brokers:
        await broker.stop()


async def settle(got: list[Publication], count: int) -> None:
    for _ in range(500):
        if len(got) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} publications, got {len(got)}")


async def test_sequences_frames_and_delivery(make_node: NodeFactory) -> None:
    broker, got = await make_node()
    await broker.subscribe("room:a")
    first = await broker.publish("room:a", {"text": "hé"})
    second = await broker.publish("room:a", [1, 2])
    other = await broker.publish("room:b", None)
    assert (first.seq, second.seq, other.seq) == (1, 2, 1)
    assert json.loads(first.frame) == {
        "op": "event",
        "topic": "room:a",
        "seq": 1,
        "epoch": first.epoch,
        "data": {"text": "hé"},
    }
    await settle(got, 2)
    assert [p.frame for p in got] == [first.frame, second.frame]  # room:b is not subscribed
    top, epoch = await broker.position("room:a")
    assert (top, epoch) == (2, first.epoch)
    await broker.unsubscribe("room:a")
    await broker.publish("room:a", "after")
    await asyncio.sleep(0.05)
    assert len(got) == 2


async def test_ephemeral_has_no_seq_or_history(make_node: NodeFactory) -> None:
    broker, got = await make_node()
    await broker.subscribe("room:a")
    pub = await broker.publish("room:a", {"typing": True}, ephemeral=True)
    assert pub.seq == 0
    assert json.loads(pub.frame) == {
        "op": "event",
        "topic": "room:a",
        "ephemeral": True,
        "data": {"typing": True},
    }
    await settle(got, 1)
    assert (await broker.position("room:a"))[0] == 0
    assert (await broker.history("room:a", 0, None)).publications == []


async def test_history_and_recovery(make_node: NodeFactory) -> None:
    broker, _ = await make_node(history_size=3)
    pubs = [await broker.publish("t:x", n) for n in range(5)]
    epoch = pubs[0].epoch
    result = await broker.history("t:x", 3, epoch)
    assert result.recovered and [p.seq for p in result.publications] == [4, 5]
    assert result.publications[0].frame == pubs[3].frame
    assert (await broker.history("t:x", 5, epoch)).recovered  # nothing missed
    gap = await broker.history("t:x", 1, epoch)  # seq 2 was trimmed away
    assert not gap.recovered and gap.publications == [] and gap.top_seq == 5
    assert not (await broker.history("t:x", 3, "other-epoch")).recovered
    assert not (await broker.history("t:x", 9, epoch)).recovered  # from the future


async def test_a_topic_may_keep_less_history(make_node: NodeFactory) -> None:
    broker, _ = await make_node(history_size=5)
    pubs = [await broker.publish("t:x", n, history=2) for n in range(4)]
    result = await broker.history("t:x", 2, pubs[0].epoch)
    assert result.recovered and [p.seq for p in result.publications] == [3, 4]
    assert not (await broker.history("t:x", 1, pubs[0].epoch)).recovered
    pubs = [await broker.publish("t:y", n, history=50) for n in range(6)]  # engine's size: 5
    assert not (await broker.history("t:y", 0, pubs[0].epoch)).recovered
    result = await broker.history("t:y", 1, pubs[0].epoch)
    assert result.recovered and [p.seq for p in result.publications] == [2, 3, 4, 5, 6]


@pytest.mark.redis
async def test_lost_history_changes_the_epoch() -> None:
    prefix = f"t{secrets.token_hex(4)}"
    broker = RedisBroker(REDIS_URL, prefix, "n", 10, 60)
    await broker.start(lambda p: None)
    try:
        old = await broker.publish("t:x", 1)
        keys = await broker.redis.keys(f"{prefix}:*")
        await broker.redis.delete(*keys)  # as if the keys had expired
        new = await broker.publish("t:x", 2)
        assert new.epoch != old.epoch and new.seq == 1
        assert not (await broker.history("t:x", 1, old.epoch)).recovered
    finally:
        await broker.stop()


async def test_memory_history_expires() -> None:
    broker = MemoryBroker(10, history_ttl_seconds=0.05)
    await broker.start(lambda p: None)
    old = await broker.publish("t:x", 1)
    await asyncio.sleep(0.1)
    result = await broker.history("t:x", 1, old.epoch)
    assert not result.recovered
    assert result.epoch != old.epoch and result.top_seq == 0


@pytest.mark.redis
async def test_two_redis_nodes_share_one_ordered_stream() -> None:
    prefix = f"t{secrets.token_hex(4)}"
    nodes = [RedisBroker(REDIS_URL, prefix, f"n{i}", 100, 60) for i in range(2)]
    received: list[list[Publication]] = [[], []]
    for node, got in zip(nodes, received, strict=True):
        await node.start(got.append)
        await node.subscribe("room:x")
    try:
        await asyncio.gather(
            *(nodes[i % 2].publish("room:x", {"from": i % 2, "n": i}) for i in range(40))
        )
        await settle(received[0], 40)
        await settle(received[1], 40)
        seqs = [[p.seq for p in got] for got in received]
        assert seqs[0] == seqs[1] == list(range(1, 41))
        assert [p.frame for p in received[0]] == [p.frame for p in received[1]]
    finally:
        for node in nodes:
            await node.stop()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[PresenceManager]:
    manager: PresenceManager = (
        RedisPresence(REDIS_URL, f"t{secrets.token_hex(4)}", 1)
        if request.param == "redis"
        else MemoryPresence(1)
    )
    yield manager
    await manager.close()


async def test_presence_add_list_remove_expire(presence: PresenceManager) -> None:
    await presence.add("room:a", "c1", {"user_id": "u1"})
    await presence.add("room:a", "c2", {"user_id": "u2"})
    await presence.add("room:b", "c3", {"user_id": "u3"})
    assert await presence.list("room:a") == {"c1": {"user_id": "u1"}, "c2": {"user_id": "u2"}}
    await presence.remove("room:a", "c1")
    assert set(await presence.list("room:a")) == {"c2"}
    await asyncio.sleep(0.6)
    await presence.add("room:a", "c2", {"user_id": "u2"})  # refreshed: stays
    await asyncio.sleep(0.6)
    assert set(await presence.list("room:a")) == {"c2"}
    assert await presence.list("room:b") == {}  # expired
    assert await presence.list("room:none") == {}


async def test_ordered_publications_go_out_once_in_version_order(make_node: NodeFactory) -> None:
    """What an outbox hands over: a version published before (a retry, another node's
    hand-over) is skipped, and an item never goes out after a newer one."""
    broker, got = await make_node()
    await broker.subscribe("room:a")
    made = await broker.publish_ordered("room:a", [(1, "one"), (2, "two")])
    assert [p.seq for p in made] == [1, 2]
    again = await broker.publish_ordered("room:a", [(2, "two"), (3, "three"), (1, "one")])
    assert [(p.seq, json.loads(p.frame)["data"]) for p in again] == [(3, "three")]
    assert await broker.publish_ordered("room:a", [(3, "three")]) == []
    plain = await broker.publish("room:a", "unversioned")  # shares the topic's seq
    assert plain.seq == 4
    await settle(got, 4)
    assert [json.loads(p.frame)["data"] for p in got] == ["one", "two", "three", "unversioned"]
    result = await broker.history("room:a", 0, made[0].epoch)
    assert result.recovered and [p.seq for p in result.publications] == [1, 2, 3, 4]


async def _publish_until(
    publisher: Broker, topic: str, done: Callable[[], bool], limit: int = 2000
) -> list[Publication]:
    """Publish one after another until ``done()`` (the other node is back); the first
    attempts after a Redis restart may find the connection gone (503: retry)."""
    made: list[Publication] = []
    for _ in range(limit):
        if done():
            return made
        with contextlib.suppress(BrokerUnavailable):
            made.append(await publisher.publish(topic, len(made)))
        await asyncio.sleep(0.005)
    raise AssertionError("the node never came back")
    return made


@asynccontextmanager
async def listener_and_publisher(
    url: str, history: int, **listener_options: Any
) -> AsyncIterator[tuple[RedisBroker, RedisBroker, list[Publication]]]:
    """Two nodes on one Redis: one listens (what it delivers lands in the list), one publishes."""
    prefix = f"t{secrets.token_hex(4)}"
    listener = RedisBroker(url, prefix, "n1", history, 60, **listener_options)
    publisher = RedisBroker(url, prefix, "n2", history, 60)
    got: list[Publication] = []
    await listener.start(got.append)
    await publisher.start(lambda p: None)
    try:
        yield listener, publisher, got
    finally:
        await listener.stop()
        await publisher.stop()


@pytest.mark.redis
async def test_a_lost_subscription_connection_replays_what_it_missed() -> None:
    """The subscriber's connection is cut while another node publishes: once back, it
    delivers every publication of the gap from the history, in order, exactly once."""
    async with (
        own_redis() as server,
        listener_and_publisher(server.url, 1000) as (
            listener,
            publisher,
            got,
        ),
    ):
        await listener.subscribe("room:a")
        before = [await publisher.publish("room:a", "before")]
        await settle(got, 1)
        admin = Redis.from_url(server.url)
        await admin.client_kill_filter(_type="pubsub")
        await admin.aclose()
        made = before + await _publish_until(publisher, "room:a", lambda: listener.reconnects > 0)
        made.append(await publisher.publish("room:a", "after"))
        await settle(got, len(made))
        await asyncio.sleep(0.05)  # nothing more (no duplicates) comes
        assert [p.seq for p in got] == [p.seq for p in made]
        assert [p.frame for p in got] == [p.frame for p in made]


@pytest.mark.redis
async def test_a_redis_restart_tells_subscribers_to_resync() -> None:
    """Redis restarts empty: what was published around the restart is gone from the history,
    so the node tells the topic's subscribers to resync (a new epoch), then goes on live."""
    async with (
        own_redis() as server,
        listener_and_publisher(server.url, 100) as (
            listener,
            publisher,
            got,
        ),
    ):
        await listener.subscribe("room:a")
        old = await publisher.publish("room:a", "old")
        await settle(got, 1)
        await server.restart()
        lost = await _publish_until(publisher, "room:a", lambda: listener.reconnects > 0)
        assert lost[0].epoch != old.epoch and lost[0].seq == 1
        await settle(got, 2)
        assert json.loads(got[1].frame) == {
            "op": "resync",
            "topic": "room:a",
            "data": {"seq": len(lost), "epoch": lost[0].epoch, "recovered": False},
        }
        live = await publisher.publish("room:a", "live")
        await settle(got, 3)
        assert [p.frame for p in got] == [old.frame, got[1].frame, live.frame]


@pytest.mark.redis
async def test_commands_fail_as_broker_unavailable_while_redis_is_down() -> None:
    async with own_redis() as server:
        broker = RedisBroker(server.url, f"t{secrets.token_hex(4)}", "n1", 100, 60)
        await broker.start(lambda p: None)
        try:
            await server.kill()
            for attempt in (
                broker.publish("room:a", 1),
                broker.publish_ordered("room:a", [(1, 1)]),
                broker.history("room:a", 0, None),
                broker.subscribe("room:b"),
            ):
                with pytest.raises(BrokerUnavailable) as caught:
                    await attempt
                assert caught.value.status == 503
                assert caught.value.headers["Retry-After"] == "1"
        finally:
            await broker.stop()


@pytest.mark.redis
async def test_a_frozen_redis_is_noticed_and_its_gap_replayed() -> None:
    """SIGSTOP keeps the socket open but Redis silent (like a lost network): the heartbeat
    notices, and once Redis answers again the node resubscribes and replays the gap."""
    async with own_redis() as server:
        assert server.proc is not None
        async with listener_and_publisher(server.url, 100, heartbeat=0.3) as (
            listener,
            publisher,
            got,
        ):
            await listener.subscribe("room:a")
            made = [await publisher.publish("room:a", "before")]
            await settle(got, 1)
            server.proc.send_signal(signal.SIGSTOP)
            try:
                for _ in range(1000):
                    if listener.losses:
                        break
                    await asyncio.sleep(0.01)
                assert listener.losses == 1
            finally:
                server.proc.send_signal(signal.SIGCONT)
            made += await _publish_until(publisher, "room:a", lambda: listener.reconnects > 0)
            made.append(await publisher.publish("room:a", "after"))
            await settle(got, len(made))
            assert [p.frame for p in got] == [p.frame for p in made]


@pytest.mark.redis
async def test_an_idle_healthy_connection_is_not_taken_for_lost() -> None:
    """Nothing published for several heartbeats: the PINGs are answered, and an answer is a
    sign of life (the PONG used to be dropped as a subscribe message, so every idle node
    'lost' Redis every two heartbeats and reconnected)."""
    async with own_redis() as server:
        broker = RedisBroker(server.url, f"t{secrets.token_hex(4)}", "n1", 100, 60, heartbeat=1.0)
        await broker.start(lambda p: None)
        try:
            await broker.subscribe("room:a")
            await asyncio.sleep(5.5)  # five heartbeats of silence
            assert broker.losses == 0 and broker.reconnects == 0
        finally:
            await broker.stop()
