"""The optional FFmpeg bitrate ladder: extra renditions of a live stream, as HLS.

One ``ffmpeg`` subprocess per stream reads the stream as FLV on stdin, scales and encodes
every configured rendition at once (one decode, ``split`` + ``scale`` filters) and writes
fMP4 HLS for each under ``<data_dir>/live/<stream>/ladder/<rendition>/``. The multivariant
playlist ``/live/<stream>/master.m3u8`` offers the source (LL-HLS, not re-encoded) and the
renditions. Off by default: transcoding costs real CPU.

The ladder is an inline output of the pipeline: packets are written to FFmpeg's stdin; if
FFmpeg falls behind by more than ``MAX_BACKLOG`` bytes, non-key video is dropped until it
catches up and the next keyframe arrives.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import structlog

from ..children import bound
from ..config import Rendition
from .ingest import FLV_HEADER, TAG_AUDIO, TAG_VIDEO, flv_tag
from .mp4 import MediaInfo, read_media_info
from .readers import PacketCopy

log = structlog.get_logger(__name__)
MAX_BACKLOG = 8 << 20
START_AFTER_PACKETS = 20


def ffmpeg_args(
    renditions: list[Rendition], out: Path, segment: float, audio: bool, epoch: str
) -> list[str]:
    """The FFmpeg command line for a set of renditions (no user text becomes an option).

    File names carry the stream's epoch, as the source's do: a new session never reuses the
    name of a segment a cache may still hold."""
    n = len(renditions)
    scales = "".join(f"[v{i}]scale=-2:{r.height}[v{i}out];" for i, r in enumerate(renditions))
    graph = f"[0:v]split={n}" + "".join(f"[v{i}]" for i in range(n)) + ";" + scales.rstrip(";")
    args = ["-nostdin", "-loglevel", "error", "-f", "flv", "-i", "pipe:0", "-filter_complex", graph]
    stream_map = []
    for i, r in enumerate(renditions):
        args += [
            "-map",
            f"[v{i}out]",
            f"-c:v:{i}",
            "libx264",
            f"-b:v:{i}",
            f"{r.video_kbps}k",
            f"-maxrate:v:{i}",
            f"{r.video_kbps}k",
            f"-bufsize:v:{i}",
            f"{2 * r.video_kbps}k",
        ]
        if audio:
            args += ["-map", "0:a", f"-c:a:{i}", "aac", f"-b:a:{i}", f"{r.audio_kbps}k"]
        stream_map.append(f"v:{i},a:{i},name:{r.name}" if audio else f"v:{i},name:{r.name}")
    args += [
        "-preset",
        "veryfast",
        "-g",
        "60",
        "-sc_threshold",
        "0",
        "-f",
        "hls",
        "-hls_time",
        str(segment),
        "-hls_list_size",
        "8",
        "-hls_segment_type",
        "fmp4",
        "-hls_flags",
        "delete_segments+independent_segments",
        "-var_stream_map",
        " ".join(stream_map),
        "-hls_fmp4_init_filename",
        # FFmpeg fills in %v only when it writes more than one variant.
        f"init-{epoch}-{renditions[0].name if n == 1 else '%v'}.mp4",
        "-hls_segment_filename",
        str(out / "%v" / f"seg-{epoch}-%d.m4s"),
        str(out / "%v" / "index.m3u8"),
    ]
    return args


class Ladder:
    """Transcodes one stream into renditions with an FFmpeg subprocess."""

    name = "ladder"

    def __init__(
        self, renditions: list[Rendition], directory: Path, segment: float, epoch: str
    ) -> None:
        self.renditions = renditions
        self.directory = directory
        self.segment = segment
        self.epoch = epoch
        self._info: dict[str, MediaInfo] = {}  # rendition -> what its init section says
        self.dropped = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._pending: list[bytes] = []
        self._config: dict[str, bytes | None] = {"video": None, "audio": None}
        self._waiting_key = False
        self._closed = False
        self._stopping: asyncio.Future[None] | None = None

    def accepts(self, kind: str, keyframe: bool) -> bool:
        return not self._closed

    def offer(self, packet: PacketCopy) -> None:
        tags = []
        if packet.extradata and packet.extradata != self._config[packet.kind]:
            self._config[packet.kind] = packet.extradata
            header = b"\x17\x00\x00\x00\x00" if packet.kind == "video" else b"\xaf\x00"
            tags.append(
                flv_tag(
                    TAG_VIDEO if packet.kind == "video" else TAG_AUDIO,
                    packet.dts or 0,
                    header + packet.extradata,
                )
            )
        if packet.kind == "video":
            cts = ((packet.pts or 0) - (packet.dts or 0)).to_bytes(3, "big", signed=True)
            head = bytes([0x17 if packet.keyframe else 0x27, 1]) + cts
            tags.append(flv_tag(TAG_VIDEO, packet.dts or 0, head + packet.data))
        else:
            tags.append(flv_tag(TAG_AUDIO, packet.dts or 0, b"\xaf\x01" + packet.data))
        self._write(b"".join(tags), packet)

    def _write(self, data: bytes, packet: PacketCopy) -> None:
        if self._proc is None:
            self._pending.append(data)
            # Start once a few packets have shown whether the stream carries audio.
            if self._starting is None and len(self._pending) >= START_AFTER_PACKETS:
                audio = self._config["audio"] is not None
                self._starting = asyncio.ensure_future(self._start(audio))
            return
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            return
        backlog = stdin.transport.get_write_buffer_size()
        if packet.kind == "video" and (backlog > MAX_BACKLOG or self._waiting_key):
            self._waiting_key = not packet.keyframe or backlog > MAX_BACKLOG
            if self._waiting_key:
                self.dropped += 1
                return
        stdin.write(data)

    async def _start(self, audio: bool) -> None:
        if self.directory.exists():
            shutil.rmtree(self.directory)
        for r in self.renditions:
            (self.directory / r.name).mkdir(parents=True, exist_ok=True)
        args = ffmpeg_args(self.renditions, self.directory, self.segment, audio, self.epoch)
        self._proc = await asyncio.create_subprocess_exec(
            *bound(["ffmpeg", *args]), stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(FLV_HEADER + b"".join(self._pending))
        self._pending = []
        log.info(
            "ladder.started",
            directory=str(self.directory),
            renditions=[r.name for r in self.renditions],
        )

    def close(self) -> None:
        self._closed = True
        self._stopping = asyncio.ensure_future(self._stop())

    async def _stop(self) -> None:
        if self._starting is not None:
            await self._starting
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            _, err = await asyncio.wait_for(self._proc.communicate(), 15)
            if self._proc.returncode:
                log.warning("ladder.failed", error=err.decode()[-500:])
        except TimeoutError:
            self._proc.kill()

    def rendition_info(self, name: str) -> MediaInfo | None:
        """Codecs and picture size of a rendition, once FFmpeg has written its init section."""
        if name not in self._info:
            # FFmpeg writes the playlist after the init section and the first segment.
            if not (self.directory / name / "index.m3u8").exists():
                return None
            init = self.directory / name / f"init-{self.epoch}-{name}.mp4"
            try:
                info = read_media_info(init.read_bytes())
            except OSError:
                return None
            if not info.codecs:
                return None
            self._info[name] = info
        return self._info[name]

    def master_playlist(self, source_bandwidth: int, source: MediaInfo | None) -> str:
        """The multivariant playlist: the source first, then each rendition that has begun,
        each with RESOLUTION and CODECS (players pick and switch levels by these)."""
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-INDEPENDENT-SEGMENTS"]
        lines += [
            f"#EXT-X-STREAM-INF:BANDWIDTH={max(source_bandwidth, 1)}{_attributes(source)},"
            'NAME="source"',
            "index.m3u8",
        ]
        for r in self.renditions:
            info = self.rendition_info(r.name)
            if info is not None:
                bandwidth = (r.video_kbps + r.audio_kbps) * 1000
                lines += [
                    f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth}{_attributes(info)},NAME="{r.name}"',
                    f"ladder/{r.name}/index.m3u8",
                ]
        return "\n".join(lines) + "\n"


def _attributes(info: MediaInfo | None) -> str:
    if info is None:
        return ""
    text = f",RESOLUTION={info.width}x{info.height}" if info.width and info.height else ""
    return text + (f',CODECS="{",".join(info.codecs)}"' if info.codecs else "")
