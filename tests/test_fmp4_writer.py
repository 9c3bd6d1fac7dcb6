"""Our fMP4 writer (``live.muxer: native``): boxes read back, the cut of the parts, and the
same media as PyAV's mp4 muxer for an OBS-like FLV recording (x264 with B-frames, 48 kHz AAC)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import av
import pytest

from syncstream.media.fmp4 import Fragment
from syncstream.media.fragmenter import AccessUnit, Fragmenter
from syncstream.media.ingest import Ingest, IngestCallbacks, TrackInfo
from syncstream.media.mp4 import boxes, find, read_fragment, read_media_info, read_tracks
from syncstream.media.mp4write import (
    NON_SYNC_FLAGS,
    SYNC_FLAGS,
    AudioParams,
    Run,
    VideoParams,
    fragment,
    init_segment,
)

# A real x264 configuration record (High profile 3.0, 640x360) and AAC-LC 48 kHz stereo.
AVCC = bytes.fromhex(
    "0164001effe100246764001eacd940a02ff970110000030001000003003c6480030d40061ae4a30078b16cb0"
    "01000468efbcb0fdf8f800"
)
ASC_48K_STEREO = bytes([0x11, 0x90])
VIDEO = VideoParams(1, AVCC, 640, 360)
AUDIO = AudioParams(2, ASC_48K_STEREO, 48000, 2)


def trun_entries(data: bytes) -> dict[int, tuple[int, list[tuple[int, ...]]]]:
    """track id -> (trun version, [(duration, size, flags?, composition offset?) ...])."""
    result = {}
    for traf, traf_end in find(data, [b"moof", b"traf"]):
        track_id = 0
        for kind, body, _ in boxes(data, traf, traf_end):
            if kind == b"tfhd":
                track_id = struct.unpack_from(">I", data, body + 4)[0]
            if kind == b"trun":
                version, flags = data[body], int.from_bytes(data[body + 1 : body + 4], "big")
                count = struct.unpack_from(">I", data, body + 4)[0]
                columns = 2 + bool(flags & 0x400) + bool(flags & 0x800)
                fmt = ">" + ("I" * (columns - 1)) + ("i" if version else "I")
                values = struct.unpack_from(">" + fmt[1:] * count, data, body + 12)
                rows = [values[i : i + columns] for i in range(0, len(values), columns)]
                result[track_id] = (version, rows)
    return result


def test_init_section_reads_back() -> None:
    init = init_segment([VIDEO, AUDIO])
    assert [kind for kind, _, _ in boxes(init)] == [b"ftyp", b"moov"]
    tracks = read_tracks(init)
    assert {t.id: (t.kind, t.timescale) for t in tracks.values()} == {
        1: ("video", 90000),
        2: ("audio", 48000),  # the AudioSpecificConfig's rate, not FLV's 44.1 kHz
    }
    info = read_media_info(init)
    assert info.codecs == ("avc1.64001e", "mp4a.40.2")
    assert (info.width, info.height) == (640, 360)


def test_fragment_with_b_frames_reads_back() -> None:
    """Sizes, durations, sync flags and signed composition offsets (trun version 1)."""
    payloads = [b"I" * 100, b"P" * 40, b"B" * 10, b"B" * 11, b"P" * 42]
    offsets = [6000, 9000, 0, -3000, 3000]  # a negative one too: version 1 is signed
    video = Run(1, 90_000, [3000] * 5, [len(p) for p in payloads], offsets,
                [True, False, False, False, False], payloads)  # fmt: skip
    audio = Run(2, 48_000, [1024, 1024], [7, 8], None, None, [b"a" * 7, b"b" * 8])
    data = fragment(7, [video, audio])
    assert [kind for kind, _, _ in boxes(data)] == [b"moof", b"mdat"]
    (mfhd, _), *_ = find(data, [b"moof", b"mfhd"])
    assert struct.unpack_from(">I", data, mfhd + 4)[0] == 7
    runs = {r.track_id: r for r in read_fragment(data, 8, boxes(data).__next__()[2])}
    assert (runs[1].start, runs[1].duration, runs[1].samples, runs[1].starts_with_sync) == (
        90_000,
        15_000,
        5,
        True,
    )
    assert (runs[2].start, runs[2].duration, runs[2].samples) == (48_000, 2048, 2)
    entries = trun_entries(data)
    assert entries[1] == (
        1,
        [
            (3000, 100, SYNC_FLAGS, 6000),
            (3000, 40, NON_SYNC_FLAGS, 9000),
            (3000, 10, NON_SYNC_FLAGS, 0),
            (3000, 11, NON_SYNC_FLAGS, -3000),
            (3000, 42, NON_SYNC_FLAGS, 3000),
        ],
    )
    assert entries[2] == (0, [(1024, 7), (1024, 8)])
    # The data offsets point at each run's bytes in the mdat.
    moof_end = next(boxes(data))[2]
    assert data[moof_end + 8 :] == b"".join(payloads) + b"a" * 7 + b"b" * 8


def units(seconds: float, gop: int = 60) -> Iterator[AccessUnit]:
    """30 fps video with 2 B-frames (pts = dts + 67 or so) and 48 kHz AAC, interleaved by dts."""
    frames = [
        AccessUnit("video", i * 1000 // 30, i * 1000 // 30 + 67, i % gop == 0, b"v%d" % i)
        for i in range(int(seconds * 30))
    ]
    audio = [
        AccessUnit("audio", i * 1024 * 1000 // 48000, i * 1024 * 1000 // 48000, True, b"a")
        for i in range(int(seconds * 48000 / 1024))
    ]
    yield from sorted(frames + audio, key=lambda u: (u.dts, u.kind == "video"))


def test_parts_cut_at_keyframes_and_part_duration() -> None:
    inits: list[bytes] = []
    parts: list[Fragment] = []
    fragmenter = Fragmenter(VIDEO, AUDIO, 0.2, inits.append, parts.append)
    assert read_tracks(inits[0])  # the init section comes first, at once
    for unit in units(4.0, gop=45):
        fragmenter.write(unit)
    fragmenter.close()
    # 0.2 s parts (6 frames) that also break before every keyframe (every 1.5 s).
    assert [round(p.duration, 3) for p in parts[:9]] == [0.2] * 7 + [0.1, 0.2]
    assert [i for i, p in enumerate(parts) if p.independent] == [0, 8, 16]
    for before, after in pairwise(parts):
        assert abs(before.start + before.duration - after.start) < 0.001
    assert abs(sum(p.duration for p in parts) - 4.0) < 0.04
    # Every access unit is in exactly one part, audio too.
    counts = {1: 0, 2: 0}
    for part in parts:
        for run in read_fragment(part.data, 8, next(boxes(part.data))[2]):
            counts[run.track_id] += run.samples
    assert counts == {1: 120, 2: int(4.0 * 48000 / 1024)}


def test_audio_only_parts_are_independent() -> None:
    parts: list[Fragment] = []
    fragmenter = Fragmenter(
        None, AudioParams(1, ASC_48K_STEREO, 48000, 2), 0.2, print, parts.append
    )
    for unit in units(2.0):
        fragmenter.write(unit)
    fragmenter.close()
    assert parts and all(p.independent for p in parts)
    assert all(0.19 < p.duration < 0.24 for p in parts[:-1])


def flv_tags(path: Path) -> Iterator[tuple[int, int, bytes]]:
    data = path.read_bytes()
    pos = 13  # FLV header + PreviousTagSize0
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        yield data[pos], timestamp, data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4


@pytest.fixture(scope="module")
def obs_flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s as OBS sends it: x264 veryfast with 2 B-frames, CBR, 48 kHz stereo AAC."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    from .test_live_hls import obs_args

    path = tmp_path_factory.mktemp("flv") / "obs.flv"
    args = obs_args(str(path), 6)
    args.remove("-re")
    subprocess.run(args, check=True)
    return path


def remux(flv: Path, muxer: str, out: Path) -> tuple[list[TrackInfo], list[Fragment]]:
    tracks: list[list[TrackInfo]] = []
    inits: list[bytes] = []
    parts: list[Fragment] = []
    ingest = Ingest(IngestCallbacks(tracks.append, inits.append, parts.append), 0.2, [], muxer)  # type: ignore[arg-type]
    for tag_type, timestamp, payload in flv_tags(flv):
        ingest.write(tag_type, timestamp, payload)
    ingest.finish()
    assert len(inits) == 1
    out.write_bytes(inits[0] + b"".join(p.data for p in parts))
    return tracks[0], parts


def frames(path: Path) -> dict[str, list[int]]:
    """The pts (ms) of every decoded frame of each stream, in presentation order."""
    result: dict[str, list[int]] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            for frame in packet.decode():
                ms = round(float(frame.pts * frame.time_base) * 1000)
                result.setdefault(packet.stream.type, []).append(ms)
    return {kind: sorted(times) for kind, times in result.items()}


@pytest.mark.parametrize("muxer", ["native", "pyav"])
def test_obs_recording_remuxes_frame_exact(obs_flv: Path, tmp_path: Path, muxer: str) -> None:
    """Every frame of the source decodes from the parts at its source timestamp."""
    tracks, parts = remux(obs_flv, muxer, tmp_path / "out.mp4")
    assert [t.kind for t in tracks] == ["video", "audio"]
    assert tracks[0].bframes and tracks[1].sample_rate == 48000
    source, ours = frames(obs_flv), frames(tmp_path / "out.mp4")
    assert len(ours["video"]) == len(source["video"]) == 180
    assert ours["video"] == source["video"]
    assert len(ours["audio"]) == len(source["audio"])
    if muxer == "native":  # FFmpeg's muxer moves a track's first sample to its start
        assert ours["audio"] == source["audio"]
    assert [p.independent for p in parts].count(True) == 3  # a keyframe every 2 s
    # PyAV's muxer ends with a fragment of the audio that outlasts the video.
    assert abs(sum(p.duration for p in parts) - 6.0) < (0.05 if muxer == "native" else 0.1)
    assert all(p.duration <= 0.21 for p in parts)
