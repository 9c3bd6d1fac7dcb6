"""Chess clocks, kept by the server in monotonic time (after lichess).

Each side has its remaining milliseconds; the side to move's clock runs from the moment the
previous move was accepted. A move is charged its elapsed time minus a lag compensation:
the client's own lag estimate, paid from a per-player quota that grows with each move
(``min(1 s, 2/5 of the estimate + 150 ms)``), starts at 3 such gains and is capped at 7, so
a laggy connection is not punished and a fast one cannot cheat. Increments are added after
the move. A flag falls when the remaining time is spent (checked with a grace of at most 2 s
for the network). Correspondence games have days per move instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_GAIN_MS = 1000
BASE_GAIN_MS = 150
QUOTA_START = 3
QUOTA_CAP = 7
FLAG_GRACE_MS = 2000


@dataclass
class Clock:
    base_ms: int
    increment_ms: int
    per_move_ms: int | None = None  # correspondence: each move has this long, afresh
    remaining: dict[str, int] = field(default_factory=dict)  # "white" / "black" -> ms
    quota: dict[str, int] = field(default_factory=dict)
    running: str | None = None  # the side whose clock runs
    since: float = 0.0  # monotonic seconds when it started running

    def __post_init__(self) -> None:
        for side in ("white", "black"):
            self.remaining.setdefault(side, self.base_ms)
            self.quota.setdefault(side, QUOTA_START * BASE_GAIN_MS)

    def start(self, side: str, now: float) -> None:
        self.running, self.since = side, now

    def left(self, side: str, now: float) -> int:
        """Milliseconds ``side`` has now (its clock may be running)."""
        if self.running == side:
            return self.remaining[side] - int((now - self.since) * 1000)
        return self.remaining[side]

    def flagged(self, now: float) -> bool:
        """True once the running side's time (and the grace) is spent."""
        return self.running is not None and self.left(self.running, now) < -self._grace()

    def flag_at(self) -> float | None:
        """The monotonic time from which :meth:`flagged` holds (None: no clock runs)."""
        if self.running is None:
            return None
        return self.since + (self.remaining[self.running] + self._grace() + 1) / 1000

    def _grace(self) -> int:
        return min(FLAG_GRACE_MS, self.quota[self.running or "white"])

    def charge(self, side: str, now: float, lag_ms: int) -> tuple[int, int]:
        """Stop ``side``'s clock for a move; returns (ms used, lag compensation given).

        Raises :class:`TimeUp` if the move came too late even with the compensation.
        """
        elapsed = int((now - self.since) * 1000) if self.running == side else 0
        lag = max(0, min(lag_ms, MAX_GAIN_MS * 2))
        gain = min(MAX_GAIN_MS, lag * 2 // 5 + BASE_GAIN_MS)
        self.quota[side] = min(QUOTA_CAP * gain, self.quota[side] + gain)
        compensation = min(lag, self.quota[side], elapsed)
        self.quota[side] -= compensation
        used = elapsed - compensation
        if self.remaining[side] - used <= 0:
            self.remaining[side] = 0
            raise TimeUp(side)
        if self.per_move_ms is not None:
            self.remaining[side] = self.per_move_ms
        else:
            self.remaining[side] = self.remaining[side] - used + self.increment_ms
        self.running = None
        return used, compensation

    def state(self, now: float) -> dict[str, int]:
        return {side: max(0, self.left(side, now)) for side in ("white", "black")}


class TimeUp(Exception):
    """``side`` ran out of time."""

    def __init__(self, side: str) -> None:
        super().__init__(side)
        self.side = side
