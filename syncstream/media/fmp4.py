"""A file-like sink for PyAV's mp4 muxer that hands out the init section and each fragment."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from .mp4 import Track, boxes, read_fragment, read_tracks

FRAGMENTED_MP4_OPTIONS = {
    "movflags": "empty_moov+default_base_moof+frag_keyframe+skip_trailer",
}


@dataclass(frozen=True)
class Fragment:
    """One ``moof`` + ``mdat``: an HLS part. Times in seconds on the timing track."""

    data: bytes
    start: float
    duration: float
    independent: bool


def _ignore_init(data: bytes, tracks: dict[int, Track]) -> None:
    return None


def _ignore_fragment(fragment: Fragment) -> None:
    return None


class FragmentSink(io.RawIOBase):
    """Collects muxer output; calls ``on_init`` once and ``on_fragment`` per fragment."""

    def __init__(
        self,
        on_init: Callable[[bytes, dict[int, Track]], None],
        on_fragment: Callable[[Fragment], None],
    ) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._on_init = on_init
        self._on_fragment = on_fragment
        self._init = bytearray()
        self._tracks: dict[int, Track] = {}
        self._timing: Track | None = None
        self._pending_moof: bytes | None = None

    def release(self) -> None:
        """Let go of the callbacks and buffers once the muxer is closed. PyAV's container and
        its streams refer to each other, so the container (and this sink) are freed only by
        the garbage collector's cycle search, which may be a long way off; what the
        callbacks refer to (the session, the stream's media) must not wait with them."""
        self._on_init = _ignore_init
        self._on_fragment = _ignore_fragment
        self._buffer = bytearray()
        self._init = bytearray()
        self._pending_moof = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._buffer += data
        consumed = 0
        for kind, body, end in boxes(self._buffer):
            self._box(kind, bytes(self._buffer[consumed:end]), body - consumed)
            consumed = end
        if consumed:
            del self._buffer[:consumed]
        return len(data)

    def _box(self, kind: bytes, box: bytes, header: int) -> None:
        if kind in (b"ftyp", b"moov"):
            self._init += box
            if kind == b"moov":
                self._tracks = read_tracks(bytes(self._init))
                video = [t for t in self._tracks.values() if t.kind == "video"]
                candidates = video or list(self._tracks.values())
                self._timing = candidates[0] if candidates else None
                self._on_init(bytes(self._init), self._tracks)
        elif kind == b"moof":
            self._pending_moof = box
        elif kind == b"mdat" and self._pending_moof is not None:
            moof, self._pending_moof = self._pending_moof, None
            self._fragment(moof + box)

    def _fragment(self, data: bytes) -> None:
        runs = {run.track_id: run for run in read_fragment(data, 8, len(data))}
        timing = self._timing
        run = runs.get(timing.id) if timing is not None else None
        if timing is None or run is None:
            # No sample of the timing track here (e.g. audio only between two video fragments).
            any_run = next(iter(runs.values()), None)
            if any_run is None:
                return
            track = self._tracks[any_run.track_id]
            self._on_fragment(
                Fragment(
                    data, any_run.start / track.timescale, any_run.duration / track.timescale, False
                )
            )
            return
        scale = timing.timescale
        self._on_fragment(
            Fragment(data, run.start / scale, run.duration / scale, run.starts_with_sync)
        )
