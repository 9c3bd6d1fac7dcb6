"""Runs a job's FFmpeg passes as subprocesses, reading ``-progress`` for percent, speed, ETA.

Each pass runs in its own process group; cancelling or timing out kills the group (SIGKILL),
so no encoder outlives its job, and the kernel kills it if the node dies (even by ``kill -9``:
see :mod:`syncstream.children`). The event loop only reads short progress lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncstream.sdk import bound

from .commands import Plan

STDERR_TAIL = 4000
# What FFmpeg's decoders log when a picture is over ``-max_pixels``: they drop it and go on,
# so the job must be failed here rather than finish with the pictures before it.
TOO_LARGE = "exceeds specified max pixel count"
# Encoders run below the daemon's priority: on a busy machine the event loop (WebSockets,
# live ingest, HTTP) gets the CPU first and FFmpeg takes what is left.
NICENESS = 19


@dataclass
class Progress:
    percent: float
    speed: float | None  # x realtime
    eta: float | None  # seconds


class JobFailed(Exception):
    """FFmpeg failed, was killed or ran out of time (``code`` for the problem)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _parse(line: str, state: dict[str, float]) -> bool:
    """Update ``state`` from one ``key=value`` progress line; True at the end of a block."""
    key, _, value = line.partition("=")
    if key in ("out_time_us", "out_time_ms"):  # both are microseconds in FFmpeg 5
        with contextlib.suppress(ValueError):
            state["time"] = max(0.0, int(value) / 1e6)
    elif key == "speed":
        with contextlib.suppress(ValueError):
            state["speed"] = float(value.rstrip("x"))
    return key == "progress"


async def _stderr_tail(stream: asyncio.StreamReader, seen: set[str]) -> str:
    """The last ``STDERR_TAIL`` characters FFmpeg wrote (it may write without end); adds
    ``TOO_LARGE`` to ``seen`` if a decoder refused a picture."""
    tail = ""
    while chunk := await stream.read(1 << 16):
        text = chunk.decode(errors="replace")
        if TOO_LARGE in tail[-len(TOO_LARGE) :] + text:
            seen.add(TOO_LARGE)
        tail = (tail + text)[-STDERR_TAIL:]
    return tail


async def run(
    plan: Plan,
    *,
    timeout: float,
    on_progress: Callable[[Progress], None],
    cancelled: asyncio.Event,
) -> None:
    """Run every pass; raise :class:`JobFailed` on error, cancellation or timeout."""
    deadline = time.monotonic() + timeout
    weights = plan.weights or [1.0 / len(plan.passes)] * len(plan.passes)
    done = 0.0
    for argv, weight in zip(plan.passes, weights, strict=True):
        await _run_pass(argv, plan.seconds, done, weight, deadline, on_progress, cancelled)
        done += weight
    on_progress(Progress(100.0, None, 0.0))


async def _run_pass(
    argv: list[str],
    seconds: float | None,
    done: float,
    weight: float,
    deadline: float,
    on_progress: Callable[[Progress], None],
    cancelled: asyncio.Event,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *bound(["nice", "-n", str(NICENESS), *argv]),  # killed if the node dies
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: killed as a whole
    )
    assert proc.stdout is not None and proc.stderr is not None
    seen: set[str] = set()
    stderr = asyncio.create_task(_stderr_tail(proc.stderr, seen))
    state: dict[str, float] = {}
    started = time.monotonic()

    async def read_progress() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            if _parse(line.decode(errors="replace").strip(), state) and seconds:
                fraction = min(1.0, state.get("time", 0.0) / seconds)
                speed = state.get("speed") or (
                    state.get("time", 0.0) / max(1e-3, time.monotonic() - started)
                )
                eta = max(0.0, seconds - state.get("time", 0.0)) / speed if speed else None
                on_progress(Progress(100 * (done + weight * fraction), speed or None, eta))

    reader = asyncio.create_task(read_progress())
    stop = asyncio.create_task(cancelled.wait())
    try:
        finished, _ = await asyncio.wait(
            {reader, stop},
            timeout=max(0.0, deadline - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if stop in finished:
            raise JobFailed("canceled", "the job was cancelled")
        if not finished:
            raise JobFailed("timeout", "the job ran out of time (the worker was killed)")
        code = await proc.wait()
        err = (await stderr).strip()
        if TOO_LARGE in seen:
            raise JobFailed("media_too_large", "a picture in the input is over the size limit")
        if code != 0:
            lines = [line for line in err.splitlines() if line.strip()]
            raise JobFailed("ffmpeg_failed", lines[-1] if lines else f"FFmpeg exited with {code}")
    finally:
        stop.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        reader.cancel()
        stderr.cancel()
        await asyncio.gather(reader, stderr, stop, return_exceptions=True)
