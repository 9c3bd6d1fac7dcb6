"""The /ws gateway with real WebSocket clients: auth, topics, resume, presence, limits."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import weakref
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncstream.realtime.wire import (
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_RATE_LIMITED,
    CLOSE_SLOW_CONSUMER,
    CLOSE_UNAUTHORIZED,
)

from .support import running


async def test_handshake_needs_a_valid_token(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        for url in (c.url("/ws"), c.url("/ws?token=sst_forged")):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await c.session.ws_connect(url)
            assert err.value.status == 401
        token = await c.register("amy")
        ws = await c.session.ws_connect(c.url("/ws"), headers={"Authorization": f"Bearer {token}"})
        hello = json.loads((await ws.receive()).data)
        assert hello["op"] == "hello" and hello["data"]["user"]["username"] == "amy"
        await ws.close()


async def test_subscribe_publish_and_sequence(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        admin = await c.ws(await c.admin())
        viewer = await c.ws(await c.register("ben"))
        reply = await viewer.request("subscribe", "broadcast:news")
        assert reply["op"] == "reply" and reply["data"]["recovered"] is False
        epoch = reply["data"]["epoch"]
        for n in range(3):
            reply = await admin.request("publish", "broadcast:news", {"n": n})
            assert reply["data"]["seq"] == n + 1
        events = await viewer.events(3)
        assert [e["seq"] for e in events] == [1, 2, 3]
        assert [e["data"] for e in events] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert {e["epoch"] for e in events} == {epoch}
        assert {e["topic"] for e in events} == {"broadcast:news"}
        # A non-admin may read broadcasts but not publish them.
        err = await viewer.request("publish", "broadcast:news", {"n": 9})
        assert err["op"] == "error" and err["code"] == "forbidden"
        # HTTP publish takes the same path.
        status, body, _ = await c.call(
            "POST",
            "/api/realtime/publish",
            c.tokens.get("ben"),
            json={"topic": "broadcast:news", "data": 1},
        )
        assert status == 403 and body["code"] == "forbidden"


async def test_resume_replays_missed_events_once(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        admin_token = await c.admin()
        token = await c.register("cat")
        first = await c.ws(token)
        reply = await first.request("subscribe", "broadcast:feed")
        epoch = reply["data"]["epoch"]
        for n in range(2):
            await c.call(
                "POST",
                "/api/realtime/publish",
                admin_token,
                json={"topic": "broadcast:feed", "data": n},
            )
        seen = await first.events(2)
        await first.ws.close()
        for n in range(2, 5):
            await c.call(
                "POST",
                "/api/realtime/publish",
                admin_token,
                json={"topic": "broadcast:feed", "data": n},
            )
        again = await c.ws(token)
        reply = await again.request(
            "subscribe", "broadcast:feed", {"since": seen[-1]["seq"], "epoch": epoch}
        )
        assert reply["data"] == {"seq": 5, "epoch": epoch, "recovered": True}
        missed = await again.events(3)
        assert [e["data"] for e in missed] == [2, 3, 4]
        await c.call(
            "POST",
            "/api/realtime/publish",
            admin_token,
            json={"topic": "broadcast:feed", "data": 5},
        )
        (live,) = await again.events(1)
        assert live["seq"] == 6
        # A stale epoch means the history was lost: the client must reload.
        third = await c.ws(token)
        reply = await third.request("subscribe", "broadcast:feed", {"since": 2, "epoch": "stale"})
        assert reply["data"]["recovered"] is False and reply["data"]["seq"] == 6


async def test_resume_beyond_history_is_not_recovered(tmp_path: Path) -> None:
    async with running(tmp_path, **{"realtime.history_size": 2}) as c:
        admin = await c.ws(await c.admin())
        sub = await c.ws(await c.register("dan"))
        epoch = (await sub.request("subscribe", "broadcast:x"))["data"]["epoch"]
        await sub.request("unsubscribe", "broadcast:x")
        for n in range(5):
            await admin.request("publish", "broadcast:x", n)
        reply = await sub.request("subscribe", "broadcast:x", {"since": 1, "epoch": epoch})
        assert reply["data"]["recovered"] is False


async def test_topic_errors_and_permissions(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        eve_token = await c.register("eve")
        eve = await c.ws(eve_token)
        me = eve.hello["user"]["id"]
        assert (await eve.request("subscribe", "nosuch:topic"))["code"] == "unknown_topic"
        assert (await eve.request("subscribe", "Bad Topic"))["code"] == "invalid_topic"
        assert (await eve.request("subscribe", "user:someone-else"))["code"] == "forbidden"
        assert (await eve.request("subscribe", "bus:**"))["code"] == "forbidden"
        assert (await eve.request("subscribe", f"user:{me}"))["op"] == "reply"
        assert (await eve.request("subscribe", f"user:{me}"))["code"] == "already_subscribed"
        assert (await eve.request("unsubscribe", "broadcast:nope"))["code"] == "not_subscribed"
        assert (await eve.request("subscribe", "broadcast:a", {"since": -1}))[
            "code"
        ] == "invalid_frame"
        assert (await eve.request("frobnicate"))["code"] == "unknown_op"
        await eve.ws.send_str("{not json")
        assert (await eve.recv())["code"] == "invalid_json"
        await eve.ws.send_str("[1]")
        assert (await eve.recv())["code"] == "invalid_frame"
        await eve.ws.send_bytes(b"\x00")
        assert (await eve.recv())["code"] == "invalid_frame"
        # The connection survives bad frames.
        await eve.send("ping")
        assert (await eve.recv())["op"] == "pong"
        # Server-side publish to a user's private feed.
        core = c.server.core  # type: ignore[union-attr]
        await core.gateway.publish(f"user:{me}", {"hi": 1})
        (event,) = await eve.events(1)
        assert event["data"] == {"hi": 1}


async def test_too_many_subscriptions(tmp_path: Path) -> None:
    async with running(tmp_path, **{"realtime.max_subscriptions": 2}) as c:
        s = await c.ws(await c.register("fay"))
        await s.request("subscribe", "broadcast:a")
        await s.request("subscribe", "broadcast:b")
        assert (await s.request("subscribe", "broadcast:c"))["code"] == "too_many_subscriptions"


async def test_flood_is_rate_limited_then_closed(tmp_path: Path) -> None:
    async with running(tmp_path, **{"realtime.rate_per_second": 1, "realtime.rate_burst": 3}) as c:
        s = await c.ws(await c.register("gus"))
        for _ in range(4):
            await s.send("ping")
        frames = [await s.recv() for _ in range(4)]
        assert [f["op"] for f in frames[:3]] == ["pong"] * 3
        assert frames[3]["code"] == "rate_limited" and frames[3]["retry_after"] > 0
        for _ in range(5):
            await s.send("ping")
        code, reason = await s.closed()
        assert code == CLOSE_RATE_LIMITED and "rate limit" in reason


async def test_oversized_frame_closes_with_1009(tmp_path: Path) -> None:
    async with running(tmp_path, **{"realtime.max_message_bytes": 1024}) as c:
        s = await c.ws(await c.register("hal"))
        await s.ws.send_str(json.dumps({"op": "ping", "pad": "x" * 4000}))
        code, _ = await s.closed()
        assert code == 1009


async def test_slow_consumer_is_disconnected(tmp_path: Path) -> None:
    async with running(tmp_path, **{"realtime.send_buffer_bytes": 65536}) as c:
        admin = await c.admin()
        fast = await c.ws(await c.register("ivy"))
        await fast.request("subscribe", "broadcast:big")
        slow_token = await c.register("joe")
        # A client that subscribes and then never reads again: its buffers fill up.
        slow_ws = await c.session.ws_connect(c.url(f"/ws?token={slow_token}"))
        await slow_ws.receive()  # hello
        await slow_ws.send_str(json.dumps({"op": "subscribe", "id": 1, "topic": "broadcast:big"}))
        await slow_ws.receive()  # reply
        core = c.server.core  # type: ignore[union-attr]
        slow_conn = next(x for x in core.gateway.connections if x.user.username == "joe")
        payload = "x" * 60_000
        received = 0
        for _ in range(200):
            await c.call(
                "POST",
                "/api/realtime/publish",
                admin,
                json={"topic": "broadcast:big", "data": payload},
            )
            received += len(await fast.events(1))
            if slow_conn.closing:
                break
        assert slow_conn.closing, "the slow consumer was never dropped"
        assert received >= 1
        # The fast client is unaffected.
        await c.call(
            "POST", "/api/realtime/publish", admin, json={"topic": "broadcast:big", "data": "end"}
        )
        events = await fast.events(1)
        assert events[0]["data"] in ("end", payload)
        metrics = (await c.call("GET", "/metrics"))[1]
        assert "syncstream_ws_slow_consumers_total 1.0" in metrics
        assert CLOSE_SLOW_CONSUMER == 4008


async def test_dead_peer_is_detected_by_heartbeat(tmp_path: Path) -> None:
    async with running(tmp_path, **{"realtime.heartbeat_seconds": 0.3}) as c:
        token = await c.register("kim")
        ws = await c.session.ws_connect(c.url(f"/ws?token={token}"), autoping=False)
        await ws.receive()  # hello
        core = c.server.core  # type: ignore[union-attr]
        assert len(core.gateway.connections) == 1
        for _ in range(50):  # never answers the server's pings
            await asyncio.sleep(0.1)
            if not core.gateway.connections:
                break
        assert not core.gateway.connections
        await ws.close()


async def test_ban_and_revocation_close_live_sockets(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        admin = await c.admin()
        token = await c.register("lou")
        banned = await c.ws(token)
        _, me, _ = await c.call("GET", "/api/auth/me", token)
        await c.call("PATCH", f"/api/users/{me['id']}", admin, json={"banned": True})
        code, reason = await banned.closed()
        assert code == CLOSE_FORBIDDEN and "banned" in reason
        other = await c.register("max")
        s = await c.ws(other)
        await c.call("POST", "/api/auth/logout", other)
        code, _ = await s.closed()
        assert code == CLOSE_UNAUTHORIZED


async def test_presence_join_leave(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        a = await c.ws(await c.register("ned"))
        reply = await a.request("subscribe", "guestbook:main")
        assert [p["username"] for p in reply["data"]["presence"]] == ["ned"]
        b_token = await c.register("oli")
        b = await c.ws(b_token)
        reply = await b.request("subscribe", "guestbook:main")
        assert [p["username"] for p in reply["data"]["presence"]] == ["ned", "oli"]
        own, join = await a.events(2, ephemeral=True)
        assert own["data"]["user"]["username"] == "ned"
        assert join["ephemeral"] is True and "seq" not in join
        assert join["data"]["presence"] == "join" and join["data"]["user"]["username"] == "oli"
        status, body, _ = await c.call(
            "GET", "/api/realtime/presence?topic=guestbook:main", b_token
        )
        assert status == 200 and len(body["presence"]) == 2
        assert (await a.request("presence", "broadcast:x"))["code"] == "no_presence"
        await b.ws.close()
        leave = (await a.events(1, ephemeral=True))[0]
        assert leave["data"]["presence"] == "leave"
        assert [
            p["username"]
            for p in (await a.request("presence", "guestbook:main"))["data"]["presence"]
        ] == ["ned"]


async def test_admins_watch_bus_events(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        admin = await c.ws(await c.admin())
        assert (await admin.request("subscribe", "bus:guestbook.*"))["op"] == "reply"
        token = await c.register("pam")
        await c.call("POST", "/api/guestbook/entries", token, json={"text": "hello"})
        (event,) = await admin.events(1)
        assert event["data"]["type"] == "guestbook.signed"
        assert event["data"]["data"]["text"] == "hello"


async def test_shutdown_closes_sockets_going_away(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        s = await c.ws(await c.register("quin"))
        stopping = asyncio.create_task(c.server.stop())  # type: ignore[union-attr]
        code, _ = await s.closed()
        await stopping
        assert code == CLOSE_GOING_AWAY


def pending_reads() -> list[weakref.ref[Any]]:
    """The server's ``WebSocketResponse.receive`` coroutines suspended now."""
    return [
        weakref.ref(obj)
        for obj in gc.get_objects()
        if getattr(obj, "__qualname__", "") == "WebSocketResponse.receive"
        and getattr(obj, "cr_frame", None) is not None
    ]


async def test_frames_sent_together_are_served_in_order_by_a_read_made_once(
    tmp_path: Path,
) -> None:
    """Text frames reach the gateway as they are parsed; the socket's one pending read (for
    control frames) is not made again for every message (see runtime/ws_text_tap.py)."""
    async with running(tmp_path) as c:
        admin = await c.ws(await c.admin())
        viewer = await c.ws(await c.register("uma"))
        await viewer.request("subscribe", "broadcast:order")
        reads = pending_reads()
        # 30 frames in one go, without waiting for replies: served one after another.
        ids = [await admin.send("publish", "broadcast:order", {"n": n}) for n in range(30)]
        replies = [await admin.recv() for _ in ids]
        assert [r["id"] for r in replies] == ids
        assert [r["data"]["seq"] for r in replies] == list(range(1, 31))
        assert [e["data"]["n"] for e in await viewer.events(30)] == list(range(30))
        assert len(reads) >= 2  # the two sockets' reads were found at all
        # The same coroutines still wait: none was finished and made again per message.
        assert all(read() is not None and read().cr_frame is not None for read in reads)


async def test_what_a_client_sent_before_it_closed_is_served(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        viewer = await c.ws(await c.register("vic"))
        await viewer.request("subscribe", "broadcast:last")
        admin = await c.session.ws_connect(c.url(f"/ws?token={await c.admin()}"))
        await admin.receive()  # hello
        for n in range(3):
            await admin.send_str(
                json.dumps({"op": "publish", "topic": "broadcast:last", "data": n})
            )
        await admin.close()  # at once, replies unread
        assert [e["data"] for e in await viewer.events(3)] == [0, 1, 2]
        core = c.server.core  # type: ignore[union-attr]
        for _ in range(50):
            if len(core.gateway.connections) == 1:
                break
            await asyncio.sleep(0.02)
        assert len(core.gateway.connections) == 1  # the closed socket is gone


async def test_a_client_sending_faster_than_it_is_served_is_paused_not_buffered(
    tmp_path: Path,
) -> None:
    """Text frames bypass aiohttp's queue (and its flow control): the gateway pauses a
    socket's reading once ``INBOX_LIMIT`` frames wait, and resumes as they are served. What
    waits is then bounded by one read from the socket (the rest of the chunk being parsed),
    not by what the client sends (~750 KB here)."""
    limits = {"realtime.rate_per_second": 100_000, "realtime.rate_burst": 100_000}
    async with running(tmp_path, **limits) as c:
        s = await c.ws(await c.register("wes"))
        frames = [json.dumps({"op": "ping", "id": n}) for n in range(1, 30_001)]

        async def send_all() -> None:
            for frame in frames:
                await s.ws.send_str(frame)

        sender = asyncio.create_task(send_all())
        core = c.server.core  # type: ignore[union-attr]
        conn = next(iter(core.gateway.connections))
        deepest = 0
        replies = []
        while len(replies) < len(frames):
            deepest = max(deepest, len(conn.inbox))
            replies.append(await s.recv())
        await sender
        assert [r["id"] for r in replies] == list(range(1, 30_001))  # all, in order
        metrics = (await c.call("GET", "/metrics"))[1]
        paused = float(re.search(r"^syncstream_ws_reads_paused_total (\S+)", metrics, re.M)[1])
        assert paused >= 1
        assert deepest < len(frames) / 2
