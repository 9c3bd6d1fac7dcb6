"""Every HTTP request counted and timed, at the cost of a few additions.

The series are those a prometheus_client Counter and Histogram would expose
(``syncstream_http_requests_total{method,route,status}`` with its ``_created``, and
``syncstream_http_request_duration_seconds{method,route}`` with buckets, count, sum and
``_created``), but they are kept as plain numbers and turned into metric families only when
the registry is collected (a scrape). prometheus_client takes a lock per value and checks the
metric on every ``inc`` and ``observe``: eight Python calls per request, a tenth of what a bare
aiohttp handler's whole answer costs. Requests are observed, and the registry collected, on
the event loop.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from aiohttp.web import AbstractResource
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

REQUESTS = "syncstream_http_requests_total"
DURATION = "syncstream_http_request_duration_seconds"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LE = [str(float(bound)) for bound in BUCKETS] + ["+Inf"]  # as prometheus_client writes them


class _Latency:
    """One (method, route)'s histogram: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("buckets", "created", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.created = time.time()


class _Series:
    """One (method, route, status): its count, and its (method, route) histogram."""

    __slots__ = ("count", "created", "latency")

    def __init__(self, latency: _Latency) -> None:
        self.count = 0
        self.created = time.time()
        self.latency = latency


class RequestMetrics(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        # Keyed by the route's resource (None: no route matched), labelled by its canonical
        # path: the label is read once per series, not per request.
        self._series: dict[tuple[str, AbstractResource | None, int], _Series] = {}
        self._labels: dict[tuple[str, str, int], _Series] = {}
        self._latency: dict[tuple[str, str], _Latency] = {}
        registry.register(self)

    def observe(
        self, method: str, resource: AbstractResource | None, status: int, seconds: float
    ) -> None:
        """Count one request to ``resource`` and its duration."""
        series = self._series.get((method, resource, status))
        if series is None:
            series = self._new_series(method, resource, status)
        series.count += 1
        latency = series.latency
        latency.sum += seconds
        latency.buckets[bisect_left(BUCKETS, seconds)] += 1

    def count(self, method: str, route: str, status: int) -> None:
        """Count one request by its route label, untimed (answers made outside aiohttp: the
        live fast path, thousands a second)."""
        series = self._labels.get((method, route, status))
        if series is None:
            latency = self._latency.setdefault((method, route), _Latency())
            series = self._labels[method, route, status] = _Series(latency)
        series.count += 1

    def _new_series(self, method: str, resource: AbstractResource | None, status: int) -> _Series:
        route = resource.canonical if resource is not None else "unmatched"
        series = self._labels.get((method, route, status))
        if series is None:
            latency = self._latency.setdefault((method, route), _Latency())
            series = self._labels[method, route, status] = _Series(latency)
        self._series[method, resource, status] = series
        return series

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            REQUESTS, "HTTP requests", labels=("method", "route", "status")
        )
        for (method, route, status), series in self._labels.items():
            requests.add_metric((method, route, str(status)), series.count, created=series.created)
        yield requests
        duration = HistogramMetricFamily(
            DURATION, "HTTP request latency", labels=("method", "route")
        )
        for (method, route), latency in self._latency.items():
            cumulative, total = [], 0
            for le, count in zip(_LE, latency.buckets, strict=True):
                total += count
                cumulative.append((le, total))
            duration.add_metric((method, route), cumulative, latency.sum)
            labels = {"method": method, "route": route}
            duration.samples.append(Sample(DURATION + "_created", labels, latency.created))
        yield duration
