"""One stream's HLS timeline: parts grouped into segments, a rolling window, waiters.

Parts (fMP4 fragments) arrive in order. A new segment starts at an independent part once the
current segment has reached the target duration, so segments are cut on keyframes. The
timeline renders LL-HLS playlists (RFC 8216bis: EXT-X-PART, EXT-X-PRELOAD-HINT,
EXT-X-SERVER-CONTROL with CAN-BLOCK-RELOAD) and lets requests wait for a future part.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from ..fmp4 import Fragment

PLAYLIST_PARTS_SEGMENTS = 3  # the most recent segments keep their parts in the playlist


@dataclass
class Part:
    index: int
    duration: float
    independent: bool
    data: bytes


@dataclass
class Segment:
    msn: int
    init: int  # which init section (EXT-X-MAP) the segment needs
    discontinuity: bool
    started_at: float  # wall clock, for EXT-X-PROGRAM-DATE-TIME
    parts: list[Part] = field(default_factory=list)
    complete: bool = False

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts)

    def data(self) -> bytes:
        return b"".join(p.data for p in self.parts)


class Timeline:
    """Segments of one live stream (across publisher reconnects) and their playlist."""

    def __init__(self, target_duration: float, part_target: float, window: int) -> None:
        self.target = target_duration
        self.part_target = part_target
        self.window = window
        self.segments: list[Segment] = []
        self.inits: dict[int, bytes] = {}
        self.ended = False
        self._init_seq = -1
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._max_duration = target_duration
        self._pending_discontinuity = False
        self._discontinuity_seq = 0  # discontinuities trimmed out of the window

    # --- writing (called on the event loop) -----------------------------------------------

    def new_init(self, data: bytes) -> None:
        """A new init section (first publish, or a reconnect): following parts use it."""
        self._init_seq += 1
        self.inits[self._init_seq] = data
        if self.segments:
            self._close_current()
            self._pending_discontinuity = True
        self.ended = False

    def add(self, fragment: Fragment) -> None:
        current = self.segments[-1] if self.segments else None
        if (
            current is None
            or current.complete
            or (fragment.independent and current.duration + fragment.duration / 2 >= self.target)
        ):
            if current is not None and not current.complete:
                self._close_current()
            current = Segment(
                msn=current.msn + 1 if current else 0,
                init=self._init_seq,
                discontinuity=self._pending_discontinuity,
                started_at=time.time(),
            )
            self._pending_discontinuity = False
            self.segments.append(current)
            self._trim()
        current.parts.append(
            Part(len(current.parts), fragment.duration, fragment.independent, fragment.data)
        )
        self._notify()

    def end(self) -> None:
        """The stream is over: close the last segment and add EXT-X-ENDLIST."""
        if self.segments:
            self._close_current()
        self.ended = True
        self._notify()

    def _close_current(self) -> None:
        current = self.segments[-1]
        if not current.complete:
            current.complete = True
            self._max_duration = max(self._max_duration, current.duration)

    def _trim(self) -> None:
        excess = len(self.segments) - self.window
        if excess > 0:
            self._discontinuity_seq += sum(1 for s in self.segments[:excess] if s.discontinuity)
            del self.segments[:excess]
            live = {s.init for s in self.segments}
            for seq in [s for s in self.inits if s not in live and s != self._init_seq]:
                del self.inits[seq]

    def _notify(self) -> None:
        """Wake every waiter: resolve the current future and start a new one."""
        changed, self._changed = self._changed, asyncio.get_running_loop().create_future()
        changed.set_result(None)

    # --- reading --------------------------------------------------------------------------

    def segment(self, msn: int) -> Segment | None:
        if not self.segments or msn < self.segments[0].msn:
            return None
        offset = msn - self.segments[0].msn
        return self.segments[offset] if offset < len(self.segments) else None

    def has_part(self, msn: int, part: int | None) -> bool:
        """Whether segment ``msn`` (or its part ``part``) is available yet."""
        last = self.segments[-1] if self.segments else None
        if last is None:
            return False
        if msn < last.msn:
            return True
        if msn > last.msn:
            return False
        if part is None:
            return last.complete
        return part < len(last.parts) or last.complete

    def next_position(self) -> tuple[int, int]:
        """(msn, part) of the next part to be published: the preload hint."""
        last = self.segments[-1] if self.segments else None
        if last is None:
            return 0, 0
        if last.complete:
            return last.msn + 1, 0
        return last.msn, len(last.parts)

    async def wait_for(self, msn: int, part: int | None, timeout: float) -> bool:
        """Wait until ``has_part(msn, part)`` (or the stream ended); False on timeout."""

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.ended or self.has_part(msn, part)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(asyncio.shield(self._changed), remaining)
            except TimeoutError:
                return False
        return self.has_part(msn, part)

    def playlist(self, base: str = "") -> str:
        """The LL-HLS media playlist as it stands."""
        # Every EXTINF rounded to the nearest integer must be <= the target duration (RFC 8216).
        target = max(1, math.floor(self._max_duration + 0.5))
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={self.part_target * 3:.3f}",
            f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.segments[0].msn if self.segments else 0}",
        ]
        if self._discontinuity_seq:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_seq}")
        current_init = None
        with_parts = {s.msn for s in self.segments[-PLAYLIST_PARTS_SEGMENTS:]}
        for segment in self.segments:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.init != current_init:
                lines.append(f'#EXT-X-MAP:URI="{base}init-{segment.init}.mp4"')
                current_init = segment.init
            lines.append(
                "#EXT-X-PROGRAM-DATE-TIME:"
                + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(segment.started_at))
                + f".{int(segment.started_at % 1 * 1000):03d}Z"
            )
            if segment.msn in with_parts:
                for p in segment.parts:
                    independent = ",INDEPENDENT=YES" if p.independent else ""
                    lines.append(
                        f"#EXT-X-PART:DURATION={p.duration:.5f},"
                        f'URI="{base}part-{segment.msn}.{p.index}.m4s"{independent}'
                    )
            if segment.complete:
                lines.append(f"#EXTINF:{segment.duration:.5f},")
                lines.append(f"{base}seg-{segment.msn}.m4s")
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        elif self.segments:
            msn, part = self.next_position()
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{base}part-{msn}.{part}.m4s"')
        return "\n".join(lines) + "\n"
