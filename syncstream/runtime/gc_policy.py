"""How the server runs Python's garbage collector.

A full collection is the event loop's longest pause (~80 ms with 1,000 chess games and
2,000 sockets), and each one walks the same long-lived objects again: sockets, games, what
start-up made. So what survives a full collection is frozen — moved out of the collector's
generations — and the next full collection walks only what came since. Objects die as usual
while frozen (reference counting frees them); only cycles among them wait (a closed
WebSocket leaves ~36 such objects): everything is unfrozen and collected once, and frozen
again, every ``sweep_seconds`` or sooner once the heap has grown by ``growth`` since the
last sweep (CPython's own rule for a full collection is a quarter of the old generation).
The heap is measured in pymalloc blocks (``sys.getallocatedblocks``: a walk of its arenas,
~30 µs); the frozen set's size would be a walk of the list itself, ~10 ms at 300k objects,
a pause of its own every check.

The young generation is collected every ``young_seconds`` (0.1 s) by the policy too.
CPython starts one when allocations minus frees pass 700, and a server in a steady state
frees about as much as it allocates (each move's new history entry replaces an old one),
so young collections came about once a second and then walked everything that survived it
(1,000 games: 6-20k objects, 1-4 ms). Ten a second walk a tenth each; the total is the same.

The middle generation is collected every 50 young collections instead of 10: it held
mostly objects that live for seconds and then die by reference counting (then: each
socket's pending read), walked again by every middle collection (1,000 games: 35
collections of ~7 ms per 30 s; at 50: 9 of ~15 ms, p99 14.5-17.8 -> 6.1-6.9 ms).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

import structlog

log = structlog.get_logger(__name__)
MIDDLE_EVERY = 50  # young collections per middle-generation collection (CPython: 10)


class GcPolicy:
    def __init__(
        self,
        sweep_seconds: float,
        *,
        growth: float = 1.0,
        check_seconds: float = 10.0,
        young_seconds: float = 0.1,
    ) -> None:
        self.sweep_seconds = sweep_seconds
        self.young_seconds = young_seconds
        self.growth = growth
        self.check_seconds = min(check_seconds, sweep_seconds)
        self._thresholds = gc.get_threshold()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._young: asyncio.Task[None] | None = None
        self._started = (0.0, 0)  # when start() ran, and the heap's size then (blocks)

    def start(self) -> None:
        """Freeze what lives now (start-up's objects) and every full collection's survivors."""
        self._loop = asyncio.get_running_loop()
        gc.collect()
        gc.freeze()
        self._started = (time.monotonic(), sys.getallocatedblocks())
        young, _, old = self._thresholds
        gc.set_threshold(young, MIDDLE_EVERY, old)
        gc.callbacks.append(self._on_gc)
        self._sweeper = self._loop.create_task(self._sweep_periodically())
        self._young = self._loop.create_task(self._collect_young())

    async def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        for task in (self._sweeper, self._young):
            if task is not None:
                task.cancel()
        gc.set_threshold(*self._thresholds)
        # What is frozen stays so: the process ends, or (tests) the next server starts by
        # freezing everything anyway — unfreezing would make each start walk it all again.

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2 and self._loop is not None:
            self._loop.call_soon(gc.freeze)  # not from inside the collector

    async def _collect_young(self) -> None:
        while True:
            await asyncio.sleep(self.young_seconds)
            gc.collect(0)

    async def _sweep_periodically(self) -> None:
        swept_at, base = self._started  # measured in start(), before anything else ran
        while True:
            await asyncio.sleep(self.check_seconds)
            blocks = sys.getallocatedblocks()
            if time.monotonic() - swept_at < self.sweep_seconds and blocks <= base * (
                1 + self.growth
            ):
                continue
            started = time.perf_counter()
            gc.unfreeze()
            collected = gc.collect()
            gc.freeze()  # the survivors, at once (the callback's freeze comes a turn later)
            swept_at, base = time.monotonic(), sys.getallocatedblocks()
            log.info(
                "gc.swept", blocks_before=blocks, blocks_after=base, collected=collected,
                pause_ms=round((time.perf_counter() - started) * 1000, 1),
            )  # fmt: skip
