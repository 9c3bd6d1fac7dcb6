"""One stream's HLS timeline: parts grouped into segments, a rolling window, waiters.

Parts (fMP4 fragments) arrive in order. A new segment starts at an independent part once the
current segment has reached the target duration, so segments are cut on keyframes. The
timeline renders LL-HLS playlists (RFC 8216bis: EXT-X-PART, EXT-X-PRELOAD-HINT,
EXT-X-SERVER-CONTROL with CAN-BLOCK-RELOAD) and lets requests wait for a future part.

Names. Whether the next part starts a new segment is only known when it arrives (it depends on
the keyframe it may begin with), so parts are numbered in one sequence across segments
(``part-<epoch>-<n>.m4s``): the preload hint always names the part that comes next. Every
name carries the timeline's epoch (its start time) so no two publish sessions - before and
after a server restart, say - share a URL that a CDN or browser may have cached. Media and
discontinuity sequence numbers start from the clock (tenths of a second) so they also keep
growing across restarts, as a client that reloads the playlist expects.

Serving many blocked viewers. The playlist is rendered once per change and the bytes are
shared by every request until the next part lands; each waiter holds only its own future.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..fmp4 import Fragment

PLAYLIST_PARTS_SEGMENTS = 3  # the most recent segments keep their parts in the playlist
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(value: int) -> str:
    out = ""
    while True:
        value, digit = divmod(value, 36)
        out = DIGITS[digit] + out
        if not value:
            return out


@dataclass
class Part:
    number: int  # in the timeline's one sequence of parts (its name)
    index: int  # in its segment (``_HLS_part``)
    duration: float
    independent: bool
    data: bytes


@dataclass
class Segment:
    msn: int
    init: int  # which init section (EXT-X-MAP) the segment needs
    discontinuity: bool
    started_at: float  # wall clock of its first frame at ingest: EXT-X-PROGRAM-DATE-TIME
    parts: list[Part] = field(default_factory=list)
    complete: bool = False
    _data: bytes | None = None

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts)

    def data(self) -> bytes:
        """The whole segment (joined once, when first asked for after it completed)."""
        if self._data is None:
            joined = b"".join(p.data for p in self.parts)
            if not self.complete:
                return joined
            self._data = joined
        return self._data


class Timeline:
    """Segments of one live stream (across publisher reconnects) and their playlist."""

    def __init__(self, target_duration: float, part_target: float, window: int) -> None:
        self.target = target_duration
        self.part_target = part_target
        self.window = window
        started = time.time()
        self.epoch = base36(int(started * 1000))
        self.first_msn = int(started * 10)
        self.segments: list[Segment] = []
        self.inits: dict[int, bytes] = {}
        self.ended = False
        self.next_part = 0  # the number of the part to come
        self._parts: dict[int, Part] = {}
        self._init_seq = -1
        self._waiters: list[asyncio.Future[None]] = []
        self._changed: asyncio.Future[None] | None = None
        self._max_duration = target_duration
        self._pending_discontinuity = False
        self._discontinuity_seq = self.first_msn  # grows with the discontinuities trimmed off
        self._rendered: bytes | None = None

    # --- names ----------------------------------------------------------------------------

    def init_name(self, seq: int) -> str:
        return f"init-{self.epoch}-{seq}.mp4"

    def segment_name(self, msn: int) -> str:
        return f"seg-{self.epoch}-{msn}.m4s"

    def part_name(self, number: int) -> str:
        return f"part-{self.epoch}-{number}.m4s"

    # --- writing (called on the event loop) -----------------------------------------------

    def new_init(self, data: bytes) -> None:
        """A new init section (first publish, or a reconnect): following parts use it."""
        self._init_seq += 1
        self.inits[self._init_seq] = data
        if self.segments:
            self._close_current()
            self._pending_discontinuity = True
        self.ended = False
        self._notify()

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
                msn=current.msn + 1 if current else self.first_msn,
                init=self._init_seq,
                discontinuity=self._pending_discontinuity,
                # A part is complete once the frame after it has arrived, one part's media
                # duration after its own first frame: that is when the segment began.
                started_at=time.time() - fragment.duration,
            )
            self._pending_discontinuity = False
            self.segments.append(current)
            self._trim()
        part = Part(
            self.next_part,
            len(current.parts),
            fragment.duration,
            fragment.independent,
            fragment.data,
        )
        current.parts.append(part)
        self._parts[part.number] = part
        self.next_part += 1
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
            for segment in self.segments[:excess]:
                self._discontinuity_seq += segment.discontinuity
                for part in segment.parts:
                    del self._parts[part.number]
            del self.segments[:excess]
            live = {s.init for s in self.segments}
            for seq in [s for s in self.inits if s not in live and s != self._init_seq]:
                del self.inits[seq]

    def _notify(self) -> None:
        """Drop the rendered playlist and wake every waiter."""
        self._rendered = None
        waiters, self._waiters = self._waiters, []
        if self._changed is not None:
            waiters.append(self._changed)
            self._changed = None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- reading --------------------------------------------------------------------------

    def segment(self, msn: int) -> Segment | None:
        if not self.segments or msn < self.segments[0].msn:
            return None
        offset = msn - self.segments[0].msn
        return self.segments[offset] if offset < len(self.segments) else None

    def part(self, number: int) -> Part | None:
        return self._parts.get(number)

    def last_msn(self) -> int:
        """The media sequence number of the newest segment (or of the one to come)."""
        return self.segments[-1].msn if self.segments else self.first_msn

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

    async def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` or the stream ended (what is awaited will not come then);
        False on timeout."""
        if ready() or self.ended:
            return True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not (self.ended or ready()):
                    waiter = loop.create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            return ready()
        return True

    def changed(self) -> asyncio.Future[None]:
        """A future that resolves at the timeline's next change, shared by every caller (for
        callbacks that must not cost a task each): add and remove done-callbacks, never cancel."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def wait_for(self, msn: int, part: int | None, timeout: float) -> bool:
        """Wait until ``has_part(msn, part)`` or the stream ended; False on timeout."""
        return await self.wait(lambda: self.has_part(msn, part), timeout)

    async def wait_for_part(self, number: int, timeout: float) -> bool:
        """Wait until part ``number`` exists or the stream ended; False on timeout."""
        return await self.wait(lambda: number < self.next_part, timeout)

    def playlist(self) -> bytes:
        """The LL-HLS media playlist as it stands (rendered once per change)."""
        if self._rendered is None:
            self._rendered = self._render().encode()
        return self._rendered

    def _render(self) -> str:
        # Every EXTINF rounded to the nearest integer must be <= the target duration (RFC 8216).
        target = max(1, math.floor(self._max_duration + 0.5))
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={self.part_target * 3:.3f}",
            f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.segments[0].msn if self.segments else self.first_msn}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_seq}",
        ]
        current_init = None
        with_parts = {s.msn for s in self.segments[-PLAYLIST_PARTS_SEGMENTS:]}
        for segment in self.segments:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.init != current_init:
                lines.append(f'#EXT-X-MAP:URI="{self.init_name(segment.init)}"')
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
                        f'URI="{self.part_name(p.number)}"{independent}'
                    )
            if segment.complete:
                lines.append(f"#EXTINF:{segment.duration:.5f},")
                lines.append(self.segment_name(segment.msn))
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        elif self.segments:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.part_name(self.next_part)}"')
        return "\n".join(lines) + "\n"
