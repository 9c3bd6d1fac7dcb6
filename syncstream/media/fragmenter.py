"""Access units in, fMP4 fragments (the HLS parts) out, without FFmpeg.

The cut follows what FFmpeg's mp4 muxer does with ``frag_keyframe`` and ``frag_duration``: a
fragment ends before each video keyframe and once the timing track (video, else audio) has
gathered a part's worth of media, so segments can start on any independent part. A fragment is
written when the access unit that ends it arrives; that unit gives the timing track's last
sample its duration, while the other track's last sample lasts as long as the one before it
(the next fragment's ``tfdt`` says where it really continues).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from .fmp4 import Fragment
from .mp4write import AudioParams, Run, TrackParams, VideoParams, fragment, init_segment

STALL_SECONDS = 1.0  # the other track alone cuts a fragment that grew this long (a video gap)


@dataclass(slots=True)
class AccessUnit:
    """One coded frame of a track; times on the pipeline's clock (``CLOCK`` ticks per second)."""

    kind: str  # "video" | "audio"
    dts: int
    pts: int
    keyframe: bool
    data: bytes


CLOCK = 1000  # RTMP's millisecond timestamps


@dataclass
class _Track:
    params: TrackParams
    units: list[AccessUnit] = field(default_factory=list)
    last_duration: int = 0  # in the track's timescale: the estimate for a fragment's last sample


class Fragmenter:
    """Writes the init section at once, then a fragment per part (``on_fragment``)."""

    def __init__(
        self,
        video: VideoParams | None,
        audio: AudioParams | None,
        part_seconds: float,
        on_init: Callable[[bytes], None],
        on_fragment: Callable[[Fragment], None],
    ) -> None:
        self._tracks: dict[str, _Track] = {}
        if video is not None:
            self._tracks["video"] = _Track(video, last_duration=video.timescale // 30)
        if audio is not None:
            self._tracks["audio"] = _Track(audio, last_duration=1024)  # an AAC frame
        if not self._tracks:
            raise ValueError("a fragmented MP4 needs a track")
        self._timing = "video" if video is not None else "audio"
        self._part = round(part_seconds * CLOCK)
        self._stall = round(STALL_SECONDS * CLOCK)
        self._sequence = 0
        self._on_fragment = on_fragment
        on_init(init_segment([t.params for t in self._tracks.values()]))

    def write(self, unit: AccessUnit) -> None:
        """Add one access unit (decode order within its track); may complete a fragment."""
        track = self._tracks.get(unit.kind)
        if track is None:
            return
        units = track.units
        if units:
            length = unit.dts - units[0].dts
            if unit.kind == self._timing:
                if length >= self._part or (unit.keyframe and unit.kind == "video"):
                    self._flush(unit)
            elif length >= self._stall:
                self._flush(unit)
        track.units.append(unit)

    def close(self) -> None:
        """Write what is left as a last fragment."""
        self._flush(None)

    def _flush(self, following: AccessUnit | None) -> None:
        runs: list[Run] = []
        reference: tuple[Run, int] | None = None  # the run that times the part, its timescale
        for kind, track in self._tracks.items():
            if not track.units:
                continue
            end = following.dts if following is not None and following.kind == kind else None
            run = self._run(track, end)
            runs.append(run)
            if kind == self._timing or reference is None:
                reference = (run, track.params.timescale)
            track.units = []
        if reference is None:
            return
        self._sequence += 1
        run, timescale = reference
        timed = self._tracks[self._timing].params.track_id == run.track_id
        self._on_fragment(
            Fragment(
                fragment(self._sequence, runs),
                run.decode_time / timescale,
                sum(run.durations) / timescale,
                timed and (run.sync is None or run.sync[0]),
            )
        )

    def _run(self, track: _Track, end: int | None) -> Run:
        """The track's pending units as a run; ``end``: the dts of the unit that follows."""
        scale = track.params.timescale
        units = track.units
        times = [u.dts * scale // CLOCK for u in units]
        durations = [b - a for a, b in pairwise(times)]
        if end is not None:
            durations.append(end * scale // CLOCK - times[-1])
        else:
            durations.append(durations[-1] if durations else track.last_duration)
        track.last_duration = durations[-1]
        offsets: list[int] | None = None
        sync: list[bool] | None = None
        if isinstance(track.params, VideoParams):
            sync = [u.keyframe for u in units]
            if any(u.pts != u.dts for u in units):
                offsets = [(u.pts - u.dts) * scale // CLOCK for u in units]
        data = [u.data for u in units]
        return Run(
            track.params.track_id, times[0], durations, [len(d) for d in data], offsets, sync, data
        )
