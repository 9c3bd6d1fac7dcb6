"""A pool of worker processes for CPU work and untrusted decoders (media probing, thumbnails).

Processes are spawned (not forked from a process running an event loop and threads), started
on first use, and replaced wholesale when a call times out or a worker dies, so one hostile
file cannot leave a stuck decoder behind. Each worker runs below the daemon's priority, with
its address space capped (a decoder that still tries to allocate a huge picture fails with
MemoryError instead of taking the machine's memory), and is killed by the kernel when the
daemon dies (:mod:`syncstream.children`). Workers are spawned from one dedicated thread that
lives as long as the pool: the kernel's parent-death signal follows the forking thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from .children import die_with_parent
from .runtime import process_pool
from .runtime.seams import SEAMS

T = TypeVar("T")
NICENESS = 10  # below the daemon: its event loop gets the CPU first


def _start_worker(parent: int, niceness: int, memory_bytes: int) -> None:
    """A worker's initializer: die with the daemon, yield the CPU, cap the address space."""
    die_with_parent(parent)
    os.nice(niceness)
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


class WorkerPool:
    def __init__(self, workers: int, memory_bytes: int = 0) -> None:
        """``workers`` processes, each capped at ``memory_bytes`` of address space (0: none)."""
        self.workers = workers
        self.memory_bytes = memory_bytes
        self._can_kill = SEAMS.record("process_pool_kill", True, process_pool.problem())
        self._pool: ProcessPoolExecutor | None = None
        # Creating the pool starts multiprocessing's resource tracker and submit() may spawn
        # workers (tens of milliseconds each): never on the event loop, always on this thread.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="syncstream-workers")

    async def run(self, timeout: float, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` in a worker; TimeoutError or BrokenProcessPool (pool replaced)."""
        loop = asyncio.get_running_loop()
        try:
            future: Future[T] = await loop.run_in_executor(self._spawner, self._submit, call, args)
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (TimeoutError, BrokenProcessPool):
            self.reset()
            raise

    def _submit(self, call: Callable[..., T], args: tuple[Any, ...]) -> Future[T]:
        for _ in range(2):
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(os.getpid(), NICENESS, self.memory_bytes),
                )
            try:
                return self._pool.submit(call, *args)
            except RuntimeError:  # reset (shut down) or broken meanwhile: once more, fresh
                self._pool = None
        raise BrokenProcessPool("the worker pool could not take the call")

    def reset(self) -> None:
        """Kill every worker; the next call starts fresh ones."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not self._can_kill:
            pool.shutdown(wait=False, cancel_futures=True)  # its workers finish their calls
            return
        workers = process_pool.processes(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.kill()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(self._spawner.shutdown, wait=True)
