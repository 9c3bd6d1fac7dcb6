"""A pool of worker processes for CPU work and untrusted decoders (media probing, thumbnails).

Processes are spawned (not forked from a process running an event loop and threads), started
on first use, and replaced wholesale when a call times out or a worker dies, so one hostile
file cannot leave a stuck decoder behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
NICENESS = 10  # below the daemon: its event loop gets the CPU first


class WorkerPool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, timeout: float, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` in a worker; TimeoutError or BrokenProcessPool (pool replaced)."""
        if self._pool is None:
            # Making the pool starts multiprocessing's resource tracker, and submit() may
            # spawn workers: tens of milliseconds each, so never on the event loop.
            self._pool = await asyncio.to_thread(self._new_pool)
        pool = self._pool
        try:
            future = await asyncio.to_thread(pool.submit, call, *args)
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (TimeoutError, BrokenProcessPool):
            self.reset()
            raise

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=os.nice, initargs=(NICENESS,)
        )

    def reset(self) -> None:
        """Kill every worker; the next call starts fresh ones."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
