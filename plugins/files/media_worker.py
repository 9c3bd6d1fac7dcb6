"""Media probing and thumbnails. These functions run in worker processes, never on the loop.

Every picture's size is checked before anything is decoded: an image's from its header (Pillow
reads only the header on open; its decompression-bomb warning is an error here), a video's from
the stream parameters, and the video decoder is told the same limit (FFmpeg's ``max_pixels``),
so a stream that grows its picture later is refused too. The worker's address space is capped
(see :class:`syncstream.workers.WorkerPool`): whatever still runs out of it is a refusal, not a
crash. Images are decoded with Pillow (JPEG ``draft`` mode for speed, EXIF orientation
applied); video with PyAV, seeking to the keyframe before ~10 % of the duration and decoding only
up to that point.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageOps

MAX_VIDEO_SIDE = 16384
# The size in Pillow's decompression-bomb message, "Image size (N pixels) exceeds limit of …"
_BOMB_SIZE = re.compile(r"\((\d+) pixels\)")
JPEG_QUALITY = 82
IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"}
)


class MediaError(Exception):
    """The file is not the media it appears to be (``code`` is stable, the text explains)."""

    code = "unreadable_media"


class TooLarge(MediaError):
    """The file's pictures exceed what we decode."""

    code = "media_too_large"


def _reason(exc: BaseException, path: str) -> str:
    """An error's text without the server's file path in it (users see these)."""
    return str(exc).replace(f"'{path}'", "the file").replace(path, "the file")


@contextmanager
def _guarded(path: str, max_pixels: int) -> Iterator[None]:
    """Pillow's pixel budget is ``max_pixels``, and over it is an error (Pillow itself only
    warns up to twice its limit); running out of the worker's memory is a refusal too."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own text names its limit (twice ours when it errs rather than warns):
        # the reason names ours.
        found = _BOMB_SIZE.search(str(exc))
        size = f"{int(found[1])} pixels" if found else "the picture"
        raise TooLarge(f"image too large: {size} is over {max_pixels} pixels") from None
    except MemoryError:
        raise TooLarge("too large to decode within the worker's memory") from None


def _check_size(kind: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooLarge(f"{kind} too large: {width}x{height} is over {max_pixels} pixels")
    if kind == "video" and max(width, height) > MAX_VIDEO_SIDE:
        raise TooLarge(f"video too large: {width}x{height} (sides up to {MAX_VIDEO_SIDE})")


def probe(path: str, mime: str, max_pixels: int) -> dict[str, Any]:
    """Dimensions for images; duration, size, codecs, bitrate, fps for audio and video."""
    with _guarded(path, max_pixels):
        if mime in IMAGE_TYPES:
            return _probe_image(path, max_pixels)
        if mime.startswith(("video/", "audio/")):
            return _probe_av(path, max_pixels)
        return {}


def thumbnails(path: str, mime: str, dest_dir: str, sizes: list[int], max_pixels: int) -> list[int]:
    """Write ``<dest_dir>/<size>.jpg`` (longest edge ``size``) for each size; returns them."""
    with _guarded(path, max_pixels):
        if mime in IMAGE_TYPES:
            picture = _open_image(path, max(sizes), max_pixels)
        elif mime.startswith("video/"):
            picture = _video_frame(path, max_pixels)
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


def _probe_image(path: str, max_pixels: int) -> dict[str, Any]:
    try:
        with Image.open(path) as img:  # reads the header only
            width, height = img.size
            _check_size("image", width, height, max_pixels)
            if _rotated(img):  # EXIF says the picture is shown turned by 90 degrees
                width, height = height, width
            facts: dict[str, Any] = {"width": width, "height": height}
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                facts["frames"] = frames
            return facts
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"not a readable image: {_reason(exc, path)}") from None


def _rotated(img: Image.Image) -> bool:
    return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)


def _open_image(path: str, largest: int, max_pixels: int) -> Image.Image:
    try:
        with Image.open(path) as img:  # reads the header only: the size is known, not decoded
            _check_size("image", *img.size, max_pixels)
            if img.format == "JPEG":
                img.draft("RGB", (largest, largest))  # decode at a reduced scale: much faster
            img.seek(0)
            img.load()
            # Shrink to the largest thumbnail first, so that at most one full-size copy of the
            # picture is ever in memory (palette pictures are first made RGB(A): resizing a
            # palette picture would take the nearest pixels).
            picture = img.convert("RGBA") if img.mode in ("1", "P", "PA") else img
            picture.thumbnail((largest, largest), Image.Resampling.LANCZOS)
            return _flattened(ImageOps.exif_transpose(picture))
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


def _open_av(path: str, max_pixels: int) -> Any:
    """The container, its first video stream's size checked and its decoder told the limit."""
    try:
        container = av.open(path, options={"probesize": "5000000", "analyzeduration": "5000000"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"not readable media: {_reason(exc, path)}") from None
    for stream in container.streams.video:
        ctx = stream.codec_context
        if ctx.width and ctx.height:
            try:
                _check_size("video", ctx.width, ctx.height, max_pixels)
            except MediaError:
                container.close()
                raise
        ctx.options = {"max_pixels": str(max_pixels)}  # a picture growing later is refused
    return container


def _probe_av(path: str, max_pixels: int) -> dict[str, Any]:
    with _open_av(path, max_pixels) as container:
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


def _video_frame(path: str, max_pixels: int) -> Image.Image:
    """A frame at ~10 % of the video (the first frame if seeking fails)."""
    with _open_av(path, max_pixels) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        stream.thread_count = 1
        if not stream.codec_context.width or not stream.codec_context.height:
            raise MediaError("the video stream has no dimensions")
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
