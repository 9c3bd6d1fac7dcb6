"""Units of the media core that need no network: AMF0, chunks, the HLS timeline, readers."""

from __future__ import annotations

import asyncio
import re
import time
from fractions import Fraction
from typing import Any

import av
import pytest

from syncstream.media.fmp4 import Fragment
from syncstream.media.hls.timeline import Timeline
from syncstream.media.readers import PacketCopy, QueuedReader
from syncstream.media.rtmp import amf
from syncstream.media.rtmp.chunks import ChunkReader, encode_message
from syncstream.media.thumbnails import Snapshots, keyframe_to_jpeg
from syncstream.media.webrtc.transcode import Vp8Transcoder


def test_amf0_round_trip_and_malformed_input() -> None:
    values = ["connect", 1.0, {"app": "live", "nested": {"ok": True}, "é": None}, [1.0, "x"], False]
    assert amf.decode_all(amf.encode(*values)) == values
    for bad in (b"\x02\x00\x05ab", b"\x03\x00\x01a", b"\x42", b"\x00\x01"):
        with pytest.raises(amf.AmfError):
            amf.decode_all(bad)


async def test_chunk_reader_keeps_type3_timestamp_deltas() -> None:
    """Type-3 chunks that start a new message add the previous delta (pyrtmp lost it)."""
    reader = asyncio.StreamReader()
    first = encode_message(4, 8, 1, b"a" * 10, 128, timestamp=1000)
    type2 = bytes([0x80 | 4]) + (23).to_bytes(3, "big") + b"b" * 10  # delta 23
    type3 = bytes([0xC0 | 4]) + b"c" * 10  # same delta again
    big = encode_message(5, 9, 1, b"v" * 300, 128, timestamp=5)  # split into 3 chunks
    reader.feed_data(first + type2 + type3 + big)
    chunks = ChunkReader(reader)
    got = [await chunks.read_message() for _ in range(4)]
    assert [(m.type_id, m.timestamp, m.payload[:1]) for m in got] == [
        (8, 1000, b"a"),
        (8, 1023, b"b"),
        (8, 1046, b"c"),
        (9, 5, b"v"),
    ]
    assert len(got[3].payload) == 300


def fragment(duration: float, independent: bool) -> Fragment:
    return Fragment(b"moof", 0.0, duration, independent)


async def test_timeline_cuts_segments_on_keyframes_and_rolls() -> None:
    timeline = Timeline(target_duration=1.0, part_target=0.25, window=3)
    timeline.new_init(b"init0")
    pattern = [True, False, False, False, False, True, False, False, True, False, False, False]
    for independent in pattern * 3:
        timeline.add(fragment(0.25, independent))
    segments = timeline.segments
    assert len(segments) == 3 and segments[0].msn > 0  # rolled
    assert all(s.parts[0].independent for s in segments)
    assert all(s.duration >= 1.0 for s in segments if s.complete)
    text = timeline.playlist().decode()
    target = int(text.split("#EXT-X-TARGETDURATION:")[1].split("\n")[0])
    assert all(round(s.duration) <= target for s in segments) and target <= 2
    assert f"#EXT-X-MEDIA-SEQUENCE:{segments[0].msn}" in text
    assert f'PRELOAD-HINT:TYPE=PART,URI="{timeline.part_name(timeline.next_part)}"' in text
    last = segments[-1]
    assert timeline.has_part(last.msn, len(last.parts) - 1)
    assert not timeline.has_part(last.msn, len(last.parts))
    # A reconnect brings a new init section: a discontinuity, and the old init stays listed.
    timeline.new_init(b"init1")
    timeline.add(fragment(0.25, True))
    text = timeline.playlist().decode()
    assert f'#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="{timeline.init_name(1)}"' in text
    timeline.end()
    assert timeline.playlist().decode().endswith("#EXT-X-ENDLIST\n")


async def test_the_preload_hint_names_the_part_that_comes_next() -> None:
    """Also where the next part is independent and starts a new segment."""
    timeline = Timeline(target_duration=1.0, part_target=0.25, window=4)
    timeline.new_init(b"init0")
    pattern = [True, False, False, False, True, False, False, True, False, False, False, False]
    boundaries = 0
    for independent in pattern * 3:
        if timeline.segments:
            before = timeline.playlist().decode()
            hinted = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', before).group(1)  # type: ignore[union-attr]
            msn = timeline.segments[-1].msn
        timeline.add(fragment(0.25, independent))
        if len(timeline.segments) > 1 or timeline.segments[-1].msn != timeline.first_msn:
            after = timeline.playlist().decode()
            assert f'#EXT-X-PART:DURATION=0.25000,URI="{hinted}"' in after
            boundaries += timeline.segments[-1].msn != msn
    assert boundaries >= 5


async def test_timeline_waiters_wake_up_and_time_out() -> None:
    timeline = Timeline(1.0, 0.25, 5)
    timeline.new_init(b"i")
    timeline.add(fragment(0.25, True))
    msn = timeline.first_msn
    waiter = asyncio.create_task(timeline.wait_for(msn, 2, timeout=2.0))
    await asyncio.sleep(0.01)
    timeline.add(fragment(0.25, False))
    assert not waiter.done()
    timeline.add(fragment(0.25, False))
    assert await waiter is True
    started = time.monotonic()
    assert await timeline.wait_for(msn + 5, 0, timeout=0.1) is False
    assert time.monotonic() - started < 0.5


class SlowReader(QueuedReader):
    name = "slow"

    def __init__(self) -> None:
        self.handled: list[int] = []
        super().__init__(maxsize=4)

    def handle(self, packet: PacketCopy) -> None:
        time.sleep(0.02)
        self.handled.append(packet.pts or 0)


def packet(pts: int, keyframe: bool) -> PacketCopy:
    return PacketCopy("video", "h264", None, b"x", pts, pts, Fraction(1, 1000), keyframe)


def test_a_slow_reader_never_blocks_ingest_and_resyncs_on_keyframes() -> None:
    reader = SlowReader()
    started = time.monotonic()
    for pts in range(1, 200):
        reader.offer(packet(pts, keyframe=pts % 50 == 0))
    offered_in = time.monotonic() - started
    reader.close()
    reader.join()
    assert offered_in < 0.05, "offer() must never wait for the reader"
    assert reader.dropped > 100
    assert len(reader.handled) + reader.dropped == 199
    assert reader.handled == sorted(reader.handled)
    # The newest keyframe replaced the backlog in front of it; what follows it is contiguous.
    after = reader.handled[reader.handled.index(150) :]
    assert after == list(range(150, 150 + len(after)))


def _h264_keyframe(width: int, height: int) -> PacketCopy:
    """One black H.264 keyframe (with its SPS/PPS as extradata), as the ingest hands it over."""
    encoder: Any = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"preset": "ultrafast"}
    encoder.flags |= av.codec.context.Flags.global_header
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.pts = 0
    packet = (encoder.encode(frame) + encoder.encode(None))[0]
    return PacketCopy(
        "video", "h264", encoder.extradata, bytes(packet), 0, 0, Fraction(1, 25), True
    )


def test_live_thumbnail_refuses_pictures_over_the_limit_before_decoding() -> None:
    small = _h264_keyframe(640, 480)
    assert keyframe_to_jpeg(small, 160)[:2] == b"\xff\xd8", "a JPEG"
    with pytest.raises(av.FFmpegError):
        keyframe_to_jpeg(small, 160, max_pixels=640 * 480 - 1)
    huge = _h264_keyframe(8192, 4336)  # a little over DCI 8K: over the default limit
    with pytest.raises(av.FFmpegError):
        keyframe_to_jpeg(huge, 160)


def test_vp8_transcoder_refuses_pictures_over_the_limit() -> None:
    delivered: list[bool] = []
    transcoder = Vp8Transcoder(lambda packet, keyframe: delivered.append(keyframe))
    try:
        transcoder.handle(_h264_keyframe(8192, 4336))  # over the re-encode's 4K: not decoded
        assert delivered == []
        transcoder.handle(_h264_keyframe(320, 240))
        assert delivered == [True]
    finally:
        transcoder.close()


async def test_blocked_viewers_share_one_rendered_playlist() -> None:
    """When a part lands, every waiter is answered from one rendering (the same bytes)."""
    timeline = Timeline(1.0, 0.25, 5)
    timeline.new_init(b"i")
    timeline.add(fragment(0.25, True))
    msn = timeline.first_msn

    async def viewer() -> bytes:
        assert await timeline.wait_for(msn, 1, timeout=5.0)
        return timeline.playlist()

    viewers = [asyncio.create_task(viewer()) for _ in range(200)]
    await asyncio.sleep(0.01)
    timeline.add(fragment(0.25, False))
    answers = await asyncio.gather(*viewers)
    assert all(answer is answers[0] for answer in answers), "rendered once, shared"
    assert b"part-" + timeline.epoch.encode() + b"-1.m4s" in answers[0]
    timeline.add(fragment(0.25, False))
    assert timeline.playlist() is not answers[0], "a change renders it again"


async def test_live_snapshots_decode_on_demand_at_most_once_per_interval() -> None:
    """The pipeline hands keyframes over without work; a request decodes the newest one, and
    requests within ``every`` seconds (concurrent ones too) share that JPEG."""
    snapshots = Snapshots(every=3600, width=160)
    assert not snapshots.available and await snapshots.jpeg() is None
    assert snapshots.accepts("video", True) and not snapshots.accepts("video", False)
    assert not snapshots.accepts("audio", True)
    first = _h264_keyframe(320, 240)
    snapshots.offer(first)
    assert snapshots.available
    jpegs = await asyncio.gather(*(snapshots.jpeg() for _ in range(3)))
    assert jpegs[0] is not None and jpegs[0][:2] == b"\xff\xd8"
    assert jpegs[1] is jpegs[0] and jpegs[2] is jpegs[0], "one decode for all"
    snapshots.offer(_h264_keyframe(640, 360))  # another picture size: another JPEG
    assert await snapshots.jpeg() is jpegs[0], "still fresh: the newer keyframe waits"
    snapshots.every = 0
    newer = await snapshots.jpeg()
    assert newer is not None and newer != jpegs[0]
    assert newer[:2] == b"\xff\xd8"
