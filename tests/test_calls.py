"""Calls end to end: ringing, answers, busy, missed, cancelled, history; signaling checks;
two aiortc peers connecting through the server's signaling; TURN credentials."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack
from aiortc.sdp import candidate_from_sdp

from .browser import CHROMIUM, chromium_page
from .support import Client, Socket, running

SECRET = "a-turn-secret-of-some-length"
TURN = {
    "plugins.calls.turn": {"urls": ["turn:turn.example.org:3478"], "secret": SECRET},
    "plugins.calls.ice_servers": [{"urls": ["stun:stun.example.org:3478"]}],
}


async def next_of(sock: Socket, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next event of type ``kind`` on the socket (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await sock.recv(max(0.05, deadline - time.monotonic()))
        data = frame.get("data")
        if frame.get("op") == "event" and isinstance(data, dict) and data.get("type") == kind:
            return data


async def user_socket(c: Client, token: str) -> Socket:
    _, me, _ = await c.call("GET", "/api/auth/me", token)
    sock = await c.ws(token)
    assert (await sock.request("subscribe", f"user:{me['id']}"))["op"] == "reply"
    return sock


async def answer(c: Client, token: str, call_id: str, how: str) -> tuple[int, Any]:
    status, body, _ = await c.call("POST", f"/api/calls/{call_id}/{how}", token)
    return status, body


async def test_ringing_answers_and_history(tmp_path: Path) -> None:
    async with running(tmp_path, **TURN) as c:
        alice, bob, carol = [await c.register(n) for n in ("alice", "bob", "carol")]
        bob_sock = await user_socket(c, bob)
        status, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
        assert status == 201 and call["status"] == "ringing"
        invite = await next_of(bob_sock, "call.invite")
        assert invite["call"]["id"] == call["id"] and invite["from"]["username"] == "alice"
        urls = [s["urls"] for s in invite["ice_servers"]]
        assert urls == [["stun:stun.example.org:3478"], ["turn:turn.example.org:3478"]]
        status, problem = await answer(c, carol, call["id"], "accept")
        assert status == 403 and problem["code"] == "not_in_call"
        status, active = await answer(c, bob, call["id"], "accept")
        assert status == 200 and active["status"] == "active" and active["ice_servers"]
        # Carol rings bob, who is talking: busy, and her call ends at once.
        status, busy, _ = await c.call("POST", "/api/calls", carol, json={"usernames": ["bob"]})
        assert status == 201 and busy["status"] == "ended" and busy["end_reason"] == "busy"
        status, ended = await answer(c, bob, call["id"], "leave")
        assert status == 200 and ended["status"] == "ended" and ended["end_reason"] == "completed"
        state = await next_of(bob_sock, "call.state")
        while state["call"]["status"] != "ended":
            state = await next_of(bob_sock, "call.state")
        status, problem = await answer(c, alice, call["id"], "leave")
        assert status == 404 and problem["code"] == "call_not_found"
        _, history, _ = await c.call("GET", "/api/calls", bob)
        assert [(h["id"], h["my_state"], h["end_reason"]) for h in history["calls"]] == [
            (busy["id"], "busy", "busy"),
            (call["id"], "left", "completed"),
        ]
        await bob_sock.ws.close()


async def test_declined_cancelled_and_missed(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.calls.ring_seconds": 0.3}) as c:
        alice, bob, carol = [await c.register(n) for n in ("alice", "bob", "carol")]
        _, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
        status, state = await answer(c, bob, call["id"], "decline")
        assert state["status"] == "ended" and state["end_reason"] == "declined"
        _, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
        status, problem = await answer(c, bob, call["id"], "cancel")
        assert status == 403 and problem["code"] == "not_host"
        status, state = await answer(c, alice, call["id"], "cancel")
        assert state["end_reason"] == "cancelled"
        bob_sock = await user_socket(c, bob)
        _, call, _ = await c.call(
            "POST", "/api/calls", alice, json={"usernames": ["bob", "carol"], "kind": "group"}
        )
        assert (await answer(c, carol, call["id"], "accept"))[0] == 200
        state = await next_of(bob_sock, "call.state")
        while not any(p["state"] == "missed" for p in state["call"]["participants"]):
            state = await next_of(bob_sock, "call.state")  # bob let it ring out
        assert state["call"]["status"] == "active"  # alice and carol talk on
        status, state = await answer(c, bob, call["id"], "accept")  # joining late is fine
        assert status == 200 and len([p for p in state["participants"]
                                      if p["state"] == "joined"]) == 3  # fmt: skip
        for token in (alice, carol, bob):
            status, state = await answer(c, token, call["id"], "leave")
        assert state["status"] == "ended" and state["end_reason"] == "completed"
        for body in ({"usernames": ["bob", "carol"]}, {"usernames": []}, {"usernames": ["zed"]},
                     {"usernames": ["alice"]}):  # fmt: skip
            status, problem, _ = await c.call("POST", "/api/calls", alice, json=body)
            assert status in (404, 422) and problem["code"], (body, problem)
        await bob_sock.ws.close()


async def test_signaling_is_checked(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.calls.max_sdp_bytes": 2048}) as c:
        alice, bob, eve = [await c.register(n) for n in ("alice", "bob", "eve")]
        _, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
        topic = f"call:{call['id']}"
        a = await c.ws(alice)
        _, bob_me, _ = await c.call("GET", "/api/auth/me", bob)
        reply = await a.request("publish", topic, {"to": bob_me["id"], "signal": {"type": "bye"}})
        assert reply["code"] == "peer_not_joined"  # bob has not answered yet
        assert (await answer(c, bob, call["id"], "accept"))[0] == 200
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        )
        bad = [
            ({"to": bob_me["id"], "signal": {"type": "offer", "sdp": "hello"}}, "invalid_sdp"),
            ({"to": bob_me["id"], "signal": {"type": "offer", "sdp": sdp * 40}}, "invalid_sdp"),
            ({"to": bob_me["id"], "signal": {"type": "dance"}}, "invalid_signal"),
            ({"to": bob_me["id"], "signal": {"type": "candidate", "candidate": 5}},
             "invalid_candidate"),
            ({"to": "nobody", "signal": {"type": "offer", "sdp": sdp}}, "invalid_peer"),
            ({"media": {"audio": "off"}}, "invalid_media"),
            ("just text", "invalid_message"),
        ]  # fmt: skip
        for data, code in bad:
            reply = await a.request("publish", topic, data)
            assert reply["op"] == "error" and reply["code"] == code, (data, reply)
        e = await c.ws(eve)
        assert (await e.request("subscribe", topic))["op"] == "error"
        reply = await e.request("publish", topic, {"media": {"audio": False}})
        assert reply["code"] == "not_in_call"
        reply = await a.request("publish", topic, {"media": {"audio": False, "screen": True}})
        assert reply["data"]["media"] == {"audio": False, "video": True, "screen": True}
        for sock in (a, e):
            await sock.ws.close()


async def test_two_aiortc_peers_connect_through_the_signaling(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        a, b = await user_socket(c, alice), await user_socket(c, bob)
        ids = {}
        for name, token in (("alice", alice), ("bob", bob)):
            _, me, _ = await c.call("GET", "/api/auth/me", token)
            ids[name] = me["id"]
        _, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
        await next_of(b, "call.invite")
        assert (await answer(c, bob, call["id"], "accept"))[0] == 200
        topic = f"call:{call['id']}"
        caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        callee = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        caller.addTrack(VideoStreamTrack())
        frames: asyncio.Queue[Any] = asyncio.Queue()
        pulling: list[asyncio.Task[None]] = []

        @callee.on("track")
        def on_track(track: Any) -> None:
            async def pull() -> None:
                while True:
                    await frames.put(await track.recv())

            pulling.append(asyncio.ensure_future(pull()))

        await caller.setLocalDescription(await caller.createOffer())
        offer = {"type": "offer", "sdp": caller.localDescription.sdp}
        reply = await a.request("publish", topic, {"to": ids["bob"], "signal": offer})
        assert reply["op"] == "reply" and reply["data"] == {"delivered": True}
        relayed = await next_of(b, "call.signal")
        assert relayed["from"] == ids["alice"] and relayed["signal"]["type"] == "offer"
        await callee.setRemoteDescription(RTCSessionDescription(**relayed["signal"]))
        await callee.setLocalDescription(await callee.createAnswer())
        answer_signal = {"type": "answer", "sdp": callee.localDescription.sdp}
        assert (await b.request("publish", topic, {"to": ids["alice"], "signal": answer_signal}))[
            "op"
        ] == "reply"
        relayed = await next_of(a, "call.signal")
        await caller.setRemoteDescription(RTCSessionDescription(**relayed["signal"]))
        frame = await asyncio.wait_for(frames.get(), 20)  # decoded on the far side
        assert frame.width == 640 and frame.height == 480
        await caller.close()
        await callee.close()
        for task in pulling:
            task.cancel()
        await answer(c, alice, call["id"], "leave")
        for sock in (a, b):
            await sock.ws.close()


async def test_turn_credentials_are_coturn_rest_style(tmp_path: Path) -> None:
    async with running(tmp_path, **TURN) as c:
        alice = await c.register("alice")
        _, me, _ = await c.call("GET", "/api/auth/me", alice)
        _, ice, _ = await c.call("GET", "/api/calls/ice", alice)
        turn = ice["ice_servers"][1]
        expiry, user_id = turn["username"].split(":")
        assert user_id == me["id"] and 86_000 < int(expiry) - time.time() <= 86_400
        expected = hmac.new(SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()
        assert base64.b64decode(turn["credential"]) == expected


async def test_a_vanished_peer_is_hung_up(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.calls.leave_after_seconds": 0.4}) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        _, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
        assert (await answer(c, bob, call["id"], "accept"))[0] == 200
        a, b = await c.ws(alice), await c.ws(bob)
        for sock in (a, b):
            assert (await sock.request("subscribe", f"call:{call['id']}"))["op"] == "reply"
        await asyncio.sleep(0.8)  # both still connected: the call goes on
        _, state, _ = await c.call("GET", f"/api/calls/{call['id']}", alice)
        assert state["status"] == "active"
        await b.ws.close()  # bob's network drops
        for _ in range(30):
            await asyncio.sleep(0.1)
            _, history, _ = await c.call("GET", "/api/calls", alice)
            if history["calls"][0]["status"] == "ended":
                break
        assert history["calls"][0]["end_reason"] == "completed"
        assert {p["state"] for p in history["calls"][0]["participants"]} == {"left"}
        await a.ws.close()


FAKE_MEDIA = (
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # host candidates aiortc can reach
)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
async def test_chromium_joins_a_call_from_the_call_page(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        a = await user_socket(c, alice)
        _, bob_me, _ = await c.call("GET", "/api/auth/me", bob)
        _, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
        assert (await answer(c, bob, call["id"], "accept"))[0] == 200
        status, html, resp = await c.call("GET", "/call")
        assert status == 200 and "/call/call.js" in html
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        page_url = c.url(f"/call#token={bob}&call={call['id']}")
        async with chromium_page(page_url, *FAKE_MEDIA) as page:
            for _ in range(100):  # the page has its camera and listens for signals
                if await page.evaluate("document.getElementById('state').textContent") == (
                    "waiting for the caller…"
                ):
                    break
                await asyncio.sleep(0.1)
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTrack(VideoStreamTrack())
            frames: asyncio.Queue[Any] = asyncio.Queue()
            pulling: list[asyncio.Task[None]] = []

            @pc.on("track")
            def on_track(track: Any) -> None:
                async def pull() -> None:
                    while True:
                        await frames.put(await track.recv())

                if track.kind == "video":
                    pulling.append(asyncio.ensure_future(pull()))

            await pc.setLocalDescription(await pc.createOffer())
            offer = {"type": "offer", "sdp": pc.localDescription.sdp}
            topic = f"call:{call['id']}"
            assert (await a.request("publish", topic, {"to": bob_me["id"], "signal": offer}))[
                "op"
            ] == "reply"
            answered = False
            deadline = time.monotonic() + 20
            while frames.empty() and time.monotonic() < deadline:
                try:
                    signal = (await next_of(a, "call.signal", timeout=0.5))["signal"]
                except TimeoutError:
                    continue
                if signal["type"] == "answer":
                    await pc.setRemoteDescription(RTCSessionDescription(**signal))
                    answered = True
                elif signal["type"] == "candidate" and signal["candidate"]["candidate"]:
                    found = candidate_from_sdp(signal["candidate"]["candidate"].split(":", 1)[1])
                    found.sdpMid = signal["candidate"]["sdpMid"]
                    found.sdpMLineIndex = signal["candidate"]["sdpMLineIndex"]
                    await pc.addIceCandidate(found)
            assert answered, await page.evaluate("document.getElementById('state').textContent")
            frame = await asyncio.wait_for(frames.get(), 20)  # the browser's fake camera
            assert frame.width > 0 and frame.height > 0
            playing = 0.0
            for _ in range(100):  # and the page plays what aiortc sends
                playing = await page.evaluate("document.getElementById('remote').currentTime")
                if playing and playing > 0.5:
                    break
                await asyncio.sleep(0.1)
            assert playing > 0.5, f"the page's remote video does not play: {playing}"
            await page.evaluate("document.getElementById('mute').click()")
            state = await next_of(a, "call.state")
            bob_state = next(p for p in state["call"]["participants"] if p["username"] == "bob")
            assert bob_state["media"]["audio"] is False
            await page.evaluate("document.getElementById('hangup').click()")
            state = await next_of(a, "call.state")
            assert state["call"]["status"] == "ended"
            for task in pulling:
                task.cancel()
            await pc.close()
        await a.ws.close()
