"""The SFU rooms of this node's calls, their recordings and their active speakers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiortc import RTCIceServer

from syncstream.sdk import EventBus, FileStore, Gateway, Problem

from ..call import PhoneCall
from ..config import Config
from .recorder import CallRecording
from .room import Room

log = structlog.get_logger(__name__)
SPEAKER_TICK = 0.25  # s
SPEAKER_HOLD = 2  # ticks a new loudest speaker must last before it is announced


class Rooms:
    def __init__(
        self, gateway: Gateway, bus: EventBus, config: Config,
        files: Callable[[], FileStore | None], scratch: Path,
    ) -> None:  # fmt: skip
        self.gateway, self.bus, self.config, self.files = gateway, bus, config, files
        self.scratch = scratch
        self.rooms: dict[str, Room] = {}
        self.recordings: dict[str, CallRecording] = {}
        self._speaking: dict[str, str | None] = {}
        self._candidate: dict[str, tuple[str | None, int]] = {}
        self._ice = [
            RTCIceServer(s.urls, s.username, s.credential)
            for s in config.ice_servers
            if all(url.startswith("stun:") for url in s.urls)
        ]
        self._watcher = asyncio.get_running_loop().create_task(self._watch_speakers())

    def room(self, call: PhoneCall) -> Room:
        if call.id not in self.rooms:

            async def notify(user_id: str, signal: dict[str, Any]) -> None:
                await self.gateway.publish(
                    f"user:{user_id}",
                    {"type": "call.signal", "call_id": call.id, "from": "sfu", "signal": signal},
                )

            self.rooms[call.id] = Room(call.id, notify, self._ice, self.config.max_video_kbps)
        return self.rooms[call.id]

    async def leave(self, call_id: str, user_id: str) -> None:
        room = self.rooms.get(call_id)
        if room is not None:
            await room.leave(user_id)

    async def end(self, call: PhoneCall) -> None:
        """The call ended: stop its recording (the file goes to the host) and its room."""
        if call.id in self.recordings:
            await self.stop_recording(call)
        room = self.rooms.pop(call.id, None)
        self._speaking.pop(call.id, None)
        self._candidate.pop(call.id, None)
        if room is not None:
            await room.close()

    async def close(self, calls: Mapping[str, PhoneCall]) -> None:
        """Shutting down: recordings are finished and stored (or kept on disk), rooms close."""
        self._watcher.cancel()
        for call_id in list(self.recordings):
            try:
                await self.stop_recording(calls[call_id])
            except Exception:
                log.exception("call.recording_not_finished", call=call_id)
        for room in self.rooms.values():
            await room.close()

    # -- recording --------------------------------------------------------------------------

    async def start_recording(self, call: PhoneCall, by: str) -> dict[str, Any]:
        if self.files() is None:
            raise Problem(409, "recording_unavailable", "recording needs the files plugin")
        if call.id in self.recordings:
            raise Problem(409, "already_recording", "the call is being recorded")
        recording = CallRecording(self.scratch, by)
        self.recordings[call.id] = recording
        self.room(call).record(recording.tap)
        await self._announce(call, {"state": "started", **recording.view()})
        await self.bus.fire("call.recording", {"call_id": call.id, "by": by, "state": "started"})
        return recording.view()

    async def stop_recording(self, call: PhoneCall) -> dict[str, Any]:
        """Stop, join the tracks and store the file (the host's, in Recordings/Calls)."""
        recording = self.recordings.pop(call.id, None)
        if recording is None:
            raise Problem(409, "not_recording", "the call is not being recorded")
        room = self.rooms.get(call.id)
        if room is not None:
            room.record(None)
        result = await recording.finish()
        stored: dict[str, Any] | None = None
        files = self.files()
        if result is not None and files is not None:
            path, duration = result
            stamp = time.strftime("%Y-%m-%d %H.%M", time.gmtime(recording.started_at))
            try:
                stored = await files.add(
                    owner_id=call.host_id, source=path, name=f"Call {stamp}.webm",
                    folder="Recordings/Calls", created_by=recording.by,
                )  # fmt: skip
            except Exception as exc:  # over quota, say, or the file store already closed
                kept = self.scratch / "unsaved" / f"{recording.id}.webm"
                kept.parent.mkdir(parents=True, exist_ok=True)
                path.replace(kept)  # nothing recorded is thrown away
                log.warning("call.recording_not_stored", call=call.id, kept=str(kept),
                            error=getattr(exc, "code", type(exc).__name__))  # fmt: skip
            else:
                await self.bus.fire(
                    "call.recorded",
                    {"call_id": call.id, "file_id": stored["id"], "duration": round(duration, 3)},
                )
        recording.discard()
        notice = {"state": "stopped", **recording.view(), "file": stored}
        await self._announce(call, notice)
        return notice

    async def _announce(self, call: PhoneCall, recording: dict[str, Any]) -> None:
        await self.gateway.publish(
            f"call:{call.id}", {"type": "call.recording", "call_id": call.id, **recording}
        )

    # -- active speakers --------------------------------------------------------------------

    async def _watch_speakers(self) -> None:
        threshold = 127 + self.config.speaker_threshold_dbov
        while True:
            await asyncio.sleep(SPEAKER_TICK)
            for call_id, room in list(self.rooms.items()):
                feed = room.speaker(threshold)
                loudest = feed.owner if feed is not None else None
                seen, ticks = self._candidate.get(call_id, (None, 0))
                ticks = ticks + 1 if loudest == seen else 1
                self._candidate[call_id] = (loudest, ticks)
                if ticks == SPEAKER_HOLD and loudest != self._speaking.get(call_id):
                    self._speaking[call_id] = loudest
                    await self.gateway.publish(
                        f"call:{call_id}",
                        {"type": "call.speaker", "call_id": call_id, "user_id": loudest,
                         "level": None if feed is None else round(feed.loudness - 127, 1)},
                    )  # fmt: skip
