"""A feed: one track a participant sends the SFU, forwarded as is to every other participant
(and to the recorder), each through its own bounded queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCRtpReceiver

from syncstream.sdk import FrameTap, Packet, PacketTrack, ask_keyframe, new_id

KEYFRAME_INTERVAL = 0.3  # s between two keyframe requests to one publisher
LOUDNESS_DECAY = 0.7  # smoothing of audio levels (per packet)


class Output(Protocol):
    def push(self, packet: Packet, keyframe: bool) -> None: ...

    def restart(self) -> None: ...


class ForwardTrack(PacketTrack):
    """A feed as one subscriber's sender sees it. Nothing is queued before the sender pulls
    (it pulls once connected): the first frame it gets is then a fresh keyframe."""

    def __init__(self, kind: str, on_first_pull: Callable[[], None]) -> None:
        super().__init__(kind)
        self.pulling = False
        self.on_first_pull = on_first_pull

    def push(self, packet: Packet, keyframe: bool) -> None:
        if self.pulling:
            super().push(packet, keyframe)

    async def recv(self) -> Packet:
        if not self.pulling:
            self.pulling = True
            self.on_first_pull()
        return await super().recv()


class Feed:
    def __init__(
        self, owner: str, username: str, kind: str, label: str, mid: str,
        receiver: RTCRtpReceiver,
    ) -> None:  # fmt: skip
        self.id = new_id()
        self.owner, self.username, self.kind, self.label, self.mid = (
            owner, username, kind, label, mid
        )  # fmt: skip
        self.receiver = receiver
        self.outputs: dict[str, Output] = {}
        self.muted = False
        self.loudness = 0.0  # 0 silent … 127 loudest, smoothed
        self.tap: FrameTap | None = None
        self._asked = 0.0
        self._pending = False
        self._tasks: set[asyncio.Task[None]] = set()

    def view(self) -> dict[str, Any]:
        return {"feed": self.id, "user_id": self.owner, "username": self.username,
                "kind": self.kind, "label": self.label}  # fmt: skip

    def forward(self, packet: Packet, keyframe: bool) -> None:
        if self.muted:
            return
        for output in self.outputs.values():
            output.push(packet, keyframe)

    def heard(self, level: int) -> None:
        """An audio level (RFC 6464: 0 loudest … 127 silent)."""
        loud = 0.0 if self.muted else 127.0 - level
        self.loudness = LOUDNESS_DECAY * self.loudness + (1 - LOUDNESS_DECAY) * loud

    def set_muted(self, muted: bool) -> None:
        """Stop (or resume) forwarding; video resumes at a fresh keyframe."""
        if muted == self.muted:
            return
        self.muted = muted
        if not muted and self.kind == "video":
            for output in self.outputs.values():
                output.restart()
            self.want_keyframe()

    def want_keyframe(self) -> None:
        """Ask the publisher for a keyframe: now, or (when one was asked for less than
        ``KEYFRAME_INTERVAL`` ago) once that interval is over — never dropped, since a
        receiver that waits for one gets nothing until it comes."""
        if self.kind != "video" or self._pending:
            return
        wait = self._asked + KEYFRAME_INTERVAL - time.monotonic()
        self._pending = True
        asyncio.get_running_loop().call_later(max(wait, 0.0), self._ask)

    def _ask(self) -> None:
        self._pending = False
        self._asked = time.monotonic()
        task = asyncio.get_running_loop().create_task(ask_keyframe(self.receiver))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
