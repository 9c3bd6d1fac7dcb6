"""Media facts via PyAV, run in a worker process (a hostile file can hang or crash a demuxer;
it must not take the event loop with it). Also the gate every job's input passes first."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

# Demuxers an input may use. Playlist and list formats (hls, concat, ...) are refused: they
# could make FFmpeg read other files on the server.
DEMUXERS = frozenset(
    {
        "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "flv", "mpegts",
        "mp3", "ogg", "wav", "flac", "aac", "asf", "mpeg", "mpegvideo", "h264", "hevc", "m4v",
        "caf", "aiff", "amr", "ac3", "eac3", "dts", "w64", "nut", "ivf", "yuv4mpegpipe", "wv",
    }
)  # fmt: skip


class ProbeError(Exception):
    """The input cannot be a job's input; ``code`` is the problem code, ``str`` the reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)  # both in args: it crosses the process boundary
        self.code = code

    def __str__(self) -> str:
        return str(self.args[1])


def _rate(value: Fraction | None) -> float | None:
    return round(float(value), 3) if value else None


def probe(path: str, max_pixels: int) -> dict[str, Any]:
    """Format, duration, bitrate and every stream; ProbeError for anything unusable."""
    try:
        container = av.open(path, options={"probesize": "20000000", "analyzeduration": "20000000"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ProbeError("not_media", f"not a media file FFmpeg can read ({reason})") from None
    with container:
        names = set(container.format.name.split(","))
        if not names & DEMUXERS:
            raise ProbeError(
                "format_unsupported", f"input format {container.format.name!r} is not accepted"
            )
        streams = []
        for stream in container.streams:
            ctx: Any = stream.codec_context  # video or audio context, by stream type
            codec = ctx.codec.canonical_name  # "mp3", not the decoder's "mp3float"
            info: dict[str, Any] = {"index": stream.index, "type": stream.type, "codec": codec}
            if stream.duration and stream.time_base:
                info["duration"] = round(float(stream.duration * stream.time_base), 3)
            if ctx.bit_rate:
                info["bit_rate"] = ctx.bit_rate
            if stream.type == "video":
                if not ctx.width or not ctx.height:
                    raise ProbeError("corrupt_media", "a video stream has no picture size")
                if ctx.width * ctx.height > max_pixels:
                    raise ProbeError(
                        "media_too_large",
                        f"the video is {ctx.width}x{ctx.height}, over {max_pixels} pixels",
                    )
                info |= {
                    "width": ctx.width,
                    "height": ctx.height,
                    "pix_fmt": ctx.pix_fmt,
                    "fps": _rate(stream.average_rate or stream.guessed_rate),
                    "profile": ctx.profile,
                }
            elif stream.type == "audio":
                info |= {
                    "sample_rate": ctx.sample_rate,
                    "channels": ctx.channels,
                    "layout": ctx.layout.name if ctx.layout else None,
                }
            language = stream.metadata.get("language")
            if language:
                info["language"] = language
            streams.append(info)
        if not any(s["type"] in ("video", "audio") for s in streams):
            raise ProbeError("no_media_streams", "the file has no audio or video stream")
        duration = container.duration / av.time_base if container.duration else None
        if duration is None:
            known = [s["duration"] for s in streams if "duration" in s]
            duration = max(known) if known else None
        return {
            "format": container.format.name,
            "format_long": container.format.long_name,
            "duration": round(duration, 3) if duration else None,
            "bit_rate": container.bit_rate or None,
            "streams": streams,
            "tags": {k: v for k, v in list(container.metadata.items())[:20]},
        }
