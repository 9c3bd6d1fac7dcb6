"""Just enough ISO-BMFF reading to cut a fragmented-MP4 byte stream into HLS parts.

FFmpeg's mp4 muxer (movflags empty_moov+default_base_moof+frag_keyframe) writes ``ftyp`` +
``moov`` once (the init section), then ``moof`` + ``mdat`` pairs (fragments). From the ``moov``
we need each track's id, kind and timescale; from each ``moof`` the start time, the duration
and whether it begins with a sync sample (an independent part).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

NON_SYNC = 0x00010000  # sample_is_non_sync_sample in sample_flags


def boxes(
    data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each complete box in ``data[start:end]``."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def find(
    data: bytes | bytearray | memoryview, path: list[bytes], start: int = 0, end: int | None = None
) -> Iterator[tuple[int, int]]:
    """(payload start, end) of every box at ``path`` below the given range."""
    for kind, body, box_end in boxes(data, start, end):
        if kind != path[0]:
            continue
        if len(path) == 1:
            yield body, box_end
        else:
            yield from find(data, path[1:], body, box_end)


@dataclass(frozen=True)
class Track:
    id: int
    kind: str  # "video" | "audio" | other handler type
    timescale: int


def read_tracks(moov: bytes) -> dict[int, Track]:
    """Tracks of an init section (``ftyp`` + ``moov``)."""
    tracks = {}
    for trak, trak_end in find(moov, [b"moov", b"trak"]):
        track_id = timescale = 0
        kind = ""
        for body, _ in find(moov, [b"tkhd"], trak, trak_end):
            version = moov[body]
            track_id = struct.unpack_from(">I", moov, body + (20 if version else 12))[0]
        for body, _ in find(moov, [b"mdia", b"mdhd"], trak, trak_end):
            version = moov[body]
            timescale = struct.unpack_from(">I", moov, body + (20 if version else 12))[0]
        for body, _ in find(moov, [b"mdia", b"hdlr"], trak, trak_end):
            handler = bytes(moov[body + 8 : body + 12])
            kind = {b"vide": "video", b"soun": "audio"}.get(handler, handler.decode("latin-1"))
        tracks[track_id] = Track(track_id, kind, timescale)
    return tracks


@dataclass(frozen=True)
class FragmentTrack:
    """One track's run inside a fragment: start and length in its timescale, first-sample sync."""

    track_id: int
    start: int
    duration: int
    samples: int
    starts_with_sync: bool


def read_fragment(
    moof: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> list[FragmentTrack]:
    """The tracks of one ``moof`` box (``start``/``end`` delimit the moof's payload)."""
    result = []
    for traf, traf_end in find(moof, [b"traf"], start, end):
        track_id = default_duration = default_flags = 0
        base_time = 0
        durations = samples = 0
        first_flags: int | None = None
        for kind, body, _ in boxes(moof, traf, traf_end):
            if kind == b"tfhd":
                flags = int.from_bytes(moof[body + 1 : body + 4], "big")
                track_id = struct.unpack_from(">I", moof, body + 4)[0]
                pos = body + 8
                if flags & 0x01:
                    pos += 8  # base data offset
                if flags & 0x02:
                    pos += 4  # sample description index
                if flags & 0x08:
                    default_duration = struct.unpack_from(">I", moof, pos)[0]
                    pos += 4
                if flags & 0x10:
                    pos += 4  # default sample size
                if flags & 0x20:
                    default_flags = struct.unpack_from(">I", moof, pos)[0]
            elif kind == b"tfdt":
                version = moof[body]
                fmt = ">Q" if version else ">I"
                base_time = struct.unpack_from(fmt, moof, body + 4)[0]
            elif kind == b"trun":
                flags = int.from_bytes(moof[body + 1 : body + 4], "big")
                count = struct.unpack_from(">I", moof, body + 4)[0]
                pos = body + 8
                if flags & 0x01:
                    pos += 4  # data offset
                run_first: int | None = None
                if flags & 0x04:
                    run_first = struct.unpack_from(">I", moof, pos)[0]
                    pos += 4
                for i in range(count):
                    duration = default_duration
                    sample_flags = (
                        run_first if (i == 0 and run_first is not None) else default_flags
                    )
                    if flags & 0x100:
                        duration = struct.unpack_from(">I", moof, pos)[0]
                        pos += 4
                    if flags & 0x200:
                        pos += 4  # size
                    if flags & 0x400:
                        value = struct.unpack_from(">I", moof, pos)[0]
                        pos += 4
                        if not (i == 0 and run_first is not None):
                            sample_flags = value
                    if flags & 0x800:
                        pos += 4  # composition time offset
                    if samples == 0 and first_flags is None:
                        first_flags = sample_flags
                    durations += duration
                    samples += 1
        result.append(
            FragmentTrack(
                track_id,
                base_time,
                durations,
                samples,
                first_flags is not None and not (first_flags & NON_SYNC),
            )
        )
    return result


@dataclass(frozen=True)
class MediaInfo:
    """What a multivariant playlist says of a rendition: RFC 6381 codecs and the picture."""

    codecs: tuple[str, ...]
    width: int | None = None
    height: int | None = None


def _descriptor(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, payload start, payload end) of an MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3)."""
    tag, pos, size = data[pos], pos + 1, 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        size = (size << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return tag, pos, pos + size


def _audio_object_type(esds: bytes) -> int | None:
    """The AAC object type of an ``esds`` payload (the first 5 bits of its AudioSpecificConfig)."""
    tag, pos, end = _descriptor(esds, 4)  # after version + flags
    if tag != 0x03:
        return None
    flags = esds[pos + 2]
    pos += 3 + (2 if flags & 0x80 else 0)  # ES_ID, flags, dependsOn_ES_ID
    if flags & 0x40:
        pos += 1 + esds[pos]  # URL
    if flags & 0x20:
        pos += 2  # OCR_ES_Id
    tag, pos, end = _descriptor(esds, pos)
    if tag != 0x04 or esds[pos] != 0x40:  # DecoderConfig of MPEG-4 audio
        return None
    tag, pos, end = _descriptor(esds, pos + 13)
    if tag != 0x05 or end <= pos:
        return None
    kind = esds[pos] >> 3
    if kind == 31 and end > pos + 1:
        kind = 32 + (((esds[pos] & 0x07) << 3) | (esds[pos + 1] >> 5))
    return kind


def read_media_info(init: bytes) -> MediaInfo:
    """Codecs (``avc1.PPCCLL``, ``mp4a.40.N``) and the video size of an init section."""
    codecs: list[str] = []
    width = height = None
    for stsd, stsd_end in find(init, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"]):
        for kind, body, end in boxes(init, stsd + 8, stsd_end):
            try:
                if kind in (b"avc1", b"avc3") and end - body >= 78:
                    width, height = struct.unpack_from(">HH", init, body + 24)
                    for avcc, avcc_end in find(init, [b"avcC"], body + 78, end):
                        if avcc_end - avcc >= 4:
                            profile = init[avcc + 1 : avcc + 4].hex()
                            codecs.append(f"{kind.decode()}.{profile}")
                elif kind == b"mp4a" and end - body >= 28:
                    for esds, esds_end in find(init, [b"esds"], body + 28, end):
                        aot = _audio_object_type(bytes(init[esds:esds_end]))
                        codecs.append(f"mp4a.40.{aot}" if aot else "mp4a.40.2")
            except (IndexError, struct.error):
                continue  # a malformed entry says nothing
    return MediaInfo(tuple(codecs), width, height)
