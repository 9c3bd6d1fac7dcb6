"""Chat end to end: rooms, messages over HTTP and WebSocket, sync, typing, moderation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncstream.bus import Event

from .files_support import tus_upload
from .support import (
    Client,
    NodeProcess,
    Socket,
    cluster_yaml,
    eventually,
    pg_schema,
    running,
    spawn_node,
)


async def room_of(c: Client, token: str, name: str = "team", **body: Any) -> dict[str, Any]:
    status, room, _ = await c.call("POST", "/api/chat/rooms", token, json={"name": name, **body})
    assert status == 201, room
    return dict(room)


async def say(c: Client, token: str, room_id: str, text: str, **body: Any) -> tuple[int, Any]:
    status, message, _ = await c.call(
        "POST", f"/api/chat/rooms/{room_id}/messages", token, json={"text": text, **body}
    )
    return status, message


async def events(sock: Socket, count: int, ephemeral: bool = False) -> list[dict[str, Any]]:
    return [f["data"] for f in await sock.events(count, ephemeral=ephemeral)]


async def test_group_messages_over_http_and_websocket(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        bus: list[Event] = []
        assert c.server is not None and c.server.core is not None
        c.server.core.bus.listen("chat.*", bus.append)
        alice = await c.register("alice")
        bob = await c.register("bob")
        carol = await c.register("carol")
        room = await room_of(c, alice, members=["bob"])
        assert room["role"] == "owner" and room["visibility"] == "invite"
        rid = room["id"]
        ws = await c.ws(bob)
        assert (await ws.request("subscribe", f"chat:{rid}"))["op"] == "reply"
        snoop = await c.ws(carol)
        reply = await snoop.request("subscribe", f"chat:{rid}")
        assert reply["op"] == "error" and reply["code"] == "forbidden"

        status, first = await say(c, alice, rid, "hello @bob and @nobody", client_key="k1")
        assert status == 201 and first["seq"] == 1 and first["username"] == "alice"
        assert first["mentions"] == [ws.hello["user"]["id"]]
        (event,) = await events(ws, 1)
        assert event["type"] == "message" and event["message"]["id"] == first["id"]
        # A retry with the same key: the same message, 200, and no second broadcast.
        status, again = await say(c, alice, rid, "hello @bob and @nobody", client_key="k1")
        assert status == 200 and again["id"] == first["id"]
        # Sending over the WebSocket: publish to the room's topic.
        sender = await c.ws(bob)
        reply = await sender.request(
            "publish", f"chat:{rid}", {"text": "hi!", "client_key": "b1", "reply_to": first["id"]}
        )
        assert reply["op"] == "reply" and reply["data"]["message"]["seq"] == 2
        (event,) = await events(ws, 1)
        assert event["message"]["reply_to"] == first["id"] and event["message"]["seq"] == 2
        reply = await sender.request("publish", f"chat:{rid}", {"text": "hi!", "client_key": "b1"})
        assert reply["data"]["message"]["seq"] == 2, "the WebSocket retry is idempotent too"
        await sender.ws.close()

        status, message, _ = await c.call(
            "PUT", f"/api/chat/rooms/{rid}/messages/{first['id']}/reactions/👍", bob
        )
        assert status == 200 and message["reactions"] == {"👍": [ws.hello["user"]["id"]]}
        status, message, _ = await c.call(
            "PATCH", f"/api/chat/rooms/{rid}/messages/{first['id']}", alice, json={"text": "hello!"}
        )
        assert message["text"] == "hello!" and message["edited_at"] and message["mentions"] == []
        status, problem, _ = await c.call(
            "PATCH", f"/api/chat/rooms/{rid}/messages/{first['id']}", bob, json={"text": "mine"}
        )
        assert status == 403 and problem["code"] == "not_your_message"
        status, message, _ = await c.call(
            "DELETE", f"/api/chat/rooms/{rid}/messages/{first['id']}", alice
        )
        assert message["deleted"] and message["text"] == ""
        kinds = [e["type"] for e in await events(ws, 3)]
        assert kinds == ["update", "update", "update"]

        _, page, _ = await c.call("GET", f"/api/chat/rooms/{rid}/messages?limit=1", bob)
        assert [m["seq"] for m in page["messages"]] == [2]
        _, page, _ = await c.call("GET", f"/api/chat/rooms/{rid}/messages?before=2", bob)
        assert [m["seq"] for m in page["messages"]] == [1] and page["messages"][0]["deleted"]
        _, found, _ = await c.call("GET", f"/api/chat/rooms/{rid}/messages?q=HI", bob)
        assert [m["text"] for m in found["messages"]] == ["hi!"]
        _, thread, _ = await c.call(
            "GET", f"/api/chat/rooms/{rid}/messages?thread={first['id']}", bob
        )
        assert [m["seq"] for m in thread["messages"]] == [1, 2], "the message and its reply"
        status, _, _ = await c.call("GET", f"/api/chat/rooms/{rid}/messages", carol)
        assert status == 404, "invite-only rooms are invisible to others"
        await eventually(
            lambda: {"chat.message", "chat.mention"} <= {e.type for e in bus}, "the bus events"
        )
        await ws.ws.close()
        await snoop.ws.close()


async def test_direct_chats_blocks_and_stream_rooms(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = await c.register("alice")
        bob = await c.register("bob")
        status, dm, _ = await c.call("POST", "/api/chat/direct/bob", alice)
        assert status == 200 and dm["kind"] == "direct" and dm["with"]["username"] == "bob"
        _, again, _ = await c.call("POST", "/api/chat/direct/alice", bob)
        assert again["id"] == dm["id"], "one direct room per pair"
        assert (await say(c, alice, dm["id"], "psst"))[0] == 201
        status, problem, _ = await c.call("POST", f"/api/chat/rooms/{dm['id']}/leave", bob)
        assert status == 409
        await c.call("PUT", "/api/chat/blocks/alice", bob)
        status, problem = await say(c, alice, dm["id"], "hello?")
        assert status == 403 and problem["code"] == "blocked"
        assert (await say(c, bob, dm["id"], "I can still write"))[0] == 201
        await c.call("DELETE", "/api/chat/blocks/alice", bob)
        assert (await say(c, alice, dm["id"], "back"))[0] == 201
        status, _, _ = await c.call("POST", "/api/chat/direct/alice", alice)
        assert status == 422

        status, key, _ = await c.call(
            "POST", "/api/auth/stream-key", alice, json={"stream": "show"}
        )
        assert status in (200, 201), key
        status, room, _ = await c.call("GET", "/api/chat/streams/show", bob)
        assert status == 200 and room["kind"] == "stream" and "role" not in room
        status, problem = await say(c, bob, room["id"], "first!")
        assert status == 403 and problem["code"] == "not_a_member"
        await c.call("POST", f"/api/chat/rooms/{room['id']}/join", bob)
        assert (await say(c, bob, room["id"], "first!"))[0] == 201
        _, owner_view, _ = await c.call("GET", "/api/chat/streams/show", alice)
        assert owner_view["role"] == "owner"
        status, _, _ = await c.call("GET", "/api/chat/streams/nothing", bob)
        assert status == 404


async def test_sync_returns_every_change_once_across_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = await c.register("alice")
        bob = await c.register("bob")
        rid = (await room_of(c, alice, members=["bob"]))["id"]
        ids = [(await say(c, alice, rid, f"m{i}"))[1]["id"] for i in range(5)]
        _, synced, _ = await c.call("POST", "/api/chat/sync", bob, json={"positions": {}})
        changes = synced["rooms"][rid]["changes"]
        assert [m["text"] for m in changes] == ["m0", "m1", "m2", "m3", "m4"]
        seen = changes[-1]["version"]
    async with running(tmp_path) as c:  # the same data directory: a restarted node
        alice, bob = await c.login("alice"), await c.login("bob")
        await c.call(
            "PATCH", f"/api/chat/rooms/{rid}/messages/{ids[1]}", alice, json={"text": "M1"}
        )
        await say(c, alice, rid, "m5")
        await c.call("DELETE", f"/api/chat/rooms/{rid}/messages/{ids[3]}", alice)
        _, synced, _ = await c.call("POST", "/api/chat/sync", bob, json={"positions": {rid: seen}})
        changes = synced["rooms"][rid]["changes"]
        assert [(m["text"], m["deleted"]) for m in changes] == [
            ("M1", False),
            ("m5", False),
            ("", True),
        ]
        versions = [m["version"] for m in changes]
        assert versions == sorted(versions) and len(set(versions)) == 3

        # Unread counts and read receipts.
        _, mine, _ = await c.call("GET", "/api/chat/rooms", bob)
        assert mine["rooms"][0]["unread"] == 5  # m0, m1, m2, m4, m5 (m3 deleted)
        last = synced["rooms"][rid]["last_seq"]
        _, read, _ = await c.call("POST", f"/api/chat/rooms/{rid}/read", bob, json={"seq": last})
        assert read["last_read_seq"] == last
        _, mine, _ = await c.call("GET", "/api/chat/rooms", bob)
        assert mine["rooms"][0]["unread"] == 0
        _, read, _ = await c.call("POST", f"/api/chat/rooms/{rid}/read", bob, json={"seq": 1})
        assert read["last_read_seq"] == last, "a read marker never moves back"


async def test_typing_is_ephemeral_throttled_and_for_members(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = await c.register("alice")
        bob = await c.register("bob")
        carol = await c.register("carol")
        rid = (await room_of(c, alice, members=["bob"]))["id"]
        a, b, x = await c.ws(alice), await c.ws(bob), await c.ws(carol)
        assert (await b.request("subscribe", f"typing:{rid}"))["op"] == "reply"
        assert (await a.request("publish", f"typing:{rid}", {"typing": True}))["op"] == "reply"
        (event,) = await events(b, 1, ephemeral=True)
        assert event["username"] == "alice" and event["typing"] and event["expires_in"] == 5.0
        reply = await a.request("publish", f"typing:{rid}", {"typing": True})
        assert reply["data"] == {"throttled": True}
        reply = await x.request("publish", f"typing:{rid}", {"typing": True})
        assert reply["op"] == "error"
        _, page, _ = await c.call("GET", f"/api/chat/rooms/{rid}/messages", bob)
        assert page["messages"] == [], "typing is never stored"
        for sock in (a, b, x):
            await sock.ws.close()


async def test_moderation_limits_and_bad_input(tmp_path: Path) -> None:
    async with running(
        tmp_path, **{"plugins.chat.message_burst": 5, "plugins.chat.max_message_chars": 100}
    ) as c:
        owner = await c.register("owner")
        mod = await c.register("mod")
        bob = await c.register("bob")
        rid = (await room_of(c, owner, visibility="public"))["id"]
        for token in (mod, bob):
            await c.call("POST", f"/api/chat/rooms/{rid}/join", token)
        status, _, _ = await c.call(
            "PUT", f"/api/chat/rooms/{rid}/members/mod/role", owner, json={"role": "moderator"}
        )
        assert status == 200

        async def act(token: str, **body: Any) -> tuple[int, Any]:
            status, out, _ = await c.call(
                "POST", f"/api/chat/rooms/{rid}/moderation", token, json=body
            )
            return status, out

        assert (await act(mod, action="mute", username="bob", seconds=60))[0] == 200
        status, problem = await say(c, bob, rid, "can you hear me")
        assert status == 403 and problem["code"] == "muted"
        status, problem = await act(bob, action="mute", username="mod")
        assert status == 403
        status, problem = await act(mod, action="kick", username="owner")
        assert status == 403, "a moderator cannot act on the owner"
        assert (await act(mod, action="unmute", username="bob"))[0] == 200
        assert (await say(c, bob, rid, "thanks"))[0] == 201

        status, _, _ = await c.call(
            "PATCH", f"/api/chat/rooms/{rid}", mod, json={"slow_mode_seconds": 30}
        )
        assert status == 200
        status, problem = await say(c, bob, rid, "again")
        assert status == 429 and problem["code"] == "slow_mode" and problem["retry_after"] > 25
        assert (await say(c, mod, rid, "moderators are exempt"))[0] == 201
        await c.call("PATCH", f"/api/chat/rooms/{rid}", mod, json={"slow_mode_seconds": 0})
        status, _, _ = await c.call("PATCH", f"/api/chat/rooms/{rid}", mod, json={"name": "mine"})
        assert status == 403, "renaming is the owner's"

        victim = (await say(c, bob, rid, "delete me"))[1]
        status, gone, _ = await c.call(
            "DELETE", f"/api/chat/rooms/{rid}/messages/{victim['id']}", mod
        )
        assert status == 200 and gone["deleted"]

        assert (await act(mod, action="ban", username="bob", reason="spam"))[0] == 200
        status, problem = await say(c, bob, rid, "let me in")
        assert status == 403
        status, problem, _ = await c.call("POST", f"/api/chat/rooms/{rid}/join", bob)
        assert status == 403 and problem["code"] == "banned" and problem["reason"] == "spam"
        assert (await act(owner, action="unban", username="bob"))[0] == 200
        assert (await c.call("POST", f"/api/chat/rooms/{rid}/join", bob))[0] == 200

        for text, code in (("   ", "empty_message"), ("x" * 101, "message_too_long")):
            status, problem = await say(c, bob, rid, text)
            assert problem["code"] == code
        status, problem = await say(c, bob, rid, "hi", client_key="has space")
        assert status == 422 and problem["code"] == "invalid_client_key"
        status, problem = await say(c, bob, rid, "hi", reply_to="f" * 32)
        assert status == 404
        status, problem = await say(c, bob, "0" * 32, "hi")
        assert status == 404 and problem["code"] == "room_not_found"
        codes = [(await say(c, bob, rid, f"flood {i}"))[1].get("code") for i in range(8)]
        assert "rate_limited" in codes, codes

        assert c.server is not None and c.server.core is not None
        rows = await c.server.core.store.fetchall(
            "SELECT action FROM audit_log WHERE action LIKE 'chat.%' ORDER BY time"
        )
        assert [r["action"] for r in rows] == [
            "chat.role",
            "chat.mute",
            "chat.unmute",
            "chat.room_changed",
            "chat.room_changed",
            "chat.message_removed",
            "chat.ban",
            "chat.unban",
        ]


async def test_attachments_are_permission_checked(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = await c.register("alice")
        bob = await c.register("bob")
        rid = (await room_of(c, alice, members=["bob"]))["id"]
        mine = await tus_upload(c, alice, b"%PDF-1.4 report", "report.pdf")
        theirs = await tus_upload(c, bob, b"private", "diary.txt")
        status, message = await say(c, alice, rid, "", attachments=[mine])
        assert status == 201
        assert message["attachments"] == [
            {"id": mine, "name": "report.pdf", "size": 15, "mime": "application/pdf"}
        ]
        status, problem = await say(c, alice, rid, "look", attachments=[theirs])
        assert status == 404 and problem["code"] == "file_not_found"


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_nodes_chat_presence_typing_and_sync(tmp_path: Path) -> None:
    async with pg_schema() as schema:
        config = tmp_path / "cluster.yaml"
        config.write_text(cluster_yaml(schema, f"data_dir: {tmp_path / 'data'}\n"))
        nodes: list[NodeProcess] = []
        try:
            for name in ("node-a", "node-b"):
                nodes.append(spawn_node(config, {"SYNCSTREAM_CLUSTER__NODE_ID": name}))
            for node in nodes:
                await node.wait_ready()
            async with aiohttp.ClientSession() as session:
                a, b = (Client(node.base, session) for node in nodes)
                alice = await a.register("alice")
                bob = await b.register("bob")
                rid = (await room_of(a, alice, members=["bob"]))["id"]
                alice_ws, bob_ws = await a.ws(alice), await b.ws(bob)
                for sock in (alice_ws, bob_ws):
                    for topic in (f"chat:{rid}", f"typing:{rid}"):
                        assert (await sock.request("subscribe", topic))["op"] == "reply"
                await b.call("PUT", "/api/chat/status", bob, json={"status": "away"})
                _, presence, _ = await a.call("GET", f"/api/chat/rooms/{rid}/presence", alice)
                states = {m["username"]: (m["state"], m["devices"]) for m in presence["members"]}
                assert states == {"alice": ("online", 1), "bob": ("away", 1)}

                await alice_ws.request("publish", f"typing:{rid}", {"typing": True})
                typing: dict[str, Any] = {}
                while "typing" not in typing:
                    typing = (await bob_ws.events(1, ephemeral=True))[0]["data"]
                assert typing["username"] == "alice" and typing["typing"]
                for i in range(3):  # alternate nodes
                    client, token = (a, alice) if i % 2 == 0 else (b, bob)
                    assert (await say(client, token, rid, f"n{i}"))[0] == 201
                seen = [e["message"]["text"] for e in await events(bob_ws, 3)]
                assert seen == ["n0", "n1", "n2"], "every message, in order, across nodes"
                _, synced, _ = await b.call("POST", "/api/chat/sync", bob, json={"positions": {}})
                assert [m["text"] for m in synced["rooms"][rid]["changes"]] == ["n0", "n1", "n2"]
                await alice_ws.ws.close()
                await bob_ws.ws.close()
        finally:
            for node in nodes:
                node.stop()


FAST = {"plugins.chat.messages_per_second": 1000.0, "plugins.chat.message_burst": 1000}


async def test_the_same_client_key_at_once_stores_and_answers_one_message(
    tmp_path: Path, backend: str
) -> None:
    """Concurrent retries of one send (a client on a flaky link, or two nodes) lose the race
    on the unique key: they answer with the stored message, never a 500."""
    async with running(tmp_path, backend, **FAST) as c:
        ann = await c.register("ann")
        rid = (await room_of(c, ann))["id"]
        results = await asyncio.gather(
            *(say(c, ann, rid, "once", client_key="same-key") for _ in range(20))
        )
        assert sorted({status for status, _ in results}) == [200, 201], results
        assert [status for status, _ in results].count(201) == 1
        assert {message["id"] for _, message in results} == {results[0][1]["id"]}
        _, page, _ = await c.call("GET", f"/api/chat/rooms/{rid}/messages", ann)
        assert [m["text"] for m in page["messages"]] == ["once"]


async def test_client_keys_are_scoped_per_user_and_room(tmp_path: Path) -> None:
    """Two users choosing the same key (or one user in two rooms) each get their message;
    the Idempotency-Key header is the same key."""
    async with running(tmp_path) as c:
        ann, bob = await c.register("ann"), await c.register("bob")
        rid = (await room_of(c, ann, members=["bob"]))["id"]
        other = (await room_of(c, ann, "other"))["id"]
        status_a, from_ann = await say(c, ann, rid, "from ann", client_key="k")
        status_b, from_bob = await say(c, bob, rid, "from bob", client_key="k")
        status_o, elsewhere = await say(c, ann, other, "elsewhere", client_key="k")
        assert (status_a, status_b, status_o) == (201, 201, 201)
        assert len({from_ann["id"], from_bob["id"], elsewhere["id"]}) == 3
        status, again, _ = await c.call(
            "POST", f"/api/chat/rooms/{rid}/messages", bob, json={"text": "x"},
            headers={"Idempotency-Key": "k"},
        )  # fmt: skip
        assert status == 200 and again["id"] == from_bob["id"] and again["text"] == "from bob"
        _, page, _ = await c.call("GET", f"/api/chat/rooms/{rid}/messages", ann)
        assert [m["text"] for m in page["messages"]] == ["from ann", "from bob"]


async def test_many_senders_reach_every_listener_in_version_order(
    tmp_path: Path, backend: str
) -> None:
    """Commit and publish are separate steps; the outbox publishes a room's changes in the
    order they committed, so every listener sees versions 1, 2, 3 ... with no gap — and a
    client that reloads and syncs from its highest version skips nothing."""
    async with running(tmp_path, backend, **FAST) as c:
        names = [f"user{i}" for i in range(8)]
        tokens = [await c.register(name) for name in names]
        rid = (await room_of(c, tokens[0], members=names[1:]))["id"]
        listeners = [await c.ws(tokens[i % len(tokens)]) for i in range(12)]
        for sock in listeners:
            assert (await sock.request("subscribe", f"chat:{rid}"))["op"] == "reply"

        async def sender(token: str, n: int) -> None:
            for k in range(n):
                status, _ = await say(c, token, rid, f"m{k}")
                assert status == 201

        per_sender = 20
        total = per_sender * len(tokens)
        await asyncio.gather(*(sender(token, per_sender) for token in tokens))
        for sock in listeners:
            got = [e["data"]["message"]["version"] for e in await sock.events(total, timeout=30)]
            assert got == list(range(1, total + 1))


async def test_a_malformed_idempotency_key_header_is_refused(tmp_path: Path) -> None:
    """The header goes through the core's one check (bounded, a safe alphabet), as it does
    for media jobs and uploads."""
    async with running(tmp_path) as c:
        ann = await c.register("ann")
        status, room, _ = await c.call("POST", "/api/chat/rooms", ann, json={"name": "r"})
        assert status == 201
        for key in ("x" * 65, "no spaces", "ünïcode"):
            status, problem, _ = await c.call(
                "POST", f"/api/chat/rooms/{room['id']}/messages", ann,
                json={"text": "hi"}, headers={"Idempotency-Key": key},
            )  # fmt: skip
            assert status == 422 and problem["code"] == "invalid_idempotency_key", (key, problem)
