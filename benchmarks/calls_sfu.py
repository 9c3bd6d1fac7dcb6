"""Calls: SFU capacity — participants and forwarded streams per core at 720p / 1 Mbps.

Rooms of ``--room-size`` participants (aiortc peers in this process) join group calls on a
node (``syncstream serve``, pinned to one core with ``--pin``). Each participant publishes a
720p30 VP8 stream of ~1 Mbps, encoded once by FFmpeg before the run and sent as packets
(the load client spends no time encoding), and receives everyone else's without decoding
them (it counts frames). Steps add rooms until the server's core is saturated or frames stop
arriving; each step prints the server's CPU, the media it forwarded, and the share of the
expected frames that arrived (below ~98 %: packets are being lost). The load client
receives as much as the server sends, in Python too, so on a two-core machine it saturates
its core about when the server's is 80 % busy: the figure to read is streams per server
core while everything still arrives.

    python -m benchmarks.calls_sfu --pin --room-size 4 --rooms 1 2 3 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from syncstream.runtime.aiortc_tap import is_keyframe, tap_receiver

from .harness import (
    CpuWindow,
    add_common_args,
    cpus,
    pin_self,
    register,
    require,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    write_config,
)

FPS = 30
CLIP_SECONDS = 10


def encode_clip(directory: Path, kbps: int) -> list[tuple[bytes, bool]]:
    """A 720p30 VP8 clip (FFmpeg's testsrc2, real-time settings, a keyframe every 2 s):
    its frames and which are keyframes."""
    path = directory / "clip.webm"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=1280x720:rate={FPS}:duration={CLIP_SECONDS}",
         "-c:v", "libvpx", "-b:v", f"{kbps}k", "-minrate", f"{kbps}k", "-maxrate", f"{kbps}k",
         "-deadline", "realtime", "-cpu-used", "8", "-g", str(2 * FPS), str(path)],
        check=True,
    )  # fmt: skip
    with av.open(str(path)) as container:
        frames = [(bytes(p), is_keyframe("vp8", bytes(p))) for p in container.demux(video=0)]
    return [f for f in frames if f[0]]


class ClipTrack(MediaStreamTrack):
    """The clip, looped, paced as a camera would send it (packets: nothing is encoded)."""

    kind = "video"

    def __init__(self, frames: list[tuple[bytes, bool]]) -> None:
        super().__init__()
        self.frames = frames
        self.index = 0
        self.started_at = 0.0

    async def recv(self) -> Any:
        if not self.started_at:
            self.started_at = time.monotonic()
        due = self.started_at + self.index / FPS
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        data, _ = self.frames[self.index % len(self.frames)]
        packet = av.Packet(data)
        packet.pts = self.index * (90000 // FPS)
        packet.time_base = Fraction(1, 90000)
        self.index += 1
        return packet


class Participant:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, call_id: str) -> None:
        self.ws, self.call_id = ws, call_id
        self.publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.subscriber = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.subscriber.on("track", self._on_track)
        self.frames = 0
        self.bytes = 0
        self.feeds = 0
        self.reader = asyncio.ensure_future(self._read())

    def _count(self, packet: Any, keyframe: bool) -> None:
        self.frames += 1
        self.bytes += packet.size

    def _on_track(self, track: Any) -> None:
        for transceiver in self.subscriber.getTransceivers():
            if transceiver.receiver.track is track:
                tap_receiver(transceiver.receiver, self._count)

    async def _signal(self, signal: dict[str, Any]) -> None:
        frame = {"op": "publish", "id": 0, "topic": f"call:{self.call_id}",
                 "data": {"to": "sfu", "signal": signal}}  # fmt: skip
        await self.ws.send_str(json.dumps(frame))

    async def publish(self, frames: list[tuple[bytes, bool]]) -> None:
        transceiver = self.publisher.addTransceiver(ClipTrack(frames), "sendonly")
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        sdp = self.publisher.localDescription.sdp
        await self._signal({"type": "offer", "sdp": sdp, "tracks": {transceiver.mid: "camera"}})

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data).get("data")
            if not (isinstance(data, dict) and data.get("from") == "sfu"):
                continue
            signal = data["signal"]
            if signal["type"] == "answer":
                await self.publisher.setRemoteDescription(
                    RTCSessionDescription(signal["sdp"], "answer")
                )
            elif signal["type"] == "offer":
                self.feeds = len(signal["tracks"])
                pc = self.subscriber
                await pc.setRemoteDescription(RTCSessionDescription(signal["sdp"], "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                answer = {"type": "answer", "pc": "subscribe", "sdp": pc.localDescription.sdp}
                await self._signal(answer)

    async def close(self) -> None:
        self.reader.cancel()
        await self.publisher.close()
        await self.subscriber.close()
        await self.ws.close()


async def open_room(
    session: aiohttp.ClientSession, url: str, room: int, size: int
) -> list[Participant]:
    users = [await register(session, url, f"r{room}p{n}") for n in range(size)]
    host = {"Authorization": f"Bearer {users[0][0]}"}
    invite = {"usernames": [f"r{room}p{n}" for n in range(1, size)], "kind": "group"}
    async with session.post(url + "/api/calls", json=invite, headers=host) as resp:
        call_id = (await resp.json())["id"]
    for token, _ in users[1:]:
        auth = {"Authorization": f"Bearer {token}"}
        async with session.post(url + f"/api/calls/{call_id}/accept", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
    participants = []
    for token, user_id in users:
        ws = await session.ws_connect(f"{url.replace('http', 'ws')}/ws?token={token}")
        await ws.receive()  # hello
        for topic in (f"user:{user_id}", f"call:{call_id}"):
            await ws.send_str(json.dumps({"op": "subscribe", "id": 0, "topic": topic}))
            await ws.receive()
        participants.append(Participant(ws, call_id))
    return participants


async def step(
    url: str, pid: int, frames: list[tuple[bytes, bool]], rooms: int, args: argparse.Namespace
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        people: list[Participant] = []
        for room in range(rooms):
            people += await open_room(session, url, args.step_id * 100 + room, args.room_size)
        for person in people:
            await person.publish(frames)
        await asyncio.sleep(args.warmup)
        expected_feeds = args.room_size - 1
        ready = sum(p.feeds == expected_feeds for p in people)
        frames0, bytes0 = sum(p.frames for p in people), sum(p.bytes for p in people)
        own0 = time.process_time()
        with CpuWindow([pid]) as cpu:
            await asyncio.sleep(args.seconds)
        client_cpu = time.process_time() - own0
        got = sum(p.frames for p in people) - frames0
        got_bytes = sum(p.bytes for p in people) - bytes0
        for person in people:
            await person.close()
    streams = len(people) * expected_feeds
    return {
        "rooms": rooms, "participants": len(people), "forwarded_streams": streams,
        "subscribed": ready == len(people),
        "server_cores": cpu.server_cpu_s / args.seconds,
        "client_cores": client_cpu / args.seconds,
        "others_cpu_s": cpu.others_cpu_s,
        "delivered": got / (streams * FPS * args.seconds),
        "forwarded_mbps": got_bytes * 8 / args.seconds / 1e6,
    }  # fmt: skip


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with temp_dir() as tmp:
        frames = encode_clip(tmp, args.kbps)
        config = write_config(tmp, "plugins: {calls: {max_participants: 64}}\n")
        node = start_node(config, cpus=cpus(args, "server"))
        try:
            for step_id, rooms in enumerate(args.rooms):
                args.step_id = step_id
                result = await step(node.url, node.proc.pid, frames, rooms, args)
                results.append(result)
                print(
                    f"  {rooms} rooms: server {result['server_cores']:.2f} cores, "
                    f"delivered {result['delivered']:.1%}",
                    flush=True,
                )
                if result["client_cores"] > 0.9:
                    print("  the load client's core is saturated: losses past here are its own")
                if result["server_cores"] > 0.95 or result["delivered"] < 0.9:
                    break  # saturated: more rooms would only lose more
                await asyncio.sleep(2)
        finally:
            stop(node.proc)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument("--rooms", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--kbps", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    add_common_args(parser)
    args = parser.parse_args()
    require("ffmpeg", "apt install ffmpeg")
    pin_self(args)
    results = asyncio.run(run(args))
    rows: list[list[Any]] = [["rooms", "participants", "forwarded streams", "server cores",
                              "client cores", "frames delivered", "forwarded Mbit/s",
                              "streams per server core"]]  # fmt: skip
    for r in results:
        rows.append([
            r["rooms"], r["participants"], r["forwarded_streams"], f"{r['server_cores']:.2f}",
            f"{r['client_cores']:.2f}", f"{r['delivered']:.1%}", f"{r['forwarded_mbps']:.1f}",
            round(r["forwarded_streams"] / max(r["server_cores"], 1e-9)),
        ])  # fmt: skip
    print(table(rows))
    save("calls_sfu", {"args": {k: v for k, v in vars(args).items() if k != "step_id"},
                       "steps": results})  # fmt: skip


if __name__ == "__main__":
    main()
