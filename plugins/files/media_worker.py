"""Media probing and thumbnails. These functions run in worker processes, never on the loop.

Images are decoded with Pillow (with a pixel budget against decompression bombs, JPEG
``draft`` mode for speed, EXIF orientation applied); video with PyAV, seeking to the
keyframe before ~10 % of the duration and decoding only up to that point.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageOps

MAX_PIXELS = 100_000_000
MAX_VIDEO_SIDE = 16384
JPEG_QUALITY = 82
IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"}
)

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class MediaError(Exception):
    """The file is not the media it appears to be, or exceeds what we decode."""


def _reason(exc: BaseException, path: str) -> str:
    """An error's text without the server's file path in it (users see these)."""
    return str(exc).replace(f"'{path}'", "the file").replace(path, "the file")


def probe(path: str, mime: str) -> dict[str, Any]:
    """Dimensions for images; duration, size, codecs, bitrate, fps for audio and video."""
    if mime in IMAGE_TYPES:
        return _probe_image(path)
    if mime.startswith(("video/", "audio/")):
        return _probe_av(path)
    return {}


def thumbnails(path: str, mime: str, dest_dir: str, sizes: list[int]) -> list[int]:
    """Write ``<dest_dir>/<size>.jpg`` (longest edge ``size``) for each size; returns them."""
    if mime in IMAGE_TYPES:
        picture = _open_image(path, max(sizes))
    elif mime.startswith("video/"):
        picture = _video_frame(path)
    else:
        return []
    os.makedirs(dest_dir, exist_ok=True)
    written = []
    for size in sorted(sizes, reverse=True):
        picture = picture.copy()
        picture.thumbnail((size, size), Image.Resampling.LANCZOS)
        target = Path(dest_dir) / f"{size}.jpg"
        tmp = target.with_suffix(".tmp")
        picture.save(tmp, "JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, target)
        written.append(size)
    return sorted(written)


def _probe_image(path: str) -> dict[str, Any]:
    try:
        with Image.open(path) as img:
            width, height = img.size
            if _rotated(img):  # EXIF says the picture is shown turned by 90 degrees
                width, height = height, width
            facts: dict[str, Any] = {"width": width, "height": height}
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                facts["frames"] = frames
            return facts
    except Image.DecompressionBombError as exc:
        raise MediaError(f"image too large: {_reason(exc, path)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"not a readable image: {_reason(exc, path)}") from None


def _rotated(img: Image.Image) -> bool:
    return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)


def _open_image(path: str, largest: int) -> Image.Image:
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (largest, largest))  # decode at a reduced scale: much faster
            img.seek(0)
            img.load()
            return _flattened(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError as exc:
        raise MediaError(f"image too large: {_reason(exc, path)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"not a readable image: {_reason(exc, path)}") from None


def _flattened(img: Image.Image) -> Image.Image:
    """RGB, with any transparency laid on white."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB")


def _open_av(path: str) -> Any:
    try:
        return av.open(path, options={"probesize": "5000000", "analyzeduration": "5000000"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"not readable media: {_reason(exc, path)}") from None


def _probe_av(path: str) -> dict[str, Any]:
    with _open_av(path) as container:
        facts: dict[str, Any] = {}
        duration = None
        if container.duration:
            duration = container.duration / av.time_base
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError("no audio or video stream")
        if video is not None:
            ctx = video.codec_context
            if not ctx.width or not ctx.height:
                raise MediaError("the video stream has no dimensions")
            if max(ctx.width, ctx.height) > MAX_VIDEO_SIDE:
                raise MediaError(f"video too large: {ctx.width}x{ctx.height}")
            facts |= {"width": ctx.width, "height": ctx.height, "video_codec": ctx.name}
            rate = video.average_rate or video.guessed_rate
            if rate:
                facts["fps"] = round(float(rate), 3)
            if duration is None and video.duration and video.time_base:
                duration = float(video.duration * video.time_base)
        if audio is not None:
            facts |= {"audio_codec": audio.codec_context.name}
            facts["sample_rate"] = audio.codec_context.sample_rate
            if duration is None and audio.duration and audio.time_base:
                duration = float(audio.duration * audio.time_base)
        if duration is not None:
            facts["duration"] = round(duration, 3)
        if container.bit_rate:
            facts["bitrate"] = container.bit_rate
        return facts


def _video_frame(path: str) -> Image.Image:
    """A frame at ~10 % of the video (the first frame if seeking fails)."""
    with _open_av(path) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        stream.thread_count = 1
        ctx = stream.codec_context
        if ctx.width and ctx.height and max(ctx.width, ctx.height) > MAX_VIDEO_SIDE:
            raise MediaError(f"video too large: {ctx.width}x{ctx.height}")
        target = None
        if container.duration and stream.time_base:
            seconds = container.duration / av.time_base * 0.1
            target = int(Fraction(seconds) / stream.time_base)
            try:
                container.seek(target, stream=stream, backward=True)
            except av.FFmpegError:
                container.seek(0)
                target = None
        chosen = None
        try:
            for frame in container.decode(stream):
                chosen = frame
                if target is None or frame.pts is None or frame.pts >= target:
                    break
        except av.FFmpegError as exc:
            if chosen is None:
                raise MediaError(f"undecodable video: {_reason(exc, path)}") from None
        if chosen is None:
            raise MediaError("the video has no decodable frame")
        picture: Image.Image = chosen.to_image()
        return picture
