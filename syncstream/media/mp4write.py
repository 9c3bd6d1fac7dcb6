"""Writing fragmented MP4 (ISO/IEC 14496-12) for H.264 and AAC: the init section and fragments.

Protocol-neutral: tracks are described by their codec parameters (the H.264 decoder
configuration record, the AAC AudioSpecificConfig) and samples are access units with their
decode time, composition offset and sync flag in the track's timescale. What comes out is what
HLS (and a recording) needs: ``ftyp`` + ``moov`` once, then one ``moof`` + ``mdat`` per part,
each track's sample data in one run, addressed from the ``moof`` (``default-base-is-moof``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

VIDEO_TIMESCALE = 90_000
SYNC_FLAGS = 0x02000000  # sample_depends_on = 2 (an I-frame)
NON_SYNC_FLAGS = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample
MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
TFHD_BASE_IS_MOOF = 0x020000
TFHD_DEFAULT_FLAGS = 0x000020
TRUN_DATA_OFFSET, TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS = 0x1, 0x100, 0x200, 0x400, 0x800


def box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *parts)


@dataclass(frozen=True)
class VideoParams:
    """An H.264 track: ``avcc`` is the AVCDecoderConfigurationRecord (FLV's sequence header)."""

    track_id: int
    avcc: bytes
    width: int
    height: int
    timescale: int = VIDEO_TIMESCALE


@dataclass(frozen=True)
class AudioParams:
    """An AAC track on a timescale of its sample rate (so one frame is 1,024 ticks)."""

    track_id: int
    asc: bytes  # the AudioSpecificConfig
    sample_rate: int
    channels: int

    @property
    def timescale(self) -> int:
        return self.sample_rate


TrackParams = VideoParams | AudioParams


def _descriptor(tag: int, payload: bytes) -> bytes:
    """An MPEG-4 descriptor with its size in the 4-byte form (ISO/IEC 14496-1 8.3.3)."""
    size = len(payload)
    length = bytes([0x80 | (size >> 21) & 0x7F, 0x80 | (size >> 14) & 0x7F])
    length += bytes([0x80 | (size >> 7) & 0x7F, size & 0x7F])
    return bytes([tag]) + length + payload


def _esds(track: AudioParams) -> bytes:
    config = struct.pack(">BBBHII", 0x40, 0x15, 0, 0, 0, 0)  # MPEG-4 audio, AudioStream
    decoder = _descriptor(0x04, config + _descriptor(0x05, track.asc))
    es = _descriptor(0x03, struct.pack(">HB", track.track_id, 0) + decoder + _descriptor(6, b"\2"))
    return full_box(b"esds", 0, 0, es)


def _sample_entry(track: TrackParams) -> bytes:
    if isinstance(track, VideoParams):
        return box(
            b"avc1",
            bytes(6),
            struct.pack(">H", 1),  # data reference index
            bytes(16),
            struct.pack(">HHII", track.width, track.height, 0x480000, 0x480000),
            bytes(4),
            struct.pack(">H", 1),  # frames per sample
            bytes(32),  # compressor name
            struct.pack(">Hh", 0x18, -1),
            box(b"avcC", track.avcc),
        )
    rate = track.sample_rate if track.sample_rate < 0x10000 else 0
    return box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HHHHI", track.channels, 16, 0, 0, rate << 16),
        _esds(track),
    )


def _trak(track: TrackParams) -> bytes:
    video = isinstance(track, VideoParams)
    width, height = (track.width, track.height) if isinstance(track, VideoParams) else (0, 0)
    tkhd = full_box(
        b"tkhd",
        0,
        0x7,  # enabled, in movie, in preview
        struct.pack(">IIIII", 0, 0, track.track_id, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x100, 0),  # layer, group, volume
        MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, 0, 0x55C4, 0))
    handler, name = (b"vide", b"VideoHandler") if video else (b"soun", b"SoundHandler")
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name + b"\0")
    media_header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(track)),
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )
    minf = box(b"minf", media_header, dinf, stbl)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))


def init_segment(tracks: Sequence[TrackParams]) -> bytes:
    """``ftyp`` + ``moov`` (with ``mvex``: the samples come in fragments)."""
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6isomiso2avc1mp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x10000, 0x100),  # times, rate 1.0, volume 1.0
        bytes(10),
        MATRIX,
        bytes(24),
        struct.pack(">I", max(t.track_id for t in tracks) + 1),
    )
    trex = [full_box(b"trex", 0, 0, struct.pack(">IIIII", t.track_id, 1, 0, 0, 0)) for t in tracks]
    moov = box(b"moov", mvhd, *(_trak(t) for t in tracks), box(b"mvex", *trex))
    return ftyp + moov


@dataclass
class Run:
    """One track's samples in a fragment, in decode order, in the track's timescale.

    ``durations[i]``, ``sizes[i]``, ``offsets[i]`` (composition offset: pts - dts) and
    ``sync[i]`` describe sample ``i``; ``data`` holds the samples' bytes."""

    track_id: int
    decode_time: int
    durations: list[int]
    sizes: list[int]
    offsets: list[int] | None  # None: presentation order is decode order
    sync: list[bool] | None  # None: every sample is a sync sample
    data: list[bytes]


def _trun(run: Run, data_offset: int) -> bytes:
    count = len(run.durations)
    flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE
    columns: list[Sequence[int]] = [run.durations, run.sizes]
    if run.sync is not None:
        flags |= TRUN_FLAGS
        columns.append([SYNC_FLAGS if s else NON_SYNC_FLAGS for s in run.sync])
    version = 0
    if run.offsets is not None:
        flags |= TRUN_CTS
        columns.append(run.offsets)
        version = 1  # signed composition offsets
    entries = [value for sample in zip(*columns, strict=True) for value in sample]
    table = struct.pack(f">{len(entries)}{'i' if version else 'I'}", *entries)
    return full_box(b"trun", version, flags, struct.pack(">Ii", count, data_offset), table)


def fragment(sequence: int, runs: Sequence[Run]) -> bytes:
    """``moof`` + ``mdat`` of one fragment (``sequence`` counts from 1)."""

    def moof(offsets: list[int]) -> bytes:
        trafs = []
        for run, offset in zip(runs, offsets, strict=True):
            tfhd_flags = TFHD_BASE_IS_MOOF | (TFHD_DEFAULT_FLAGS if run.sync is None else 0)
            defaults = struct.pack(">I", SYNC_FLAGS) if run.sync is None else b""
            trafs.append(
                box(
                    b"traf",
                    full_box(b"tfhd", 0, tfhd_flags, struct.pack(">I", run.track_id), defaults),
                    full_box(b"tfdt", 1, 0, struct.pack(">Q", run.decode_time)),
                    _trun(run, offset),
                )
            )
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), *trafs)

    # The moof's size does not depend on the data offsets it holds: lay it out once with
    # zeros, then again with the real offsets (past the moof and the mdat header).
    start = len(moof([0] * len(runs))) + 8
    offsets, size = [], 0
    for run in runs:
        offsets.append(start + size)
        size += sum(run.sizes)
    mdat = struct.pack(">I4s", 8 + size, b"mdat")
    return b"".join([moof(offsets), mdat, *(d for r in runs for d in r.data)])
