"""Faults are tests: chat traffic across two nodes while Redis restarts and a node is killed.

The scenario (``faults_scenario.py``) runs its own redis-server and two ``syncstream serve``
processes on PostgreSQL; see there for what the clients do and what is checked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from plugins.chat import outbox
from syncstream.bus import Event, RedisBus

from .faults_scenario import alive, run
from .redis_server import own_redis
from .support import eventually, running

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_chat_loses_nothing_when_redis_restarts_and_a_node_dies(tmp_path: Path) -> None:
    async with own_redis() as redis:
        report = await run(tmp_path, redis)
    assert not [pid for pid in redis.pids if alive(pid)], "a redis-server was left behind"
    print(
        f"messages: {report.messages}, lost: {report.lost}, answers: {dict(report.answers)}, "
        f"resyncs: {report.resyncs}, resumes: {report.resumes}, "
        f"recovery after a Redis restart: {report.redis_recovery_seconds:.2f} s, "
        f"after kill -9 of a node: {report.node_recovery_seconds:.2f} s"
    )
    assert report.bad == []
    assert report.accepted_while_redis_down >= 20  # stored and acknowledged, not 500
    assert report.resyncs > 0 and report.resumes > 0  # both ways of catching up were used


async def test_the_bus_keeps_events_fired_while_redis_is_away() -> None:
    """Firing never fails because of Redis: local listeners get the event at once, other
    nodes once Redis is back (the backlog goes out in order)."""
    async with own_redis() as redis:
        a, b = RedisBus("node-a", redis.url, "t"), RedisBus("node-b", redis.url, "t")
        here: list[Event] = []
        there: list[Event] = []
        a.listen("x.*", here.append)
        b.listen("x.*", there.append)
        await a.start()
        await b.start()
        try:
            await redis.kill()
            for n in range(3):
                await a.fire("x.fired", {"n": n})  # no exception
            assert [e.data["n"] for e in here] == [0, 1, 2]
            await redis.start()
            probe = RedisBus("probe", redis.url, "t")
            await probe.start()
            try:
                for _ in range(500):  # b resubscribed: a probe's event reaches it
                    await probe.fire("x.probe", {})
                    if any(e.type == "x.probe" for e in there):
                        break
                    await asyncio.sleep(0.02)
            finally:
                await probe.stop()
            for _ in range(500):
                if [e.data["n"] for e in there if e.type == "x.fired"] == [0, 1, 2]:
                    break
                await asyncio.sleep(0.02)
            assert [e.data["n"] for e in there if e.type == "x.fired"] == [0, 1, 2]
        finally:
            await a.stop()
            await b.stop()


async def test_publishing_while_redis_is_down_is_a_documented_503(tmp_path: Path) -> None:
    """A publish that has nothing to store (no outbox) cannot be accepted while the broker
    is away: 503 broker_unavailable with Retry-After, over HTTP and on the WebSocket."""
    async with (
        own_redis() as redis,
        running(
            tmp_path, "postgres", **{"cluster.redis_url": redis.url, "cluster.prefix": "t"}
        ) as c,
    ):
        admin = await c.admin()
        sock = await c.ws(admin)
        assert (await sock.request("subscribe", "broadcast:news"))["op"] == "reply"
        await redis.kill()
        status, problem, resp = await c.call(
            "POST", "/api/realtime/publish", admin, json={"topic": "broadcast:news", "data": 1}
        )
        assert status == 503 and problem["code"] == "broker_unavailable", problem
        assert resp.headers["Retry-After"] == "1"
        reply = await sock.request("publish", "broadcast:news", {"n": 1})
        assert reply["op"] == "error" and reply["code"] == "broker_unavailable"
        assert reply["retry_after"] == 1
        await redis.start()
        resync = await sock.recv(timeout=30)  # the node is back, and the history is lost
        assert resync["op"] == "resync" and resync["data"]["recovered"] is False
        req_id = await sock.send("publish", "broadcast:news", {"n": 2})
        frames = [await sock.recv(), await sock.recv()]  # the reply and the event, either first
        assert {(f["op"], f.get("id")) for f in frames} == {("reply", req_id), ("event", None)}
        (event,) = [f for f in frames if f["op"] == "event"]
        assert event["data"] == {"n": 2} and event["epoch"] == resync["data"]["epoch"]


async def test_a_socket_closing_while_redis_is_down_lets_go_of_every_topic(
    tmp_path: Path,
) -> None:
    async with (
        own_redis() as redis,
        running(
            tmp_path, "postgres", **{"cluster.redis_url": redis.url, "cluster.prefix": "t"}
        ) as c,
    ):
        assert c.server is not None and c.server.core is not None
        gateway = c.server.core.gateway
        sock = await c.ws(await c.register("ann"))
        for topic in ("guestbook:a", "guestbook:b"):  # presence topics
            assert (await sock.request("subscribe", topic))["op"] == "reply"
        await redis.kill()
        await sock.ws.close()
        for _ in range(500):
            if not gateway.connections:
                break
            await asyncio.sleep(0.01)
        assert not gateway.connections
        assert not gateway.hub.topics  # no topic still holds the closed socket


async def test_a_message_stored_while_redis_is_down_goes_out_when_it_is_back(
    tmp_path: Path,
) -> None:
    """Accepted while the broker is away (stored, 201), published by the outbox's sweeper
    once Redis is back — nobody has to send again or retry."""
    async with (
        own_redis() as redis,
        running(
            tmp_path, "postgres", **{"cluster.redis_url": redis.url, "cluster.prefix": "t"}
        ) as c,
    ):
        ann = await c.register("ann")
        status, room, _ = await c.call("POST", "/api/chat/rooms", ann, json={"name": "r"})
        assert status == 201
        sock = await c.ws(ann)
        assert (await sock.request("subscribe", f"chat:{room['id']}"))["op"] == "reply"
        await redis.kill()
        status, sent, _ = await c.call(
            "POST", f"/api/chat/rooms/{room['id']}/messages", ann, json={"text": "in the dark"}
        )
        assert status == 201, sent
        await redis.start()
        resync = await sock.recv(timeout=30)
        assert resync["op"] == "resync"
        # Published in the new epoch (before or after this node subscribed again): replay
        # the epoch from its start until it holds the message.
        topic, epoch = f"chat:{room['id']}", resync["data"]["epoch"]
        for _ in range(300):
            assert (await sock.request("unsubscribe", topic))["op"] == "reply"
            reply = await sock.request("subscribe", topic, {"since": 0, "epoch": epoch})
            assert reply["data"]["recovered"] is True
            replayed = await sock.events(reply["data"]["seq"])
            if any(e["data"]["message"]["id"] == sent["id"] for e in replayed):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the stored message was never published")


async def test_a_long_outage_is_handed_over_in_bounded_batches_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "BATCH", 3)  # 10 waiting events: four hand-overs
    async with own_redis() as redis, running(
        tmp_path, "postgres", **{"cluster.redis_url": redis.url, "cluster.prefix": "t"},
        **{"plugins.chat.messages_per_second": 1000.0, "plugins.chat.message_burst": 1000},
    ) as c:  # fmt: skip
        ann = await c.register("ann")
        status, room, _ = await c.call("POST", "/api/chat/rooms", ann, json={"name": "r"})
        await redis.kill()
        for n in range(10):
            status, _, _ = await c.call(
                "POST", f"/api/chat/rooms/{room['id']}/messages", ann, json={"text": f"{n}"}
            )
            assert status == 201
        await redis.start()
        sock = await c.ws(ann)
        topic = f"chat:{room['id']}"
        for _ in range(300):  # until the sweeper has handed everything over
            reply = await sock.request("subscribe", topic, {"since": 0})
            events = await sock.events(reply["data"]["seq"])
            if len(events) == 10:
                break
            assert (await sock.request("unsubscribe", topic))["op"] == "reply"
            await asyncio.sleep(0.05)
        assert [e["data"]["message"]["version"] for e in events] == list(range(1, 11))


async def test_absence_is_not_believed_while_presence_is_rebuilt(tmp_path: Path) -> None:
    """Redis restarted empty: presence is gone until each node writes its own again. A
    claim of victory over an opponent who never left must not win in that window."""
    async with (
        own_redis() as redis,
        running(
            tmp_path, "postgres",
            **{"cluster.redis_url": redis.url, "cluster.prefix": "t",
               "realtime.presence_ttl_seconds": 6},
        ) as c,
    ):  # fmt: skip
        alice, bob = await c.register("alice"), await c.register("bob")
        _, challenge, _ = await c.call(
            "POST", "/api/chess/challenges", alice, json={"username": "bob", "color": "white"}
        )
        _, game, _ = await c.call("POST", f"/api/chess/challenges/{challenge['id']}/accept", bob)
        path = f"/api/chess/games/{game['id']}"
        assert (await c.call("POST", f"{path}/move/e2e4", alice))[0] == 200
        sock = await c.ws(bob)  # bob watches his game, and never leaves
        assert (await sock.request("subscribe", f"chess:{game['id']}"))["op"] == "reply"
        assert c.server is not None and c.server.core is not None
        broker = c.server.core.gateway.broker
        await redis.kill()
        await redis.start()
        await eventually(lambda: broker.reconnects > 0, "the node is back on Redis")  # type: ignore[attr-defined]
        status, problem, resp = await c.call("POST", f"{path}/claim_victory", alice)
        assert status == 503 and problem["code"] == "presence_recovering", problem
        assert int(resp.headers["Retry-After"]) >= 1

        async def refused_as_present() -> bool:
            status, problem, _ = await c.call("POST", f"{path}/claim_victory", alice)
            assert status in (409, 503), problem
            return status == 409 and problem["code"] == "opponent_present"

        await eventually(refused_as_present, "bob is seen present again")
