"""FFmpeg command lines for each operation, as argument lists (never a shell).

Every value placed in a command comes from a validated enum or number, or is a path this
plugin made; the input is given with ``-protocol_whitelist file`` so nothing in it can make
FFmpeg open a network address, and with ``-max_pixels`` so its decoders allocate no picture
larger than the probe allowed (a stream may change its size mid-way). Output size is capped
with ``-fs``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .encoders import Encoders
from .operations import (
    DEFAULTS,
    ContactSheet,
    Convert,
    ExtractAudio,
    Faststart,
    Operation,
    Snapshot,
    Trim,
)

MUXERS = {
    "mp4": "mp4",
    "mov": "mov",
    "mkv": "matroska",
    "webm": "webm",
    "avi": "avi",
    "mp3": "mp3",
    "m4a": "ipod",
    "opus": "opus",
    "ogg": "ogg",
    "flac": "flac",
    "wav": "wav",
    "jpg": "image2",
}
AUDIO_ENCODERS = {
    "aac": "aac",
    "opus": "libopus",
    "mp3": "libmp3lame",
    "flac": "flac",
    "pcm": "pcm_s16le",
    "vorbis": "libvorbis",
}
# The audio codec (as FFmpeg names it) each audio container takes as is.
COPYABLE = {
    "m4a": {"aac", "alac"},
    "mp3": {"mp3"},
    "opus": {"opus"},
    "ogg": {"vorbis", "opus"},
    "flac": {"flac"},
    "wav": {"pcm_s16le", "pcm_s24le", "pcm_f32le", "pcm_u8"},
}
AUTO_AUDIO = {"aac": "m4a", "mp3": "mp3", "opus": "opus", "vorbis": "ogg", "flac": "flac"}
FASTSTART = {"mp4", "mov", "m4a"}
X26X_SPEED = ("ultrafast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DEFAULT_QUALITY = {"h264": 23, "hevc": 28, "vp9": 32, "av1": 35}


class CommandError(Exception):
    """The operation cannot apply to this input (``code`` for the problem, ``str`` the reason)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class Plan:
    """The FFmpeg runs of a job and the files they leave in the work directory."""

    passes: list[list[str]]
    outputs: list[tuple[Path, str]]  # (path, file name for the user)
    seconds: float | None  # media time the last pass produces (for progress)
    weights: list[float] = field(default_factory=list)


@dataclass
class Context:
    src: Path
    work: Path
    name: str  # the input file's name
    info: dict[str, Any]
    encoders: Encoders
    threads: int
    max_output_bytes: int
    max_pixels: int  # the decoders refuse larger pictures, even ones appearing mid-stream

    @property
    def stem(self) -> str:
        stem, dot, _ = self.name.rpartition(".")
        return stem if dot and stem else self.name

    @property
    def duration(self) -> float | None:
        value = self.info.get("duration")
        return float(value) if value else None

    def stream(self, kind: str) -> dict[str, Any] | None:
        return next((s for s in self.info["streams"] if s["type"] == kind), None)

    def head(self, *before_input: str) -> list[str]:
        return [
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-progress",
            "pipe:1",
            "-nostats",
            *before_input,
            "-max_pixels",
            str(self.max_pixels),
            "-protocol_whitelist",
            "file",
            "-i",
            str(self.src),
        ]

    def tail(self, container: str, out: Path) -> list[str]:
        threads = ["-threads", str(self.threads)] if self.threads else []
        return [*threads, "-fs", str(self.max_output_bytes), "-f", MUXERS[container], str(out)]


def plan(op: Operation, ctx: Context) -> Plan:
    if isinstance(op, Convert):
        return _convert(op, ctx)
    if isinstance(op, ExtractAudio):
        return _extract_audio(op, ctx)
    if isinstance(op, Faststart):
        return _faststart(ctx)
    if isinstance(op, Trim):
        return _trim(op, ctx)
    if isinstance(op, Snapshot):
        return _snapshot(op, ctx)
    if isinstance(op, ContactSheet):
        return _contact_sheet(op, ctx)
    raise CommandError("operation_unsupported", f"{type(op).__name__} has no FFmpeg command")


def _video_args(
    ctx: Context,
    codec: str,
    *,
    kbps: int | None,
    crf: int | None,
    height: int | None,
    fps: float | None,
    speed: str,
) -> tuple[list[str], list[str]]:
    """(global args before the input, output args) to encode the first video stream."""
    source = ctx.stream("video")
    encoder = ctx.encoders.video[codec]
    filters = []
    if height and source and height < source["height"]:
        filters.append(f"scale=-2:{height}")
    if fps:
        filters.append(f"fps={fps:g}")
    filters += ["format=yuv420p", *Encoders.upload_filter(encoder)]
    args = ["-c:v", encoder, "-vf", ",".join(filters)]
    if kbps:
        args += ["-b:v", f"{kbps}k", "-maxrate", f"{kbps * 3 // 2}k", "-bufsize", f"{kbps * 2}k"]
    quality = crf if crf is not None else (None if kbps else DEFAULT_QUALITY[codec])
    if encoder in ("libx264", "libx265"):
        args += ["-preset", speed]
        if quality is not None:
            args += ["-crf", str(quality)]
    elif encoder == "libvpx-vp9":
        args += [
            "-deadline",
            "good",
            "-cpu-used",
            str(max(0, 8 - X26X_SPEED.index(speed))),
            "-row-mt",
            "1",
        ]
        if quality is not None:
            args += ["-crf", str(quality), *(["-b:v", "0"] if not kbps else [])]
    elif encoder == "libsvtav1":
        args += ["-preset", str(min(13, 4 + (7 - X26X_SPEED.index(speed))))]
        if quality is not None:
            args += ["-crf", str(quality)]
    elif quality is not None:  # hardware encoders: constant-quality mode
        args += ["-qp" if "vaapi" in encoder else "-cq", str(quality)]
    return ctx.encoders.hw_input_args(encoder), args


def _audio_args(codec: str, kbps: int | None) -> list[str]:
    if codec == "none":
        return ["-an"]
    if codec == "copy":
        return ["-c:a", "copy"]
    args = ["-c:a", AUDIO_ENCODERS[codec]]
    if kbps and codec not in ("flac", "pcm"):
        args += ["-b:a", f"{kbps}k"]
    return args


def _convert(op: Convert, ctx: Context) -> Plan:
    video, audio = op.codecs()
    if video not in ("none",) and ctx.stream("video") is None:
        video = "none"  # an audio file converted to a video container: audio only
    if ctx.stream("audio") is None:
        audio = "none"
    if video == "none" and audio == "none":
        raise CommandError("no_media_streams", f"nothing in the input fits {op.container}")
    out = ctx.work / f"out.{op.container}"
    before: list[str] = []
    if video == "none":
        vargs = ["-vn"]
    elif video == "copy":
        vargs = ["-c:v", "copy"]
    else:
        before, vargs = _video_args(
            ctx, video, kbps=op.video_kbps, crf=op.crf, height=op.height, fps=op.fps, speed=op.speed
        )
    maps = ["-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn", "-map_metadata", "0"]
    aargs = _audio_args(audio, op.audio_kbps)
    mux = ["-movflags", "+faststart"] if op.container in FASTSTART and op.faststart else []
    passes = []
    if op.two_pass:
        log = str(ctx.work / "passlog")
        first = ctx.head(*before) + maps + vargs + ["-pass", "1", "-passlogfile", log, "-an"]
        passes.append([*first, "-f", "null", os.devnull])
        vargs = [*vargs, "-pass", "2", "-passlogfile", log]
    passes.append(ctx.head(*before) + maps + vargs + aargs + mux + ctx.tail(op.container, out))
    weights = [0.4, 0.6] if op.two_pass else [1.0]
    return Plan(passes, [(out, f"{ctx.stem}.{op.container}")], ctx.duration, weights)


def _extract_audio(op: ExtractAudio, ctx: Context) -> Plan:
    source = ctx.stream("audio")
    if source is None:
        raise CommandError("no_audio", "the input has no audio stream")
    codec = source["codec"]
    container: str = op.container
    if container == "auto":
        container = AUTO_AUDIO.get(codec, "wav" if codec.startswith("pcm_") else "m4a")
    lossless = container in ("flac", "wav")
    copy = codec in COPYABLE[container] and (op.audio_kbps is None or lossless)
    aargs = ["-c:a", "copy"] if copy else _audio_args(DEFAULTS[container][1], op.audio_kbps)
    out = ctx.work / f"out.{container}"
    mux = ["-movflags", "+faststart"] if container in FASTSTART else []
    argv = [*ctx.head(), "-map", "0:a:0", "-vn", "-sn", "-dn", *aargs, *mux]
    return Plan([argv + ctx.tail(container, out)], [(out, f"{ctx.stem}.{container}")], ctx.duration)


def _source_container(ctx: Context) -> str:
    fmt = set(ctx.info["format"].split(","))
    if fmt & {"mov", "mp4"}:
        ext = ctx.name.rpartition(".")[2].lower()
        return "mov" if ext == "mov" else "mp4"
    if "webm" in fmt and ctx.name.lower().endswith(".webm"):
        return "webm"
    return "mkv"


def _faststart(ctx: Context) -> Plan:
    container = _source_container(ctx)
    if container not in ("mp4", "mov"):
        raise CommandError("not_mp4", "faststart applies to MP4 and MOV files")
    out = ctx.work / f"out.{container}"
    argv = [*ctx.head(), "-map", "0", "-c", "copy", "-movflags", "+faststart"]
    return Plan(
        [argv + ctx.tail(container, out)],
        [(out, f"{ctx.stem} (streaming).{container}")],
        ctx.duration,
    )


def _stamp(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}.{whole % 3600 // 60:02d}.{whole % 60:02d}"


def _trim(op: Trim, ctx: Context) -> Plan:
    duration = ctx.duration
    if duration is not None and op.start >= duration:
        raise CommandError(
            "trim_out_of_range", f"start {op.start:g} s is past the end ({duration:g} s)"
        )
    length = op.length()
    if duration is not None:
        length = min(length, duration - op.start)
    container = _source_container(ctx)
    out = ctx.work / f"out.{container}"
    maps = ["-map", "0:v:0?", "-map", "0:a:0?", "-sn", "-dn"]
    before = ["-ss", f"{op.start:.3f}"]
    if op.accurate:
        video, audio = DEFAULTS["webm" if container == "webm" else "mp4"]
        hw, vargs = _video_args(ctx, video, kbps=None, crf=18, height=None, fps=None, speed="fast")
        codec_args = (
            vargs + _audio_args(audio, 160) if ctx.stream("video") else _audio_args(audio, 160)
        )
        before = hw + before
    else:
        codec_args = ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    mux = ["-movflags", "+faststart"] if container in FASTSTART else []
    argv = [*ctx.head(*before), "-t", f"{length:.3f}", *maps, *codec_args, *mux]
    name = f"{ctx.stem} (clip {_stamp(op.start)}-{_stamp(op.start + length)}).{container}"
    return Plan([argv + ctx.tail(container, out)], [(out, name)], length)


def _need_video(ctx: Context) -> dict[str, Any]:
    video = ctx.stream("video")
    if video is None:
        raise CommandError("no_video", "the input has no video stream")
    return video


def _snapshot(op: Snapshot, ctx: Context) -> Plan:
    _need_video(ctx)
    duration = ctx.duration or 0.0
    at = (
        op.at
        if op.at is not None
        else duration * (op.at_percent if op.at_percent is not None else 10) / 100
    )
    if duration and at >= duration:
        at = max(0.0, duration - 0.1)
    filters = [f"scale={op.width}:-2"] if op.width else []
    out = ctx.work / "out.jpg"
    argv = [*ctx.head("-ss", f"{at:.3f}"), "-map", "0:v:0", "-frames:v", "1", "-q:v", "3"]
    if filters:
        argv += ["-vf", ",".join(filters)]
    name = f"{ctx.stem} (snapshot {_stamp(at)}).jpg"
    return Plan([[*argv, "-update", "1", *ctx.tail("jpg", out)]], [(out, name)], None)


def _contact_sheet(op: ContactSheet, ctx: Context) -> Plan:
    _need_video(ctx)
    duration = ctx.duration
    if not duration:
        raise CommandError("duration_unknown", "a contact sheet needs the video's duration")
    count = op.columns * op.rows
    tile_width = max(16, op.width // op.columns // 2 * 2)
    filters = f"fps={count}/{duration:.3f},scale={tile_width}:-2,tile={op.columns}x{op.rows}"
    out = ctx.work / "out.jpg"
    argv = [
        *ctx.head(),
        "-map",
        "0:v:0",
        "-vf",
        filters,
        "-frames:v",
        "1",
        "-q:v",
        "3",
        "-update",
        "1",
    ]
    return Plan([argv + ctx.tail("jpg", out)], [(out, f"{ctx.stem} (contact sheet).jpg")], duration)
