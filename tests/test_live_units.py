"""Units of live ingest that need no server: the AAC configuration, the muxer's audio track."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from syncstream.media.fmp4 import Fragment
from syncstream.media.ingest import TAG_AUDIO, Ingest, IngestCallbacks, MediaError, TrackInfo
from syncstream.media.mp4 import read_tracks
from syncstream.media.rtmp.aac import AudioConfigError, parse_audio_config


def pack_bits(fields: list[tuple[int, int]]) -> bytes:
    """(value, width) fields, most significant bit first, zero-padded to whole bytes."""
    value, width = 0, 0
    for field, bits in fields:
        value, width = (value << bits) | field, width + bits
    pad = -width % 8
    return (value << pad).to_bytes((width + pad) // 8, "big")


def explicit_asc(rate: int, channels: int) -> bytes:
    """AAC-LC with the sample rate written out (frequency index 15 + 24 bits)."""
    return pack_bits([(2, 5), (15, 4), (rate, 24), (channels, 4), (0, 3)])


def test_audio_specific_config_fields() -> None:
    assert parse_audio_config(bytes([0x11, 0x90])).sample_rate == 48000  # index 3, stereo
    cfg = parse_audio_config(bytes([0x12, 0x08]))  # index 4, mono
    assert (cfg.sample_rate, cfg.channels, cfg.layout) == (44100, 1, "mono")
    cfg = parse_audio_config(explicit_asc(48000, 6))
    assert (cfg.object_type, cfg.sample_rate, cfg.channels, cfg.layout) == (2, 48000, 6, "5.1")
    # HE-AAC: a 24 kHz core with SBR to 48 kHz plays at 48 kHz.
    he = pack_bits([(5, 5), (6, 4), (2, 4), (3, 4), (2, 5)])
    assert parse_audio_config(he).sample_rate == 48000
    # Escaped object type (31 + 6 bits).
    assert parse_audio_config(pack_bits([(31, 5), (10, 6), (3, 4), (2, 4)])).object_type == 42
    for bad in (b"", b"\x11", pack_bits([(2, 5), (13, 4), (2, 4)]), explicit_asc(5, 2)[:3]):
        with pytest.raises(AudioConfigError):
            parse_audio_config(bad)


def aac_frames(rate: int, seconds: float) -> list[tuple[int, bytes]]:
    """(ms timestamp, raw AAC frame) of a real encode (PyAV's FFmpeg)."""
    codec = av.CodecContext.create("aac", "w")
    codec.sample_rate, codec.layout, codec.format = rate, "stereo", "fltp"
    codec.open()
    out, pts = [], 0
    while pts < rate * seconds:
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
        pts += 1024
        for packet in codec.encode(frame):
            out.append((int((packet.pts or 0) * 1000 // rate), bytes(packet)))
    return out


def test_explicit_48khz_config_gives_a_48khz_audio_track() -> None:
    """Audio only, the rate written out in the AudioSpecificConfig (index 15)."""
    tracks: list[list[TrackInfo]] = []
    inits: list[bytes] = []
    fragments: list[Fragment] = []
    ingest = Ingest(IngestCallbacks(tracks.append, inits.append, fragments.append), 0.2)
    ingest.write(TAG_AUDIO, 0, b"\xaf\x00" + explicit_asc(48000, 2))
    for ms, frame in aac_frames(48000, 3):
        ingest.write(TAG_AUDIO, ms, b"\xaf\x01" + frame)
    ingest.finish()
    assert tracks == [[TrackInfo("audio", "aac", sample_rate=48000, channels=2)]]
    (track,) = read_tracks(inits[0]).values()
    assert (track.kind, track.timescale) == ("audio", 48000)
    assert 2.0 < sum(f.duration for f in fragments) < 3.1


def test_an_unusable_audio_config_ends_the_session_cleanly() -> None:
    ingest = Ingest(IngestCallbacks(print, print, print), 0.2)
    with pytest.raises(MediaError):
        ingest.write(TAG_AUDIO, 0, b"\xaf\x00\x16")  # reserved frequency index 13... truncated
