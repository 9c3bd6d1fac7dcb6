"""This node's figures, live and over time.

Every ``sample_seconds`` the sampler reads the node: process CPU and memory, event-loop lag,
WebSocket connections and messages a second, HTTP requests and errors a second (from the
Prometheus registry), disk space, and what every plugin reports (``ctx.oversight``: live
streams and viewers, ingest bitrate, games, calls, jobs, storage). Each sample goes to the
dashboards at once (``admin:stats``, and the bus for the other nodes' ``GET /stats``). A
minute's samples are averaged into one stored row (peaks for lag), kept a day; every
quarter of an hour those fold into one row kept a week.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from syncstream.sdk import Oversight, Store

log = structlog.get_logger(__name__)
MINUTE, QUARTER = 60, 900
KEEP = {MINUTE: 86_400, QUARTER: 7 * 86_400}
PEAKS = ("loop_lag_ms",)  # kept as maxima when averaging
PAGE = os.sysconf("SC_PAGE_SIZE")
Sample = dict[str, Any]


def counters(registry: CollectorRegistry) -> dict[str, float]:
    """The core's figures from the Prometheus registry (totals and gauges)."""
    out = {"ws_connections": 0.0, "ws_out": 0.0, "ws_in": 0.0, "http": 0.0, "http_5xx": 0.0,
           "loop_lag": 0.0}  # fmt: skip
    for family in registry.collect():
        for sample in family.samples:
            name = sample.name
            if name == "syncstream_ws_connections":
                out["ws_connections"] = sample.value
            elif name == "syncstream_ws_messages_out_total":
                out["ws_out"] = sample.value
            elif name == "syncstream_ws_messages_in_total":
                out["ws_in"] = sample.value
            elif name == "syncstream_http_requests_total":
                out["http"] += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    out["http_5xx"] += sample.value
            elif name == "syncstream_event_loop_lag_seconds":
                out["loop_lag"] = sample.value
    return out


class Sampler:
    def __init__(
        self, node: str, registry: CollectorRegistry, oversight: Oversight, data_dir: Path,
        store: Store, every: float, deliver: Callable[[Sample], Awaitable[None]],
    ) -> None:  # fmt: skip
        self.node, self.registry, self.oversight = node, registry, oversight
        self.data_dir, self.store, self.every, self.deliver = data_dir, store, every, deliver
        self._previous: tuple[float, float, dict[str, float]] | None = None
        self._minute: list[Sample] = []
        self._minute_start = 0.0

    async def take(self) -> Sample:
        now, cpu = time.monotonic(), _cpu_seconds()
        core = counters(self.registry)
        sample: Sample = {"node": self.node, "time": time.time()}
        if self._previous is not None:
            then, cpu_then, before = self._previous
            elapsed = max(now - then, 1e-6)
            sample["cpu_percent"] = round(100 * (cpu - cpu_then) / elapsed, 1)
            for key, name in (("ws_out", "messages_out_per_s"), ("ws_in", "messages_in_per_s"),
                              ("http", "http_per_s"), ("http_5xx", "errors_per_s")):  # fmt: skip
                sample[name] = round(max(0.0, core[key] - before[key]) / elapsed, 2)
        self._previous = (now, cpu, core)
        disk = shutil.disk_usage(self.data_dir)
        sample.update({
            "memory_mb": round(_rss_bytes() / 2**20, 1),
            "loop_lag_ms": round(core["loop_lag"] * 1000, 2),
            "ws_connections": core["ws_connections"],
            "disk_free_percent": round(100 * disk.free / disk.total, 2),
            "disk_used_gb": round(disk.used / 2**30, 2),
        })  # fmt: skip
        sample.update(await self.oversight.figures())
        return sample

    async def run(self) -> None:
        while True:
            try:
                sample = await self.take()
                await self.deliver(sample)
                await self._keep(sample)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("admin.sample_failed")
            await asyncio.sleep(self.every)

    async def _keep(self, sample: Sample) -> None:
        """Fold samples into a stored row a minute; quarter rows as quarters end."""
        start = sample["time"] // MINUTE * MINUTE
        if self._minute and start != self._minute_start:
            await self._store(MINUTE, self._minute_start, average(self._minute))
            if start // QUARTER != self._minute_start // QUARTER:
                await self._fold(self._minute_start // QUARTER * QUARTER)
            self._minute = []
        self._minute_start = start
        self._minute.append(sample)

    async def _store(self, span: int, start: float, row: Sample) -> None:
        await self.store.execute(
            "INSERT INTO admin_samples (node, span, time, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (span, time, node) DO UPDATE SET data = excluded.data",
            self.node, span, start, json.dumps(row),
        )  # fmt: skip

    async def _fold(self, quarter: float) -> None:
        rows = await self.store.fetchall(
            "SELECT data FROM admin_samples WHERE node = ? AND span = ? AND time >= ?"
            " AND time < ?",
            self.node, MINUTE, quarter, quarter + QUARTER,
        )  # fmt: skip
        if rows:
            await self._store(QUARTER, quarter, average([json.loads(r["data"]) for r in rows]))
        now = time.time()
        for span, keep in KEEP.items():
            await self.store.execute(
                "DELETE FROM admin_samples WHERE span = ? AND time < ?", span, now - keep
            )


def average(samples: list[Sample]) -> Sample:
    """Means of the numeric figures (maxima for lag), over the samples that have them."""
    out: Sample = {}
    keys = {k for s in samples for k, v in s.items() if isinstance(v, (int, float))}
    for key in keys - {"time"}:
        values = [s[key] for s in samples if isinstance(s.get(key), (int, float))]
        out[key] = max(values) if key in PEAKS else round(sum(values) / len(values), 3)
    return out


async def history(store: Store, span: int, since: float, node: str | None) -> list[dict[str, Any]]:
    """Stored rows of one resolution since ``since`` (all nodes, or one)."""
    where, args = "span = ? AND time >= ?", list[Any]([span, since])
    if node:
        where += " AND node = ?"
        args.append(node)
    rows = await store.fetchall(
        f"SELECT node, time, data FROM admin_samples WHERE {where} ORDER BY time, node", *args
    )
    return [{"node": r["node"], "time": r["time"], **json.loads(r["data"])} for r in rows]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE
