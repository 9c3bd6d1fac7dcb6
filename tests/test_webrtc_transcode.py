"""B-frames: noticed at ingest, and the WebRTC re-encode on its own (H.264 with B-frames in,
browser-playable H.264 out)."""

from __future__ import annotations

import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from syncstream.media.ingest import Ingest, IngestCallbacks, TrackInfo
from syncstream.media.readers import PacketCopy
from syncstream.media.webrtc.transcode import H264Transcoder, target_bitrate, x264_preset

MS = Fraction(1, 1000)


def encode(tmp_path: Path, size: str, bframes: int, frames: int) -> Path:
    path = tmp_path / f"source-{bframes}.flv"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=30",
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            str(bframes),
            "-g",
            "300",
            "-f",
            "flv",
            str(path),
        ],
        check=True,
    )
    return path


def source(tmp_path: Path, size: str, bframes: int, frames: int = 30) -> list[PacketCopy]:
    """Packets as the ingest hands them on: AVCC H.264 in ms, one GOP."""
    with av.open(str(encode(tmp_path, size, bframes, frames))) as container:
        stream = container.streams.video[0]
        config = bytes(stream.codec_context.extradata)
        return [
            PacketCopy("video", "h264", config, bytes(p), p.pts, p.dts, MS, p.is_keyframe)
            for p in container.demux(stream)
            if p.size
        ]


class Collector:
    def __init__(self, expected: int) -> None:
        self.packets: list[tuple[Any, bool]] = []
        self.expected = expected
        self.done = threading.Event()

    def __call__(self, packet: Any, keyframe: bool) -> None:
        self.packets.append((packet, keyframe))
        if len(self.packets) >= self.expected:
            self.done.set()


def test_b_frames_come_out_as_constrained_baseline_without_reordering(tmp_path: Path) -> None:
    packets = source(tmp_path, "320x240", bframes=2)
    assert any(p.pts != p.dts for p in packets), "the source has B-frames"
    out = Collector(len(packets) - 3)  # the decoder holds back its reorder depth
    transcoder = H264Transcoder(out)
    for packet in packets[:15]:
        transcoder.offer(packet)
    for _ in range(300):
        if len(out.packets) >= 10:
            break
        time.sleep(0.05)
    transcoder.request_keyframe()  # a viewer joins mid-GOP
    for packet in packets[15:]:
        transcoder.offer(packet)
    assert out.done.wait(30), f"only {len(out.packets)} packets came out"
    transcoder.close()
    pts = [p.pts for p, _ in out.packets]
    assert pts == sorted(pts) and all(p.pts == p.dts for p, _ in out.packets), "no reordering"
    keys = [i for i, (_, key) in enumerate(out.packets) if key]
    assert keys[0] == 0 and len(keys) == 2, f"the first and the requested keyframe: {keys}"
    # Annex-B with SPS + PPS in front of each keyframe; SPS profile_idc 66 = baseline.
    first = bytes(out.packets[0][0])
    assert first.startswith(b"\x00\x00\x00\x01\x67\x42")
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p, _ in out.packets for f in decoder.decode(av.Packet(bytes(p)))]
    assert len(frames) == len(out.packets) and frames[0].width == 320


def test_pictures_past_4k_are_not_reencoded(tmp_path: Path) -> None:
    packets = source(tmp_path, "4096x2304", bframes=0, frames=2)
    out = Collector(1)
    transcoder = H264Transcoder(out)
    for packet in packets:
        transcoder.offer(packet)
    transcoder.close()
    transcoder.join(30)
    assert out.packets == []


@pytest.mark.parametrize(
    ("width", "height", "fps", "preset", "bitrate"),
    [
        (640, 360, 30, "veryfast", 691_200),
        (1280, 720, 30, "veryfast", 2_764_800),
        (1920, 1080, 30, "superfast", 6_220_800),
        (1920, 1080, 60, "ultrafast", 8_000_000),
        (160, 90, 15, "veryfast", 300_000),
    ],
)
def test_preset_and_bitrate_follow_the_pixel_rate(
    width: int, height: int, fps: int, preset: str, bitrate: int
) -> None:
    assert x264_preset(width * height * fps) == preset
    assert target_bitrate(width, height, fps) == bitrate


def flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, timestamp, payload) of each tag of an FLV file, as RTMP would carry them."""
    tags, pos = [], 13
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        stamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        tags.append((data[pos], stamp, data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return tags


def ingest() -> tuple[Ingest, list[TrackInfo]]:
    """An ingest pipeline without outputs, and the tracks it reports (the list it hands on)."""
    tracks: list[TrackInfo] = []

    def on_tracks(reported: list[TrackInfo]) -> None:
        tracks[:] = reported

    def ignore(_: Any) -> None:
        pass

    return Ingest(IngestCallbacks(on_tracks, ignore, ignore), 0.2), tracks


@pytest.mark.parametrize("bframes", [2, 0])
def test_the_ingest_reports_b_frames(tmp_path: Path, bframes: int) -> None:
    pipeline, tracks = ingest()
    for tag in flv_tags(encode(tmp_path, "320x240", bframes, 60).read_bytes()):
        pipeline.write(*tag)
    (video,) = [t for t in tracks if t.kind == "video"]
    assert video.bframes is bool(bframes) and pipeline.bframes is bool(bframes)
    assert video.public()["bframes"] is bool(bframes)


def test_b_frames_noticed_late_and_forgotten_with_a_new_configuration(tmp_path: Path) -> None:
    pipeline, tracks = ingest()
    tags = flv_tags(encode(tmp_path, "320x240", 0, 60).read_bytes())
    config = next(t for t in tags if t[0] == 9 and t[2][1] == 0)
    for tag in tags[:45]:  # video only: the muxer starts once 1 s passed without audio
        pipeline.write(*tag)
    (video,) = [t for t in tracks if t.kind == "video"]
    assert video.bframes is False
    kind, stamp, payload = next(t for t in tags[45:] if t[0] == 9)
    pipeline.write(kind, stamp, payload[:2] + (33).to_bytes(3, "big") + payload[5:])  # cts 33
    assert video.bframes is True, "the stream's track learns it in place"
    # A new encoder configuration (the publisher changed settings): look again.
    kind, stamp, payload = config
    pipeline.write(kind, stamp, payload + b"\x00")
    assert pipeline.bframes is False
