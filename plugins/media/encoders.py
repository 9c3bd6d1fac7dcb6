"""Which video encoders this node can use: software always, hardware when it really works.

FFmpeg builds list hardware encoders whether or not the machine has the device, so each
candidate family is tried with a one-frame test encode at start-up; ``hardware: auto`` takes
the first that works (NVENC, then VAAPI, then Quick Sync), a named family is used only if it
works (otherwise a warning and software), ``off`` never tries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from syncstream.sdk import bound

log = structlog.get_logger(__name__)

SOFTWARE = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
FAMILIES = ("nvenc", "vaapi", "qsv")


@dataclass
class Encoders:
    """The encoder per video codec, and what detection found (for ``GET /api/media/encoders``)."""

    video: dict[str, str] = field(default_factory=lambda: dict(SOFTWARE))
    family: str = "software"
    vaapi_device: str = ""
    found: dict[str, str] = field(default_factory=dict)  # family -> "works" | reason

    def hw_input_args(self, encoder: str) -> list[str]:
        """Global options a hardware encoder needs before the input."""
        if encoder.endswith("_vaapi"):
            return ["-vaapi_device", self.vaapi_device]
        if encoder.endswith("_qsv"):
            return ["-init_hw_device", "qsv=hw", "-filter_hw_device", "hw"]
        return []

    @staticmethod
    def upload_filter(encoder: str) -> list[str]:
        """Filters that hand software frames to a hardware encoder."""
        if encoder.endswith("_vaapi"):
            return ["format=nv12", "hwupload"]
        if encoder.endswith("_qsv"):
            return ["format=nv12", "hwupload=extra_hw_frames=64"]
        return []


async def _run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *bound(args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 1, "timed out"
    return proc.returncode or 0, (out + err).decode(errors="replace")


async def _works(family: str, vaapi_device: str) -> str:
    """'works', or why not."""
    encoders = Encoders(vaapi_device=vaapi_device)
    encoder = f"h264_{family}"
    code, text = await _run(
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        *encoders.hw_input_args(encoder),
        "-f",
        "lavfi",
        "-i",
        "color=size=256x256:rate=10:duration=0.2",
        "-vf",
        ",".join(["format=yuv420p", *Encoders.upload_filter(encoder)]),
        "-frames:v",
        "2",
        "-c:v",
        encoder,
        "-f",
        "null",
        "-",
    )
    if code == 0:
        return "works"
    last = [line for line in text.strip().splitlines() if line.strip()]
    return (last[-1] if last else f"exit {code}")[:200]


async def detect(hardware: str, vaapi_device: str) -> Encoders:
    """Test the hardware families the config allows; software where none works."""
    encoders = Encoders(vaapi_device=vaapi_device)
    code, listing = await _run("ffmpeg", "-hide_banner", "-encoders")
    if code != 0:
        raise RuntimeError("ffmpeg is not installed or does not run (apt-get install ffmpeg)")
    if hardware == "off":
        return encoders
    wanted = FAMILIES if hardware == "auto" else (hardware,)
    for family in wanted:
        if f" h264_{family} " not in listing:
            encoders.found[family] = "not in this FFmpeg build"
            continue
        encoders.found[family] = await _works(family, vaapi_device)
        if encoders.found[family] == "works":
            encoders.family = family
            encoders.video["h264"] = f"h264_{family}"
            if f" hevc_{family} " in listing:
                encoders.video["hevc"] = f"hevc_{family}"
            break
    if hardware not in ("auto", "off") and encoders.family == "software":
        log.warning("media.hardware_unavailable", wanted=hardware, reason=encoders.found)
    return encoders
