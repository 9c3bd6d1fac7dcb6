"""An aiortc participant of a call routed through the SFU, as a real client does it: it
publishes its tracks on one connection (it offers), receives the others' on a second one
(the server offers) and follows ``call.*`` events on its socket."""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections import defaultdict
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from av import AudioFrame, VideoFrame

from .support import Socket

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
           "yellow": (230, 220, 20)}  # fmt: skip


class ColourTrack(VideoStreamTrack):
    """A camera showing one colour (so a receiver can tell whose picture it got)."""

    def __init__(self, colour: str, size: tuple[int, int] = (320, 240)) -> None:
        super().__init__()
        width, height = size
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[:, :] = COLOURS[colour]
        self.frame = VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self.frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(AudioStreamTrack):
    """A microphone playing a loud 440 Hz tone (an active speaker)."""

    async def recv(self) -> AudioFrame:
        silent = await super().recv()
        t = (silent.pts + np.arange(silent.samples)) / 48000
        tone = (np.sin(2 * math.pi * 440 * t) * 12000).astype(np.int16)
        frame = AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), layout="stereo")
        frame.pts, frame.sample_rate = silent.pts, 48000
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


class NoiseTrack(VideoStreamTrack):
    """A camera showing noise: an encoder spends all the bitrate it is allowed on it."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        blocks = np.random.randint(0, 255, (15, 20, 3), np.uint8)  # 16x16 blocks of noise
        rgb = blocks.repeat(16, axis=0).repeat(16, axis=1)
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def bytes_sent(pc: RTCPeerConnection) -> int:
    """Media bytes a connection has sent so far."""
    stats = await pc.getStats()
    return sum(s.bytesSent for s in stats.values() if s.type == "outbound-rtp")


def colour_of(frame: VideoFrame) -> str:
    """The named colour nearest to the frame's average."""
    mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return min(
        COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(COLOURS[n], mean, strict=True))
    )


class SfuPeer:
    def __init__(self, name: str, user_id: str, call_id: str, sock: Socket) -> None:
        self.name, self.user_id, self.call_id, self.sock = name, user_id, call_id, sock
        self.topic = f"call:{call_id}"
        self.publisher, self.subscriber = self._connections()
        self.feeds: dict[str, dict[str, Any]] = {}  # mid -> the feed it carries now
        self.frames: dict[str, list[tuple[float, Any]]] = defaultdict(list)  # feed id -> ...
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.answered = asyncio.Event()
        self.answer = ""  # the SFU's last answer to this peer's publish offer
        self.offers = 0
        self.tasks = [asyncio.ensure_future(self._read())]

    def _connections(self) -> tuple[RTCPeerConnection, RTCPeerConnection]:
        subscriber = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        subscriber.on("track", self._on_track)
        return RTCPeerConnection(RTCConfiguration(iceServers=[])), subscriber

    async def restart(self, tracks: dict[str, MediaStreamTrack]) -> None:
        """The network changed: tell the SFU, start over with new connections."""
        assert (await self.signal({"type": "restart"}))["op"] == "reply"
        await self.publisher.close()
        await self.subscriber.close()
        self.publisher, self.subscriber = self._connections()
        self.feeds = {}
        await self.publish(tracks)

    async def request(self, data: Any) -> dict[str, Any]:
        """Publish on the call topic; the server's reply (or error)."""
        reply = self.replies[self.sock.next_id + 1] = asyncio.get_running_loop().create_future()
        await self.sock.send("publish", self.topic, data)
        return await asyncio.wait_for(reply, 10)

    async def signal(self, signal: dict[str, Any]) -> dict[str, Any]:
        return await self.request({"to": "sfu", "signal": signal})

    async def publish(self, tracks: dict[str, MediaStreamTrack]) -> None:
        """Send these tracks (label -> track) to the SFU, or add them (a new offer)."""
        mids = {}
        transceivers = []
        for label, track in tracks.items():
            transceivers.append((label, self.publisher.addTransceiver(track, "sendonly")))
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        for label, transceiver in transceivers:
            mids[transceiver.mid] = label
        self.answered.clear()
        sdp = self.publisher.localDescription.sdp
        reply = await self.signal({"type": "offer", "sdp": sdp, "tracks": mids})
        assert reply["op"] == "reply", reply
        await asyncio.wait_for(self.answered.wait(), 10)

    async def event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await asyncio.wait_for(self.events.get(), deadline - time.monotonic())
            if event.get("type") == kind:
                return event

    def feed_of(self, username: str, label: str) -> dict[str, Any] | None:
        return next(
            (f for f in self.feeds.values() if f["username"] == username and f["label"] == label),
            None,
        )

    async def frames_of(self, username: str, label: str, count: int = 5) -> list[Any]:
        """Wait for ``count`` frames of that feed; return the last ones."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            feed = self.feed_of(username, label)
            if feed is not None and len(self.frames[feed["feed"]]) >= count:
                return [f for _, f in self.frames[feed["feed"]][-count:]]
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} got no {username} {label}: {self.feeds}")

    def since(self, username: str, label: str, moment: float) -> int:
        """How many frames of that feed arrived after ``moment``."""
        feed = self.feed_of(username, label)
        if feed is None:
            return 0
        return sum(1 for at, _ in self.frames[feed["feed"]] if at > moment)

    def _on_track(self, track: MediaStreamTrack) -> None:
        pc = self.subscriber
        transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)

        async def pull() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                feed = self.feeds.get(transceiver.mid or "")
                if feed is not None:
                    self.frames[feed["feed"]].append((time.monotonic(), frame))

        self.tasks.append(asyncio.ensure_future(pull()))

    async def _read(self) -> None:
        while True:
            frame = await self.sock.recv(timeout=120)
            if frame["op"] in ("reply", "error") and frame.get("id") in self.replies:
                self.replies.pop(frame["id"]).set_result(frame)
                continue
            data = frame.get("data")
            if frame["op"] != "event" or not isinstance(data, dict):
                continue
            if data.get("type") == "call.signal" and data.get("from") == "sfu":
                await self._from_sfu(data["signal"])
            else:
                await self.events.put(data)

    async def _from_sfu(self, signal: dict[str, Any]) -> None:
        if signal["type"] == "answer":
            await self.publisher.setRemoteDescription(
                RTCSessionDescription(signal["sdp"], "answer")
            )
            self.answer = signal["sdp"]
            self.answered.set()
        elif signal["type"] == "offer":
            self.feeds = dict(signal["tracks"])
            self.offers += 1
            await self.subscriber.setRemoteDescription(
                RTCSessionDescription(signal["sdp"], "offer")
            )
            await self.subscriber.setLocalDescription(await self.subscriber.createAnswer())
            sdp = self.subscriber.localDescription.sdp
            await self.sock.send(
                "publish", self.topic,
                {"to": "sfu", "signal": {"type": "answer", "pc": "subscribe", "sdp": sdp}},
            )  # fmt: skip

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.publisher.close()
        await self.subscriber.close()
