"""Runs queued jobs on this node: claims them, keeps their leases, reports progress.

Inputs are checked again when a job starts (the user may have lost access meanwhile), probed
in a worker process (format allow-list, picture size, streams), then FFmpeg runs in a work
directory; only a job that succeeded adds its outputs to the file store, so a failed or
killed job leaves nothing half-written behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import structlog

from syncstream.sdk import BrokerUnavailable, EventBus, FileStore, Gateway, Problem, Row, WorkerPool

from . import probe as probing
from .commands import CommandError, Context, plan
from .config import Config
from .encoders import Encoders
from .jobs import Jobs, public
from .operations import OPERATION, Hls, Probe
from .runner import JobFailed, Progress, run
from .vod_package import HlsPackager

log = structlog.get_logger(__name__)
PROBE_TIMEOUT = 60.0


class Worker:
    def __init__(
        self,
        *,
        config: Config,
        jobs: Jobs,
        files: FileStore,
        bus: EventBus,
        gateway: Gateway,
        encoders: Encoders,
        scratch: Path,
        packager: HlsPackager,
        single_node: bool,
    ) -> None:
        self.config, self.jobs, self.files = config, jobs, files
        self.bus, self.gateway, self.encoders = bus, gateway, encoders
        self.scratch, self.packager, self.single_node = scratch, packager, single_node
        self.running: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._pool = WorkerPool(1, config.worker_memory_mb << 20)
        self._loops: list[asyncio.Task[None]] = []
        scratch.mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        if self.single_node:  # nobody else can be running this store's jobs
            for row in await self.jobs.recover(self.config.max_attempts, everyone=True):
                await self._announce(row)
        await self._clear_scratch()
        self._loops = [
            asyncio.create_task(self._schedule()),
            asyncio.create_task(self._keep_leases()),
        ]

    async def _clear_scratch(self) -> None:
        """Remove the work directories a killed run of this node left behind (a retry starts
        from nothing), keeping those of jobs another node sharing this directory runs."""
        names = await asyncio.to_thread(lambda: [p.name for p in self.scratch.iterdir()])
        for name in names:
            if not await self.jobs.running_elsewhere(name):
                await asyncio.to_thread(shutil.rmtree, self.scratch / name, True)

    def wake(self) -> None:
        self._wake.set()

    def cancel_local(self, job_id: str) -> None:
        event = self.running.get(job_id)
        if event is not None:
            event.set()

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        for event in self.running.values():
            event.set()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        await self._pool.close()

    # -- scheduling -------------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            try:
                while len(self.running) < self.config.concurrency:
                    row = await self.jobs.claim(
                        self.config.per_user_running, self.config.lease_seconds
                    )
                    if row is None:
                        break
                    self.running[row["id"]] = asyncio.Event()
                    task = asyncio.create_task(self._execute(row))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("media.schedule_failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)

    async def _keep_leases(self) -> None:
        every = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            try:
                gone = await self.jobs.renew(list(self.running), self.config.lease_seconds)
                for job_id in gone:  # cancelled from another node (or by an admin)
                    self.cancel_local(job_id)
                for row in await self.jobs.recover(self.config.max_attempts):
                    await self._announce(row)
            except Exception:
                log.exception("media.lease_failed")

    # -- one job ----------------------------------------------------------------------------

    async def _execute(self, row: Row) -> None:
        cancel = self.running[row["id"]]
        await self._announce(row)
        try:
            result = await self._perform(row, cancel)
            row = await self.jobs.finish(row["id"], "done", result=result)
        except JobFailed as exc:
            status = "canceled" if exc.code == "canceled" else "failed"
            row = await self.jobs.finish(row["id"], status, code=exc.code, error=str(exc))
        except (probing.ProbeError, CommandError) as exc:
            row = await self.jobs.finish(row["id"], "failed", code=exc.code, error=str(exc))
        except Problem as problem:
            row = await self.jobs.finish(
                row["id"], "failed", code=problem.code, error=problem.detail
            )
        except Exception as exc:
            log.exception("media.job_crashed", job=row["id"])
            row = await self.jobs.finish(
                row["id"], "failed", code="internal_error", error=f"{type(exc).__name__}"
            )
        finally:
            self.running.pop(row["id"], None)
            self.wake()
        log.info("media.job_finished", job=row["id"], status=row["status"], code=row["error_code"])
        await self._announce(row)

    async def _perform(self, row: Row, cancel: asyncio.Event) -> dict[str, Any]:
        op = OPERATION.validate_python(json.loads(row["params"]))
        source = await self.files.readable(row["user_id"], row["input_id"])
        if source["size"] > self.config.max_input_bytes:
            raise Problem(
                413, "input_too_large", f"inputs may be at most {self.config.max_input_bytes} bytes"
            )
        if source["size"] == 0:
            raise Problem(422, "empty_input", "the input file is empty")
        work = self.scratch / row["id"]
        await asyncio.to_thread(shutil.rmtree, work, True)
        await asyncio.to_thread(work.mkdir, parents=True)
        try:
            async with self.files.local_copy(row["input_id"]) as src:
                info = await self._probe(src)
                if isinstance(op, Probe):
                    return {"info": info}
                ctx = Context(
                    src=src,
                    work=work,
                    name=source["name"],
                    info=info,
                    encoders=self.encoders,
                    threads=self.config.threads,
                    max_output_bytes=max(1 << 20, 4 * int(source["size"]) + (64 << 20)),
                    max_pixels=self.config.max_pixels,
                )
                timeout = self._timeout(info)
                on_progress = self._progress_reporter(row)
                if isinstance(op, Hls):
                    package = await self.packager.package(
                        op, ctx, row, timeout=timeout, on_progress=on_progress, cancelled=cancel
                    )
                    return {"package": package}
                steps = plan(op, ctx)
                await run(steps, timeout=timeout, on_progress=on_progress, cancelled=cancel)
            return {"files": await self._store_outputs(row, source, steps.outputs)}
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _store_outputs(
        self, row: Row, source: dict[str, Any], outputs: list[tuple[Path, str]]
    ) -> list[dict[str, Any]]:
        for path, _ in outputs:  # all or nothing: check every output before adding any
            size = (await asyncio.to_thread(path.stat)).st_size if path.exists() else 0
            if size == 0:
                raise JobFailed("no_output", "FFmpeg produced no output (nothing decodable?)")
        # Beside the input when it is the user's own file; else in their root.
        own = source["owner_id"] == row["user_id"]
        folder = (source["parent_id"] or "") if own else ""
        return [
            await self.files.add(owner_id=row["user_id"], source=path, name=name, folder=folder)
            for path, name in outputs
        ]

    def _timeout(self, info: dict[str, Any]) -> float:
        duration = info.get("duration") or 0.0
        budget = max(self.config.min_timeout_seconds, duration * self.config.timeout_factor)
        return min(self.config.max_timeout_seconds, budget)

    async def _probe(self, src: Path) -> dict[str, Any]:
        try:
            info: dict[str, Any] = await self._pool.run(
                PROBE_TIMEOUT, probing.probe, str(src), self.config.max_pixels
            )
        except (TimeoutError, BrokenProcessPool):
            raise probing.ProbeError(
                "probe_failed", "reading the input's media facts failed"
            ) from None
        return info

    def _progress_reporter(self, row: Row) -> Any:
        last = 0.0
        topic = f"media:{row['user_id']}"

        def report(progress: Progress) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < self.config.progress_seconds and progress.percent < 100:
                return
            last = now
            data = {
                "job_id": row["id"],
                "progress": round(progress.percent, 1),
                "speed": None if progress.speed is None else round(progress.speed, 2),
                "eta_seconds": None if progress.eta is None else round(progress.eta, 1),
            }
            task = asyncio.create_task(self._store_progress(row["id"], progress, topic, data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return report

    async def _store_progress(
        self, job_id: str, progress: Progress, topic: str, data: dict[str, Any]
    ) -> None:
        await self.jobs.progress(job_id, progress.percent, progress.speed, progress.eta)
        # Progress is ephemeral: while the broker is away, the next report (or the stored
        # figure) says it again.
        with contextlib.suppress(BrokerUnavailable):
            await self.gateway.publish(topic, {"type": "progress", **data}, ephemeral=True)

    async def _announce(self, row: Row) -> None:
        """A state change: on the user's realtime topic and the bus (``media.job.<status>``)."""
        job = public(row)
        status = "started" if row["status"] == "running" else row["status"]
        await self.gateway.publish(f"media:{row['user_id']}", {"type": status, "job": job})
        await self.bus.fire(f"media.job.{status}", {"user_id": row["user_id"], "job": job})
