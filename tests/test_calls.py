"""Calls end to end: ringing, answers, busy, missed, cancelled, history; signaling checks;
two aiortc peers connecting through the server's signaling; TURN credentials."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack
from aiortc.sdp import candidate_from_sdp

from .browser import CHROMIUM, chromium_page
from .support import Client, Socket, eventually, running

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
            ({"to": bob_me["id"], "signal": {"type": "ready", "session": "x" * 65}},
             "invalid_signal"),
            ({"to": bob_me["id"], "signal": {"type": "ready", "session": 7}}, "invalid_signal"),
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


class Peers:
    """Alice (caller) and Bob (callee) as aiortc peers in one call, signaling through the
    server; Bob's received video tracks feed ``frames`` (by track id)."""

    def __init__(self, c: Client, call_id: str, sockets: dict[str, Socket], ids: dict[str, str]):
        self.c, self.call_id, self.sockets, self.ids = c, call_id, sockets, ids
        self.topic = f"call:{call_id}"
        self.caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.callee = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames: dict[str, asyncio.Queue[Any]] = {}
        self.pulling: list[asyncio.Task[None]] = []
        self.callee.on("track", self._on_track)

    def _on_track(self, track: Any) -> None:
        queue = self.frames.setdefault(track.id, asyncio.Queue())

        async def pull() -> None:
            while True:
                await queue.put(await track.recv())

        self.pulling.append(asyncio.ensure_future(pull()))

    async def relay(self, sender: str, receiver: str, signal: dict[str, Any]) -> dict[str, Any]:
        """``sender`` publishes ``signal`` for ``receiver``, who gets it from the server."""
        data = {"to": self.ids[receiver], "signal": signal}
        reply = await self.sockets[sender].request("publish", self.topic, data)
        assert reply["op"] == "reply" and reply["data"] == {"delivered": True}, reply
        relayed = await next_of(self.sockets[receiver], "call.signal")
        assert relayed["from"] == self.ids[sender] and relayed["call_id"] == self.call_id
        return dict(relayed["signal"])

    async def negotiate(self) -> None:
        """An offer from alice, an answer from bob (the first time, and after each change)."""
        await self.caller.setLocalDescription(await self.caller.createOffer())
        offer = {"type": "offer", "sdp": self.caller.localDescription.sdp}
        relayed = await self.relay("alice", "bob", offer)
        await self.callee.setRemoteDescription(RTCSessionDescription(**relayed))
        await self.callee.setLocalDescription(await self.callee.createAnswer())
        answer_signal = {"type": "answer", "sdp": self.callee.localDescription.sdp}
        relayed = await self.relay("bob", "alice", answer_signal)
        await self.caller.setRemoteDescription(RTCSessionDescription(**relayed))

    async def close(self) -> None:
        for task in self.pulling:
            task.cancel()
        await self.caller.close()
        await self.callee.close()


async def peers_in_a_call(c: Client) -> Peers:
    alice, bob = await c.register("alice"), await c.register("bob")
    sockets = {"alice": await user_socket(c, alice), "bob": await user_socket(c, bob)}
    ids = {}
    for name, token in (("alice", alice), ("bob", bob)):
        _, me, _ = await c.call("GET", "/api/auth/me", token)
        ids[name] = me["id"]
    _, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
    await next_of(sockets["bob"], "call.invite")
    assert (await answer(c, bob, call["id"], "accept"))[0] == 200
    return Peers(c, call["id"], sockets, ids)


async def test_two_aiortc_peers_connect_through_the_signaling(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        peers = await peers_in_a_call(c)
        peers.caller.addTrack(VideoStreamTrack())
        await peers.negotiate()
        for _ in range(100):
            if peers.frames:
                break
            await asyncio.sleep(0.1)
        (queue,) = peers.frames.values()
        frame = await asyncio.wait_for(queue.get(), 20)  # decoded on the far side
        assert frame.width == 640 and frame.height == 480
        await peers.close()


async def test_a_screen_share_is_a_labelled_track_added_by_renegotiation(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as c:
        peers = await peers_in_a_call(c)
        camera, screen = VideoStreamTrack(), VideoStreamTrack()
        peers.caller.addTrack(camera)
        await peers.negotiate()
        peers.caller.addTrack(screen)  # alice starts sharing her screen: a second offer
        await peers.negotiate()
        for _ in range(200):
            if len(peers.frames) == 2 and all(not q.empty() for q in peers.frames.values()):
                break
            await asyncio.sleep(0.1)
        assert len(peers.frames) == 2, "bob receives both tracks"
        labels = {camera.id: "camera", screen.id: "screen"}
        reply = await peers.sockets["alice"].request(
            "publish", peers.topic, {"media": {"screen": True}, "tracks": labels}
        )
        assert reply["data"]["tracks"] == labels
        state = await next_of(peers.sockets["bob"], "call.state")
        alice = next(p for p in state["call"]["participants"] if p["username"] == "alice")
        assert alice["media"]["screen"] is True and alice["tracks"] == labels
        assert set(peers.frames) == set(labels), "track ids match the labels"
        bad = await peers.sockets["alice"].request(
            "publish", peers.topic, {"tracks": {camera.id: "hologram"}}
        )
        assert bad["code"] == "invalid_tracks"
        await peers.close()


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
        history: dict[str, Any] = {}

        async def ended() -> bool:
            nonlocal history
            _, history, _ = await c.call("GET", "/api/calls", alice)
            return bool(history["calls"][0]["status"] == "ended")

        await eventually(ended, "the call ends once bob has been gone a while")
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
                    "waiting for the other side…"
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


async def test_full_calls_and_signaling_floods_are_refused(tmp_path: Path) -> None:
    limits = {"plugins.calls.max_participants": 2, "realtime.rate_per_second": 5,
              "realtime.rate_burst": 5}  # fmt: skip
    async with running(tmp_path, **limits) as c:
        alice, bob = [await c.register(n) for n in ("alice", "bob", "carol")][:2]
        group = {"usernames": ["bob", "carol"], "kind": "group"}
        status, problem, _ = await c.call("POST", "/api/calls", alice, json=group)
        assert status == 409 and problem["code"] == "call_full"
        _, call, _ = await c.call("POST", "/api/calls", alice, json={"usernames": ["bob"]})
        assert (await answer(c, bob, call["id"], "accept"))[0] == 200
        _, bob_me, _ = await c.call("GET", "/api/auth/me", bob)
        a = await c.ws(alice)
        candidate = {"type": "candidate", "candidate": {"candidate": "candidate:1"}}
        for _ in range(12):  # a burst far above the limit, without waiting for replies
            await a.send("publish", f"call:{call['id']}", {"to": bob_me["id"], "signal": candidate})
        codes = []
        while len(codes) < 12:
            msg = await a.ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:  # the flood goes on: the socket is closed
                codes.append(f"closed {a.ws.close_code}")
                break
            frame = json.loads(msg.data)
            if frame["op"] in ("reply", "error"):
                codes.append(frame.get("code", "ok"))
        assert codes[:5] == ["ok"] * 5 and codes[5] == "rate_limited", codes
        assert codes[-1] == "closed 4029", codes
        await a.ws.close()
