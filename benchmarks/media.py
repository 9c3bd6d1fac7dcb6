"""Media jobs: the job system's overhead over plain FFmpeg, jobs/hour, and event-loop lag.

1. The same transcode (720p30 H.264 + AAC source -> MP4 H.264 CRF 23 ``veryfast`` + AAC,
   faststart) run by ``ffmpeg`` on the command line and as a job (submitted over HTTP, timed
   from ``created_at`` to ``finished_at``: queueing, probing, FFmpeg, storing the output).
   Overhead ratio = job time / FFmpeg time (target <= 1.05).
2. A batch of short jobs at the configured concurrency: jobs per hour.
3. The node's event-loop lag (``/metrics``, scraped every 0.5 s) while jobs run (p99, max).
Needs ffmpeg; it installs nothing.

    python -m benchmarks.media --seconds 60 --batch 8 --concurrency 2
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from .harness import (
    LagSampler,
    create_admin,
    login,
    percentile,
    require,
    save,
    start_node,
    stop,
    table,
    temp_dir,
    write_config,
)

OPERATION = {"op": "convert", "container": "mp4", "crf": 23, "speed": "veryfast"}


def make_source(path: Path, seconds: int, size: str) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M", "-g", "60",
         "-c:a", "aac", "-b:a", "128k", str(path)],
        check=True,
    )  # fmt: skip


def plain_ffmpeg(source: Path, out: Path) -> float:
    """The job's transcode, typed by hand: seconds."""
    start = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-map", "0:v:0?", "-map", "0:a:0?",
         "-c:v", "libx264", "-vf", "format=yuv420p", "-preset", "veryfast", "-crf", "23",
         "-c:a", "aac", "-movflags", "+faststart", str(out)],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - start


async def upload(session: aiohttp.ClientSession, url: str, token: str, path: Path) -> str:
    form = aiohttp.FormData()
    form.add_field("file", await asyncio.to_thread(path.read_bytes), filename=path.name)
    async with session.post(
        url + "/api/files", data=form, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        body = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"upload failed: {body}")
        return str(body["files"][0]["id"])


async def run_jobs(url: str, token: str, file_id: str, count: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        ids = []
        for _ in range(count):
            async with session.post(
                url + "/api/media/jobs", json={"file_id": file_id, "operation": OPERATION}
            ) as resp:
                body = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"job refused: {body}")
                ids.append(body["id"])
        done: dict[str, dict[str, Any]] = {}
        while len(done) < len(ids):
            await asyncio.sleep(0.2)
            for job_id in ids:
                if job_id in done:
                    continue
                async with session.get(url + f"/api/media/jobs/{job_id}") as resp:
                    job = await resp.json()
                if job["status"] in ("done", "failed", "canceled"):
                    if job["status"] != "done":
                        raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
                    done[job_id] = job
        return [done[i] for i in ids]


def seconds_between(a: str, b: str) -> float:
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(b) - parse(a)).total_seconds()


async def measure(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    token = await login(url)
    big, small = tmp / "source.mp4", tmp / "short.mp4"
    make_source(big, args.seconds, "1280x720")
    make_source(small, 10, "854x480")
    async with aiohttp.ClientSession() as session:
        big_id = await upload(session, url, token, big)
        small_id = await upload(session, url, token, small)
    plain = [plain_ffmpeg(big, tmp / "plain.mp4") for _ in range(args.rounds)]
    with LagSampler([url]) as lag:
        single = []
        for _ in range(args.rounds):
            (job,) = await run_jobs(url, token, big_id, 1)
            single.append(seconds_between(job["created_at"], job["finished_at"]))
        start = time.perf_counter()
        batch = await run_jobs(url, token, small_id, args.batch)
        wall = time.perf_counter() - start
    lags = sorted(lag.samples)
    return {
        "plain_ffmpeg_s": min(plain),
        "job_s": min(single),
        "overhead_ratio": min(single) / min(plain),
        "batch_jobs": len(batch),
        "batch_wall_s": wall,
        "jobs_per_hour": len(batch) / wall * 3600,
        "loop_lag_p99_ms": 1000 * (percentile(lags, 99) or 0),
        "loop_lag_max_ms": 1000 * max(lags, default=0),
        "lag_samples": len(lags),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="length of the 720p source")
    parser.add_argument("--rounds", type=int, default=2, help="runs of the single transcode")
    parser.add_argument("--batch", type=int, default=8, help="short jobs in the batch")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    require("ffmpeg", "apt-get install ffmpeg")
    with temp_dir() as tmp:
        config = write_config(
            tmp,
            f"plugins: {{media: {{concurrency: {args.concurrency},"
            f" per_user_running: {args.concurrency}, per_user_queued: 100}}}}\n",
        )
        create_admin(config)
        node = start_node(config)
        try:
            result = asyncio.run(measure(node.url, tmp, args))
        finally:
            stop(node.proc)
    print(
        table(
            [
                ["measure", "value"],
                [f"plain ffmpeg, {args.seconds} s 720p (s)", round(result["plain_ffmpeg_s"], 2)],
                ["same transcode as a job (s)", round(result["job_s"], 2)],
                ["overhead ratio (job / ffmpeg)", round(result["overhead_ratio"], 3)],
                [
                    f"jobs/hour ({args.batch} x 10 s 480p, {args.concurrency} at once)",
                    round(result["jobs_per_hour"]),
                ],
                [
                    "event-loop lag p99 / max (ms)",
                    f"{result['loop_lag_p99_ms']:.1f} / {result['loop_lag_max_ms']:.1f}",
                ],
            ]
        )
    )
    save("media", {"args": vars(args), **result})


if __name__ == "__main__":
    main()
