"""Faults are tests: chat traffic across two nodes while Redis restarts and a node is killed.

The scenario (``faults_scenario.py``) runs its own redis-server and two ``syncstream serve``
processes on PostgreSQL; see there for what the clients do and what is checked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from syncstream.bus import Event, RedisBus

from .faults_scenario import run
from .redis_server import own_redis

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_chat_loses_nothing_when_redis_restarts_and_a_node_dies(tmp_path: Path) -> None:
    async with own_redis() as redis:
        report = await run(tmp_path, redis)
    print(
        f"messages: {report.messages}, lost: {report.lost}, answers: {dict(report.answers)}, "
        f"resyncs: {report.resyncs}, resumes: {report.resumes}, "
        f"recovery after a Redis restart: {report.redis_recovery_seconds:.2f} s, "
        f"after kill -9 of a node: {report.node_recovery_seconds:.2f} s"
    )
    assert report.bad == []
    assert report.accepted_while_redis_down >= 20  # stored and acknowledged, not 500
    assert report.resyncs > 0 and report.resumes > 0  # both ways of catching up were used


async def test_the_bus_keeps_events_fired_while_redis_is_away() -> None:
    """Firing never fails because of Redis: local listeners get the event at once, other
    nodes once Redis is back (the backlog goes out in order)."""
    async with own_redis() as redis:
        a, b = RedisBus("node-a", redis.url, "t"), RedisBus("node-b", redis.url, "t")
        here: list[Event] = []
        there: list[Event] = []
        a.listen("x.*", here.append)
        b.listen("x.*", there.append)
        await a.start()
        await b.start()
        try:
            await redis.kill()
            for n in range(3):
                await a.fire("x.fired", {"n": n})  # no exception
            assert [e.data["n"] for e in here] == [0, 1, 2]
            await redis.start()
            probe = RedisBus("probe", redis.url, "t")
            await probe.start()
            try:
                for _ in range(500):  # b resubscribed: a probe's event reaches it
                    await probe.fire("x.probe", {})
                    if any(e.type == "x.probe" for e in there):
                        break
                    await asyncio.sleep(0.02)
            finally:
                await probe.stop()
            for _ in range(500):
                if [e.data["n"] for e in there if e.type == "x.fired"] == [0, 1, 2]:
                    break
                await asyncio.sleep(0.02)
            assert [e.data["n"] for e in there if e.type == "x.fired"] == [0, 1, 2]
        finally:
            await a.stop()
            await b.stop()
