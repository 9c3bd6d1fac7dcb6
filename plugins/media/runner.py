"""Runs a job's FFmpeg passes as subprocesses, reading ``-progress`` for percent, speed, ETA.

Each pass runs in its own process group; cancelling or timing out kills the group (SIGKILL),
so no encoder outlives its job. The event loop only reads short progress lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncstream.children import bound

from .commands import Plan

STDERR_TAIL = 4000
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
    stderr = asyncio.create_task(proc.stderr.read())
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
        if code != 0:
            err = (await stderr).decode(errors="replace").strip()[-STDERR_TAIL:]
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
