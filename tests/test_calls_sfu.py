"""Calls through the SFU, end to end with aiortc peers: three participants see and hear each
other (frames decoded on the far side, each picture from the right person), mute and
moderation are enforced by the server, a screen share arrives as its own labelled feed,
active-speaker events follow the loud one, leaving peers are cleaned up, and a recorded call
becomes a WebM in the host's files whose streams PyAV checks."""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path
from typing import Any

import av
import pytest

from .browser import CHROMIUM, chromium_page
from .files_support import download
from .sfu_peer import ColourTrack, NoiseTrack, SfuPeer, ToneTrack, bytes_sent, colour_of
from .support import Client, eventually, running
from .test_calls import FAKE_MEDIA


async def me(c: Client, token: str) -> str:
    _, body, _ = await c.call("GET", "/api/auth/me", token)
    return str(body["id"])


async def join(c: Client, call_id: str, name: str, token: str) -> SfuPeer:
    """A participant who has answered: socket on user:<id> and call:<id>."""
    user_id = await me(c, token)
    sock = await c.ws(token)
    for topic in (f"user:{user_id}", f"call:{call_id}"):
        assert (await sock.request("subscribe", topic))["op"] == "reply"
    return SfuPeer(name, user_id, call_id, sock)


async def group_call(c: Client, names: list[str], **invite: Any) -> tuple[str, list[SfuPeer]]:
    tokens = [await c.register(n) for n in names]
    kind = "group" if len(names) > 2 else "direct"
    body = {"usernames": names[1:], "kind": kind, **invite}
    status, call, _ = await c.call("POST", "/api/calls", tokens[0], json=body)
    assert status == 201 and call["route"] == "sfu", call
    for token in tokens[1:]:
        status, _, _ = await c.call("POST", f"/api/calls/{call['id']}/accept", token)
        assert status == 200
    return call["id"], [await join(c, call["id"], n, t) for n, t in zip(names, tokens, strict=True)]


def udp_sockets() -> int:
    """UDP sockets this process holds (ICE ports)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            inodes |= {line.split()[9] for line in list(f)[1:]}
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        held += target.startswith("socket:[") and target[8:-1] in inodes
    return held


async def stops(peer: SfuPeer, username: str, label: str) -> None:
    """Wait until a whole second passes without a frame of that feed (frames in flight
    may still land for a while on a loaded machine); fail if that never happens."""
    moment = time.monotonic()

    def quiet_second() -> bool:
        nonlocal moment
        if peer.since(username, label, moment):
            moment = time.monotonic()  # still flowing: start the second again
            return False
        return time.monotonic() - moment >= 1.0

    await eventually(quiet_second, f"{peer.name} stops receiving {username} {label}")


async def test_three_peers_through_the_sfu(tmp_path: Path) -> None:
    udp_before = udp_sockets()
    async with running(tmp_path) as c:
        call_id, (alice, bob, carol) = await group_call(c, ["alice", "bob", "carol"])
        colours = {"alice": "red", "bob": "green", "carol": "blue"}
        tracks: dict[str, dict[str, Any]] = {
            p.name: {"camera": ColourTrack(colours[p.name])} for p in (alice, bob, carol)
        }
        tracks["alice"]["microphone"] = ToneTrack()
        # All at once, as real clients join: the SFU's offers to each must not cross.
        await asyncio.gather(*(p.publish(tracks[p.name]) for p in (alice, bob, carol)))
        # Everyone sees the two others, each picture from the right person.
        for peer in (alice, bob, carol):
            for other in (alice, bob, carol):
                if other is not peer:
                    frames = await peer.frames_of(other.name, "camera")
                    assert colour_of(frames[-1]) == colours[other.name], (peer.name, other.name)
        sound = await bob.frames_of("alice", "microphone")
        assert sound[-1].sample_rate == 48000
        speaker = await carol.event("call.speaker")
        assert speaker["user_id"] == alice.user_id and speaker["level"] > -30

        # Bob turns his camera off: the SFU stops forwarding it; on again: it comes back.
        reply = await bob.request({"media": {"video": False}})
        assert reply["op"] == "reply"
        await stops(alice, "bob", "camera")
        await bob.request({"media": {"video": True}})
        moment = time.monotonic()
        await eventually(lambda: alice.since("bob", "camera", moment) > 5, "bob's camera back")

        # The host mutes everyone and locks it: carol cannot unmute, alice is not heard...
        reply = await alice.request(
            {"moderate": {"action": "mute", "media": "audio", "user": "all", "lock": True}}
        )
        assert set(reply["data"]["moderated"]) == {bob.user_id, carol.user_id}
        reply = await carol.request({"media": {"audio": True}})
        assert reply["op"] == "error" and reply["code"] == "muted_by_host"
        reply = await bob.request(
            {"moderate": {"action": "mute", "media": "audio", "user": alice.user_id}}
        )
        assert reply["code"] == "not_host"
        await alice.request({"media": {"audio": False}})
        await stops(bob, "alice", "microphone")
        await alice.request({"moderate": {"action": "unlock", "media": "audio", "user": "all"}})
        assert (await carol.request({"media": {"audio": True}}))["op"] == "reply"

        # Carol shares her screen: a new track, its own label, to everyone — once the host
        # lifts the lock on her screen it placed before (a feed published under a lock is
        # held back too).
        offers = alice.offers
        lock = {"action": "mute", "media": "screen", "user": carol.user_id, "lock": True}
        assert (await alice.request({"moderate": lock}))["op"] == "reply"
        await carol.publish({"screen": ColourTrack("yellow", (640, 360))})
        await eventually(lambda: alice.feed_of("carol", "screen"), "carol's screen offered")
        await stops(alice, "carol", "screen")
        await alice.request({"moderate": {**lock, "action": "unlock"}})
        assert (await carol.request({"media": {"screen": True}}))["op"] == "reply"
        frames = await alice.frames_of("carol", "screen")
        assert colour_of(frames[-1]) == "yellow" and frames[-1].width == 640
        assert alice.offers > offers
        assert colour_of((await bob.frames_of("carol", "screen"))[-1]) == "yellow"

        # Bob leaves: the others stop receiving him; his connections are closed.
        status, _, _ = await c.call("POST", f"/api/calls/{call_id}/leave", c.tokens["bob"])
        assert status == 200
        await eventually(
            lambda: (
                alice.feed_of("bob", "camera") is None and carol.feed_of("bob", "camera") is None
            ),
            "bob's feed is taken away from the others",
        )
        frames = await alice.frames_of("carol", "camera")  # the rest goes on
        assert colour_of(frames[-1]) == "blue"
        for peer in (alice, bob, carol):
            await peer.close()
        for token in (c.tokens["alice"], c.tokens["carol"]):
            await c.call("POST", f"/api/calls/{call_id}/leave", token)
        _, history, _ = await c.call("GET", "/api/calls", c.tokens["alice"])
        assert history["calls"][0]["status"] == "ended"
    await eventually(lambda: udp_sockets() <= udp_before, "ICE ports closed")


async def test_a_peer_whose_network_changed_restarts_and_is_seen_again(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        _, (alice, bob) = await group_call(c, ["alice", "bob"], route="sfu")
        await alice.publish({"camera": ColourTrack("red")})
        await bob.publish({"camera": ColourTrack("green")})
        before = bob.feed_of("alice", "camera")
        assert colour_of((await bob.frames_of("alice", "camera"))[-1]) == "red"
        await alice.restart({"camera": ColourTrack("yellow")})
        frames = await bob.frames_of("alice", "camera")
        assert colour_of(frames[-1]) == "yellow" and bob.feed_of("alice", "camera") != before
        assert colour_of((await alice.frames_of("bob", "camera"))[-1]) == "green"
        for peer in (alice, bob):
            await peer.close()


async def test_a_peer_whose_connections_drop_is_taken_out_of_the_room(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        call_id, (alice, bob) = await group_call(c, ["alice", "bob"], route="sfu")
        await asyncio.gather(alice.publish({"camera": ColourTrack("red")}),
                             bob.publish({"camera": ColourTrack("green")}))  # fmt: skip
        await alice.frames_of("bob", "camera")
        await bob.publisher.close()  # bob's app dies without a word
        await bob.subscriber.close()
        await eventually(
            lambda: alice.feed_of("bob", "camera") is None, "alice was offered bob's feed away"
        )
        _, state, _ = await c.call("GET", f"/api/calls/{call_id}", c.tokens["alice"])
        assert {p["state"] for p in state["participants"]} == {"joined"}  # still in the call
        for peer in (alice, bob):
            await peer.close()


async def test_publishers_are_held_to_the_video_bitrate_cap(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.calls.max_video_kbps": 300}) as c:
        _, (alice, bob) = await group_call(c, ["alice", "bob"], route="sfu")
        await alice.publish({"camera": NoiseTrack()})
        await bob.publish({"camera": ColourTrack("green")})
        assert "b=AS:300" in alice.answer  # what a browser keeps under
        await bob.frames_of("alice", "camera")
        # The SFU's REMB feedback reaches alice's encoder (aiortc starts at 500 kbit/s): some
        # 3-s window soon sends under the cap.
        rates: list[float] = []

        async def under_the_cap() -> bool:
            sent, started = await bytes_sent(alice.publisher), time.monotonic()
            await asyncio.sleep(3)
            elapsed = time.monotonic() - started
            rates.append((await bytes_sent(alice.publisher) - sent) * 8 / elapsed / 1000)
            return rates[-1] < 300 * 1.3

        await eventually(under_the_cap, f"alice under 390 kbit/s (sends {rates})", timeout=60)
        for peer in (alice, bob):
            await peer.close()


async def test_a_recorded_call_becomes_a_webm_in_the_hosts_files(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        recording_since = time.monotonic()
        call_id, (alice, bob) = await group_call(c, ["alice", "bob"], record=True)
        _, state, _ = await c.call("GET", f"/api/calls/{call_id}", c.tokens["bob"])
        assert state["recording"]["by"] == alice.user_id  # what everyone in the call sees
        await alice.publish({"camera": ColourTrack("red"), "microphone": ToneTrack()})
        await bob.publish({"camera": ColourTrack("green", (640, 480))})
        await bob.frames_of("alice", "camera", 60)  # two seconds of it, however long that takes
        status, problem, _ = await c.call(
            "DELETE", f"/api/calls/{call_id}/recording", c.tokens["bob"]
        )
        assert status == 403 and problem["code"] == "not_host"
        status, stopped_, _ = await c.call(
            "DELETE", f"/api/calls/{call_id}/recording", c.tokens["alice"]
        )
        assert status == 200 and stopped_["state"] == "stopped", stopped_
        recorded_for = time.monotonic() - recording_since
        notice = await bob.event("call.recording")
        while notice["state"] != "stopped":
            notice = await bob.event("call.recording")
        file = notice["file"]
        assert file["name"].startswith("Call ") and file["name"].endswith(".webm")
        status, data, _ = await download(c, c.tokens["alice"], f"/api/files/{file['id']}/content")
        assert status == 200
        with av.open(io.BytesIO(data)) as container:
            streams = {(s.type, s.codec_context.name, s.metadata.get("title")): s
                       for s in container.streams}  # fmt: skip
            assert set(streams) == {
                ("video", "vp8", "alice camera"), ("audio", "opus", "alice microphone"),
                ("video", "vp8", "bob camera"),
            }  # fmt: skip
            # At least the frames seen, at most the time it ran: no inflated timestamps.
            assert container.duration is not None
            assert 1.5 < container.duration / 1e6 < recorded_for + 1.0, recorded_for
            sizes = {(s.metadata["title"]): (s.width, s.height)
                     for s in container.streams.video}  # fmt: skip
            assert sizes == {"alice camera": (320, 240), "bob camera": (640, 480)}
            decoded = sum(1 for _ in container.decode(video=0))
            assert decoded > 30
        status, _, _ = await c.call("DELETE", f"/api/calls/{call_id}/recording", c.tokens["alice"])
        assert status == 409
        for peer in (alice, bob):
            await peer.close()


async def test_sfu_signaling_is_checked(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        call_id, (alice, bob) = await group_call(c, ["alice", "bob"], route="sfu")
        h264_only = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
            "a=msid-semantic:WMS *\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\n"
            "a=sendonly\r\na=mid:0\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n"
            "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
            "a=fingerprint:sha-256 00:11\r\na=setup:actpass\r\n"
        )
        no_fingerprint = h264_only.replace("H264/90000", "VP8/90000").replace(
            "a=fingerprint:sha-256 00:11\r\n", ""
        )  # passes the codec filter, fails in aiortc: a connection was already made for it
        cases = [
            ({"type": "offer", "sdp": no_fingerprint}, "invalid_sdp"),
            ({"type": "offer", "sdp": h264_only}, "invalid_sdp"),
            ({"type": "offer", "sdp": "v=0\r\no=x\r\nm=garbage\r\n"}, "invalid_sdp"),
            ({"type": "answer", "pc": "subscribe", "sdp": h264_only}, "no_offer"),
            ({"type": "offer", "pc": "sideways", "sdp": h264_only}, "invalid_signal"),
            ({"type": "offer", "sdp": h264_only, "tracks": {"0": "hologram"}}, "invalid_tracks"),
            ({"type": "dance"}, "invalid_signal"),
        ]
        for signal, code in cases:
            reply = await alice.signal(signal)
            assert reply["op"] == "error" and reply["code"] == code, (signal, reply)
        reply = await alice.request({"to": bob.user_id, "signal": {"type": "bye"}})
        assert reply["code"] == "routed_via_sfu"
        # Refused offers lose nothing: alice's next (good) one goes through.
        await alice.publish({"camera": ColourTrack("red")})
        assert (await bob.signal({"type": "subscribe"}))["op"] == "reply"
        assert colour_of((await bob.frames_of("alice", "camera"))[-1]) == "red"
        bad_orders = [{"action": "explode", "media": "audio", "user": "all"},
                      {"action": "mute", "media": "smell", "user": "all"}, "mute"]  # fmt: skip
        for order in bad_orders:
            reply = await alice.request({"moderate": order})
            assert reply["code"] == "invalid_moderation", order
        # A peer-to-peer call does not talk to the SFU and is not recorded.
        for peer in (alice, bob):
            await peer.close()
        await c.call("POST", f"/api/calls/{call_id}/leave", c.tokens["alice"])
        carol, dave = await c.register("carol"), await c.register("dave")
        _, p2p, _ = await c.call("POST", "/api/calls", carol, json={"usernames": ["dave"]})
        assert p2p["route"] == "p2p"
        await c.call("POST", f"/api/calls/{p2p['id']}/accept", dave)
        peer = await join(c, p2p["id"], "carol", carol)
        reply = await peer.signal({"type": "subscribe"})
        assert reply["code"] == "not_routed_via_sfu"
        status, problem, _ = await c.call("POST", f"/api/calls/{p2p['id']}/recording", carol)
        assert status == 409 and problem["code"] == "not_routed_via_sfu"
        body = {"usernames": ["carol"], "route": "p2p", "record": True}
        status, problem, _ = await c.call("POST", "/api/calls", dave, json=body)
        assert status == 422 and problem["code"] == "record_needs_sfu"
        await peer.close()


async def test_a_recording_running_at_shutdown_is_stored(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        _, (alice, bob) = await group_call(c, ["alice", "bob"], record=True)
        await alice.publish({"camera": ColourTrack("red")})
        assert (await bob.signal({"type": "subscribe"}))["op"] == "reply"  # bob only watches
        await bob.frames_of("alice", "camera", 30)
        for peer in (alice, bob):
            await peer.close()
    async with running(tmp_path) as c:  # the same data directory, started again
        token = await c.login("alice")
        _, search, _ = await c.call("GET", "/api/files/search?q=Call", token)
        names = [f["name"] for f in search["items"] if f["kind"] == "file"]
        assert len(names) == 1 and names[0].endswith(".webm"), search


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
async def test_chromium_joins_an_sfu_call_from_the_call_page(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        call_id, (alice, bob) = await group_call(c, ["alice", "bob"], route="sfu")
        await bob.close()  # bob joins from the browser instead
        await alice.publish({"camera": ColourTrack("red"), "microphone": ToneTrack()})
        page_url = c.url(f"/call#token={c.tokens['bob']}&call={call_id}")
        async with chromium_page(page_url, *FAKE_MEDIA) as page:
            frames = await alice.frames_of("bob", "camera")  # the browser's fake camera
            assert frames[-1].width > 0
            caption, playing = "", 0.0
            for _ in range(150):  # and the page plays alice's camera in a labelled tile
                caption, playing = await page.evaluate(
                    "[...document.querySelectorAll('#grid figure:not(#self)')]"
                    ".filter(f => !f.hidden)"
                    ".map(f => [f.querySelector('figcaption').textContent,"
                    " f.querySelector('video').currentTime])[0] || ['', 0]"
                )
                if playing > 0.5:
                    break
                await asyncio.sleep(0.1)
            assert caption == "alice · camera" and playing > 0.5, (caption, playing)
            await alice.request(
                {"moderate": {"action": "mute", "media": "audio", "user": "all", "lock": True}}
            )
            label = ""
            for _ in range(50):  # the page follows the host's locked mute
                label = await page.evaluate("document.getElementById('mute').textContent")
                if label == "Muted by the host":
                    break
                await asyncio.sleep(0.1)
            assert label == "Muted by the host"
            await page.evaluate("document.getElementById('hangup').click()")
            state = await alice.event("call.state")
            while state["call"]["status"] != "ended":
                state = await alice.event("call.state")
        await alice.close()
