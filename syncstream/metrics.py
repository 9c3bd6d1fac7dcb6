"""Prometheus metrics of the core, one registry per app, and the event-loop lag probe."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .http_metrics import RequestMetrics


class Metrics:
    """The core's metrics; plugins add their own to ``registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = RequestMetrics(r)
        self.ws_connections = Gauge(
            "syncstream_ws_connections", "Open WebSocket connections", registry=r
        )
        self.ws_messages_out = Counter(
            "syncstream_ws_messages_out_total", "Event frames written to sockets", registry=r
        )
        self.ws_messages_in = Counter(
            "syncstream_ws_messages_in_total", "Frames received from clients", registry=r
        )
        self.ws_slow_consumers = Counter(
            "syncstream_ws_slow_consumers_total",
            "Sockets dropped for a full send buffer",
            registry=r,
        )
        self.ws_reads_paused = Counter(
            "syncstream_ws_reads_paused_total",
            "Times a socket's reading was paused: its client sent faster than it was served",
            registry=r,
        )
        self.ws_rate_limited = Counter(
            "syncstream_ws_rate_limited_total",
            "Client frames refused by the rate limit",
            registry=r,
        )
        self.bus_events = Counter(
            "syncstream_bus_events_total",
            "Bus events dispatched on this node",
            ["type"],
            registry=r,
        )
        self.runtime_seams = Gauge(
            "syncstream_runtime_seam_active",
            "Performance seams (syncstream/runtime/): 1 in use, 0 off or fallen back",
            ["seam"],
            registry=r,
        )
        self.loop_lag = Gauge(
            "syncstream_event_loop_lag_seconds", "Latest event-loop lag sample", registry=r
        )
        self.loop_lag_max = Gauge(
            "syncstream_event_loop_lag_max_seconds",
            "Largest event-loop lag since the previous scrape",
            registry=r,
        )
        self.gc_pauses = Histogram(
            "syncstream_gc_pause_seconds",
            "Garbage collector pauses (the event loop stands still meanwhile)",
            ["generation"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=r,
        )
        self._lag_max = 0.0

    def count_request(self, method: str, route: str, status: int) -> None:
        """Count one HTTP request answered outside aiohttp (the live fast path), untimed."""
        self.requests.count(method, route, status)

    def count_bus_event(self, event_type: str) -> None:
        self.bus_events.labels(event_type).inc()

    def take_lag_max(self) -> None:
        """Publish the max lag seen since the last scrape and start a new window."""
        self.loop_lag_max.set(self._lag_max)
        self._lag_max = 0.0

    def watch_gc(self) -> Callable[[], None]:
        """Time every collection of the garbage collector; returns the undo."""
        children = [self.gc_pauses.labels(str(generation)) for generation in range(3)]
        started = 0.0

        def on_gc(phase: str, info: dict[str, int]) -> None:
            nonlocal started
            if phase == "start":
                started = time.perf_counter()
            else:
                children[info["generation"]].observe(time.perf_counter() - started)

        gc.callbacks.append(on_gc)
        return lambda: gc.callbacks.remove(on_gc)

    async def watch_loop_lag(self, interval: float) -> None:
        """Sleep ``interval`` repeatedly; the overshoot is how long the loop was blocked."""
        while True:
            start = time.perf_counter()
            await asyncio.sleep(interval)
            lag = max(0.0, time.perf_counter() - start - interval)
            self.loop_lag.set(lag)
            self._lag_max = max(self._lag_max, lag)
