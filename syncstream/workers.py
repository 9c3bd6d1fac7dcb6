"""A pool of worker processes for CPU work and untrusted decoders (media probing, thumbnails).

Processes are spawned (not forked from a process running an event loop and threads), started
on first use, and replaced wholesale when a call times out or a worker dies, so one hostile
file cannot leave a stuck decoder behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerPool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, timeout: float, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` in a worker; TimeoutError or BrokenProcessPool (pool replaced)."""
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        pool = self._pool
        try:
            # submit() may spawn worker processes (tens of ms): never on the event loop.
            future = await asyncio.to_thread(pool.submit, call, *args)
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (TimeoutError, BrokenProcessPool):
            self.reset()
            raise

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
