"""HLS VOD packaging: one FFmpeg run encodes every rendition with aligned keyframes into
fMP4 segments and writes a multivariant playlist; the daemon serves the package.

A package lives in ``<data_dir>/plugins/media/packages/<job id>/`` and is served at
``/media/packages/<job id>/<token>/master.m3u8``: the token is a random capability (players
cannot send bearer tokens), shown only to the job's owner. Renditions taller than the source
are skipped (no upscaling); audio-only inputs give one audio rendition.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from syncstream.sdk import Problem, Row

from .commands import Context, Plan
from .operations import Hls, Rung
from .runner import Progress, run

TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".m4s": "video/iso.segment", ".mp4": "video/mp4"}


def ladder(op: Hls, ctx: Context) -> list[Rung]:
    """The renditions to make: those not taller than the source (at least the smallest)."""
    video = ctx.stream("video")
    if video is None:
        return []
    rungs = sorted(op.renditions, key=lambda r: r.height, reverse=True)
    fitting = [r for r in rungs if r.height <= video["height"]]
    return fitting or [rungs[-1].model_copy(update={"height": video["height"] // 2 * 2})]


def command(op: Hls, ctx: Context, out: Path) -> list[str]:
    rungs = ladder(op, ctx)
    audio = ctx.stream("audio") is not None
    fps = (ctx.stream("video") or {}).get("fps") or 30
    gop = max(1, round(fps * op.segment_seconds))
    argv = ctx.head()
    streams: list[str] = []
    if rungs:
        split = "".join(f"[v{i}]" for i in range(len(rungs)))
        graph = [f"[0:v:0]split={len(rungs)}{split}"]
        graph += [f"[v{i}]scale=-2:{r.height},format=yuv420p[o{i}]" for i, r in enumerate(rungs)]
        argv += ["-filter_complex", ";".join(graph)]
        for i, rung in enumerate(rungs):
            argv += ["-map", f"[o{i}]", f"-c:v:{i}", "libx264", f"-b:v:{i}", f"{rung.video_kbps}k"]
            argv += [f"-maxrate:v:{i}", f"{rung.video_kbps * 3 // 2}k"]
            argv += [f"-bufsize:v:{i}", f"{rung.video_kbps * 2}k"]
            if audio:
                argv += ["-map", "0:a:0", f"-c:a:{i}", "aac", f"-b:a:{i}", f"{rung.audio_kbps}k"]
                streams.append(f"v:{i},a:{i},name:{rung.height}p")
            else:
                streams.append(f"v:{i},name:{rung.height}p")
        argv += [
            "-preset",
            "veryfast",
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
        ]
    else:
        argv += ["-map", "0:a:0", "-c:a:0", "aac", "-b:a:0", "128k"]
        streams.append("a:0,name:audio")
    if ctx.threads:
        argv += ["-threads", str(ctx.threads)]
    return [
        *argv,
        "-f",
        "hls",
        "-hls_time",
        f"{op.segment_seconds:g}",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4",
        "-hls_flags",
        "independent_segments",
        "-master_pl_name",
        "master.m3u8",
        "-var_stream_map",
        " ".join(streams),
        "-hls_segment_filename",
        str(out / "%v" / "seg%05d.m4s"),
        str(out / "%v" / "index.m3u8"),
    ]


class HlsPackager:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str) -> Path:
        return self.root / job_id

    async def package(
        self,
        op: Hls,
        ctx: Context,
        row: Row,
        *,
        timeout: float,
        on_progress: Callable[[Progress], None],
        cancelled: asyncio.Event,
    ) -> dict[str, Any]:
        """Make the package in the work directory, then move it into place."""
        out = ctx.work / "hls"
        await asyncio.to_thread(out.mkdir)
        steps = Plan([command(op, ctx, out)], [], ctx.duration)
        await run(steps, timeout=timeout, on_progress=on_progress, cancelled=cancelled)
        if not (out / "master.m3u8").exists():
            raise Problem(500, "no_output", "FFmpeg wrote no master playlist")
        token = secrets.token_urlsafe(18)
        target = self.path(row["id"])
        await asyncio.to_thread(shutil.rmtree, target, True)
        await asyncio.to_thread(shutil.move, str(out), str(target))
        renditions = sorted(p.name for p in target.iterdir() if p.is_dir())
        return {
            "url": f"/media/packages/{row['id']}/{token}/master.m3u8",
            "token": token,
            "renditions": renditions,
        }

    async def delete(self, job_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.path(job_id), True)


def register_package_routes(
    app: web.Application, packager: HlsPackager, token_of: Callable[[str], Any]
) -> None:
    """``/media/packages/<job>/<token>/<file>``: playlists and segments, CORS-open, cacheable."""

    async def serve(request: web.Request) -> web.StreamResponse:
        job_id, token = request.match_info["job_id"], request.match_info["token"]
        expected = await token_of(job_id)
        if expected is None or not secrets.compare_digest(expected, token):
            raise Problem(404, "package_not_found", "no such package")
        relative = request.match_info["path"]
        base = packager.path(job_id).resolve()
        target = (base / relative).resolve()
        if base not in target.parents or not target.is_file() or target.suffix not in TYPES:
            raise Problem(404, "not_found", "no such file in the package")
        cache = "no-cache" if target.suffix == ".m3u8" else "public, max-age=31536000, immutable"
        return web.FileResponse(
            target,
            headers={
                "Content-Type": TYPES[target.suffix],
                "Cache-Control": cache,
                "Access-Control-Allow-Origin": "*",
            },
        )

    app.router.add_get(
        "/media/packages/{job_id:[0-9a-f]{32}}/{token:[A-Za-z0-9_-]{16,64}}/{path:[A-Za-z0-9_./-]{1,200}}",
        serve,
    )
