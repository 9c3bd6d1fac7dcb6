"""What a media job can do, as typed parameters: every value is an enum or a bounded number,
so nothing a user sends ever becomes an FFmpeg option name or reaches a shell."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from syncstream.sdk import Problem, validation_problem

Container = Literal["mp4", "mov", "mkv", "webm", "avi", "mp3", "m4a", "opus", "ogg", "flac", "wav"]
VideoCodec = Literal["h264", "hevc", "vp9", "av1", "copy", "none"]
AudioCodec = Literal["aac", "opus", "mp3", "flac", "pcm", "vorbis", "copy", "none"]
Speed = Literal["ultrafast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]

DEFAULTS: dict[str, tuple[VideoCodec, AudioCodec]] = {
    "mp4": ("h264", "aac"),
    "mov": ("h264", "aac"),
    "mkv": ("h264", "aac"),
    "webm": ("vp9", "opus"),
    "avi": ("h264", "mp3"),
    "mp3": ("none", "mp3"),
    "m4a": ("none", "aac"),
    "opus": ("none", "opus"),
    "ogg": ("none", "vorbis"),
    "flac": ("none", "flac"),
    "wav": ("none", "pcm"),
}
ALLOWED: dict[str, tuple[set[str], set[str]]] = {  # container -> (video codecs, audio codecs)
    "mp4": (
        {"h264", "hevc", "av1", "copy", "none"},
        {"aac", "mp3", "opus", "flac", "copy", "none"},
    ),
    "mov": ({"h264", "hevc", "copy", "none"}, {"aac", "mp3", "pcm", "copy", "none"}),
    "mkv": (
        {"h264", "hevc", "vp9", "av1", "copy", "none"},
        {"aac", "opus", "mp3", "flac", "pcm", "vorbis", "copy", "none"},
    ),
    "webm": ({"vp9", "av1", "copy", "none"}, {"opus", "vorbis", "copy", "none"}),
    "avi": ({"h264", "copy", "none"}, {"mp3", "pcm", "copy", "none"}),
    "mp3": ({"none"}, {"mp3", "copy"}),
    "m4a": ({"none"}, {"aac", "copy"}),
    "opus": ({"none"}, {"opus", "copy"}),
    "ogg": ({"none"}, {"vorbis", "opus", "copy"}),
    "flac": ({"none"}, {"flac", "copy"}),
    "wav": ({"none"}, {"pcm", "copy"}),
}


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Convert(Operation):
    """Change container and/or codecs; optionally re-encode at a bitrate, size or frame rate."""

    op: Literal["convert"]
    container: Container
    video_codec: VideoCodec | None = Field(None, description="Default: the container's usual")
    audio_codec: AudioCodec | None = None
    video_kbps: int | None = Field(None, ge=50, le=200_000)
    audio_kbps: int | None = Field(None, ge=16, le=512)
    crf: int | None = Field(None, ge=0, le=63, description="Constant quality (lower is better)")
    height: int | None = Field(
        None, ge=16, le=4320, description="Scale to this height (no upscaling)"
    )
    fps: float | None = Field(None, ge=1, le=240)
    two_pass: bool = Field(False, description="Two-pass encode at video_kbps")
    speed: Speed = "medium"
    faststart: bool = Field(True, description="MP4/MOV/M4A: index first, plays while loading")

    @model_validator(mode="after")
    def _consistent(self) -> Convert:
        video, audio = self.codecs()
        allowed_video, allowed_audio = ALLOWED[self.container]
        if video not in allowed_video:
            raise ValueError(f"{self.container} cannot hold {video} video")
        if audio not in allowed_audio:
            raise ValueError(f"{self.container} cannot hold {audio} audio")
        if self.two_pass and (self.video_kbps is None or video in ("copy", "none")):
            raise ValueError("two_pass needs video_kbps and a video codec to encode")
        if video == "copy" and (self.height or self.fps or self.video_kbps or self.crf is not None):
            raise ValueError("copied video cannot be scaled or re-rated; pick a codec")
        return self

    def codecs(self) -> tuple[str, str]:
        video, audio = DEFAULTS[self.container]
        return self.video_codec or video, self.audio_codec or audio


class ExtractAudio(Operation):
    """The audio track alone: copied when the container allows it, else encoded."""

    op: Literal["extract_audio"]
    container: Literal["auto", "m4a", "mp3", "opus", "ogg", "flac", "wav"] = "auto"
    audio_kbps: int | None = Field(None, ge=16, le=512)


class Faststart(Operation):
    """Rewrite an MP4/MOV with its index first (no re-encoding)."""

    op: Literal["faststart"]


class Trim(Operation):
    """A clip from ``start`` to ``end`` (or for ``duration``) seconds."""

    op: Literal["trim"]
    start: float = Field(0.0, ge=0, le=1e7)
    end: float | None = Field(None, gt=0, le=1e7)
    duration: float | None = Field(None, gt=0, le=1e7)
    accurate: bool = Field(
        False, description="Re-encode for frame accuracy (else cut at keyframes)"
    )

    @model_validator(mode="after")
    def _span(self) -> Trim:
        if (self.end is None) == (self.duration is None):
            raise ValueError("give end or duration")
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def length(self) -> float:
        return self.duration if self.duration is not None else (self.end or 0) - self.start


class Snapshot(Operation):
    """One JPEG frame at ``at`` seconds or ``at_percent`` of the duration (default 10 %)."""

    op: Literal["snapshot"]
    at: float | None = Field(None, ge=0, le=1e7)
    at_percent: float | None = Field(None, ge=0, le=100)
    width: int | None = Field(None, ge=16, le=7680)


class ContactSheet(Operation):
    """A grid of frames spread over the whole video, as one JPEG."""

    op: Literal["contact_sheet"]
    columns: int = Field(4, ge=1, le=12)
    rows: int = Field(4, ge=1, le=12)
    width: int = Field(1280, ge=128, le=7680, description="Width of the whole sheet")


class Rung(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    height: int = Field(ge=144, le=2160)
    video_kbps: int = Field(ge=100, le=50_000)
    audio_kbps: int = Field(128, ge=32, le=320)


DEFAULT_LADDER = (
    Rung(height=1080, video_kbps=5000),
    Rung(height=720, video_kbps=2800),
    Rung(height=480, video_kbps=1400, audio_kbps=96),
    Rung(height=360, video_kbps=800, audio_kbps=96),
)


class Hls(Operation):
    """HLS VOD: a multivariant playlist over several renditions, served by the daemon."""

    op: Literal["hls"]
    renditions: list[Rung] = Field(
        default_factory=lambda: list(DEFAULT_LADDER), min_length=1, max_length=6
    )
    segment_seconds: float = Field(4.0, ge=1, le=12)


class Probe(Operation):
    """Full media facts (streams, codecs, bitrates, duration) as the job's result."""

    op: Literal["probe"]


AnyOperation = Annotated[
    Convert | ExtractAudio | Faststart | Trim | Snapshot | ContactSheet | Hls | Probe,
    Field(discriminator="op"),
]
OPERATION: TypeAdapter[Any] = TypeAdapter(AnyOperation)

BUILTIN_PRESETS: dict[str, dict[str, Any]] = {
    "web-mp4": {"op": "convert", "container": "mp4", "crf": 23, "speed": "medium"},
    "web-720p": {"op": "convert", "container": "mp4", "height": 720, "video_kbps": 2800},
    "webm-vp9": {"op": "convert", "container": "webm"},
    "mp3-192": {"op": "convert", "container": "mp3", "audio_kbps": 192},
    "podcast": {"op": "extract_audio", "container": "mp3", "audio_kbps": 96},
    "hls-abr": {"op": "hls"},
    "thumbnail": {"op": "snapshot", "at_percent": 10, "width": 640},
    "contact-sheet": {"op": "contact_sheet"},
}


def resolve(
    operation: dict[str, Any] | None, preset: str | None, presets: dict[str, dict[str, Any]]
) -> Operation:
    """The operation a request asks for: explicit parameters, or a preset plus overrides."""
    if preset is not None:
        known = {**BUILTIN_PRESETS, **presets}
        if preset not in known:
            raise Problem(
                422,
                "unknown_preset",
                f"no preset {preset[:40]!r} (known: {', '.join(sorted(known))})",
            )
        operation = {**known[preset], **(operation or {})}
    if operation is None:
        raise Problem(422, "operation_required", "send an operation or a preset")
    try:
        op: Operation = OPERATION.validate_python(operation)
    except ValidationError as exc:
        raise validation_problem(exc, "operation") from None
    return op
