"""The request metrics expose what a prometheus_client Counter and Histogram would."""

from __future__ import annotations

import re

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from syncstream.http_metrics import BUCKETS, DURATION, REQUESTS, RequestMetrics

CREATED = re.compile(r"^(\S+_created\{.*\}) \S+$", re.M)


def exposition(registry: CollectorRegistry) -> str:
    """The registry's text format with creation times blanked (they differ by nature)."""
    return CREATED.sub(r"\1 <created>", generate_latest(registry).decode())


async def handler(request: web.Request) -> web.Response:
    return web.Response()


def test_same_exposition_as_prometheus_client() -> None:
    router = web.UrlDispatcher()
    health = router.add_get("/healthz", handler).resource
    files = router.add_get("/api/files/{file_id}", handler).resource
    requests = [
        ("GET", health, 200, 0.0004),
        ("GET", health, 200, 0.001),  # on a bucket's bound: counted in it
        ("GET", files, 404, 0.03),
        ("HEAD", files, 200, 12.0),  # past the last bound: only in +Inf
        ("POST", None, 405, 0.002),  # no route matched
        ("GET", health, 200, 0.7),
    ]
    ours = CollectorRegistry()
    metrics = RequestMetrics(ours)
    theirs = CollectorRegistry()
    counter = Counter(REQUESTS, "HTTP requests", ["method", "route", "status"], registry=theirs)
    histogram = Histogram(
        DURATION, "HTTP request latency", ["method", "route"], buckets=BUCKETS, registry=theirs
    )
    for method, resource, status, seconds in requests:
        metrics.observe(method, resource, status, seconds)
        route = resource.canonical if resource is not None else "unmatched"
        counter.labels(method, route, str(status)).inc()
        histogram.labels(method, route).observe(seconds)
    assert exposition(ours) == exposition(theirs)
    assert 'route="/api/files/{file_id}"' in exposition(ours)
