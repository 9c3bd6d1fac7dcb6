"""A WebRTC track that hands its sender ready-made packets: aiortc packetises ``av.Packet``s
as they are (H.264, VP8, Opus) instead of encoding frames, so a relayed stream costs no codec
work per viewer."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import MediaStreamTrack

Packet = Any  # av.Packet (typed loosely: PyAV's stubs make it generic)
QUEUE = 120  # packets (~2 s of video + audio)


class PacketTrack(MediaStreamTrack):
    """Encoded packets for one receiver, in a small bounded queue.

    Video starts at a keyframe (a decoder can do nothing before one). A receiver that falls
    behind loses non-key frames and resumes at the next keyframe, without slowing anyone else.
    """

    def __init__(self, kind: str, track_id: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        if track_id is not None:
            self._id = track_id  # what the far side sees in the SDP's msid
        self.queue: asyncio.Queue[Packet] = asyncio.Queue(QUEUE)
        self.started = kind == "audio"
        self.dropped = 0

    def push(self, packet: Packet, keyframe: bool) -> None:
        if not self.started:
            if not keyframe:
                return
            self.started = True
        if self.queue.full():
            if not keyframe:
                self.dropped += 1
                return
            while not self.queue.empty():  # resync on the keyframe
                self.queue.get_nowait()
                self.dropped += 1
        self.queue.put_nowait(packet)

    def restart(self) -> None:
        """Drop what is queued and wait for the next keyframe (after a gap, or when the
        track starts carrying another source)."""
        self.started = self.kind == "audio"
        while not self.queue.empty():
            self.queue.get_nowait()

    async def recv(self) -> Packet:
        return await self.queue.get()
