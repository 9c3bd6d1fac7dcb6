"""Contract tests of the performance seams (``syncstream/runtime/``): the library internals
each one uses are still there and still behave as the seam assumes. A library release that
changes them fails here in CI (and the server falls back by itself, also tested)."""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiosqlite
import pytest
import structlog

from syncstream.runtime import aiortc_tap, process_pool, sqlite_inline
from syncstream.runtime.seams import Seams
from syncstream.runtime.versions import outside, release
from syncstream.workers import WorkerPool

from .support import running


def test_versions_are_read_and_compared() -> None:
    assert release("aiohttp")[:1] == (3,)
    assert release("no-such-package-here") == ()
    assert outside("aiohttp", (3,), (4,)) is None
    reason = outside("aiohttp", (0, 1), (0, 2))
    assert reason is not None and "aiohttp" in reason and "0.1 up to 0.2" in reason


def test_a_seam_falls_back_with_a_warning() -> None:
    seams = Seams()
    with structlog.testing.capture_logs() as logs:
        assert seams.record("a", True) is True
        assert seams.record("b", True, "lib 9 changed") is False
        assert seams.record("c", False) is False
        assert seams.record("b", True, "lib 9 changed") is False  # logged once
    assert [(e["event"], e["seam"]) for e in logs] == [
        ("runtime.seam", "a"),
        ("runtime.seam_fallback", "b"),
        ("runtime.seam", "c"),
    ]
    assert [s.as_json()["active"] for s in seams.all()] == [True, False, False]


async def test_aiosqlite_contract(tmp_path: Path) -> None:
    """The sqlite3 connection behind aiosqlite is the one its statements use, and a call
    queued on its thread runs there, in order with its statements."""
    assert sqlite_inline.problem() is None, sqlite_inline.problem()
    conn = await aiosqlite.connect(
        tmp_path / "db.sqlite", isolation_level=None, check_same_thread=False
    )
    try:
        await conn.execute("CREATE TABLE t (x INTEGER)")
        raw = sqlite_inline.sqlite_connection(conn)
        assert isinstance(raw, sqlite3.Connection)
        raw.execute("INSERT INTO t VALUES (1)")
        assert await conn.execute_fetchall("SELECT x FROM t") == [(1,)]

        def where(value: int) -> int:
            raw.execute("INSERT INTO t VALUES (?)", (value,))
            return threading.get_ident()

        pending = asyncio.ensure_future(conn.execute("INSERT INTO t VALUES (2)"))
        await asyncio.sleep(0)  # queued on aiosqlite's thread before the call below
        ident = await sqlite_inline.on_connection_thread(conn, where, 3)
        await pending
        assert ident != threading.get_ident()
        assert await conn.execute_fetchall("SELECT x FROM t") == [(1,), (2,), (3,)]
    finally:
        await conn.close()


def _pid() -> int:
    return os.getpid()


def test_process_pool_contract() -> None:
    """A pool's live workers are listed (pid by pid) from the table its shutdown walks."""
    assert process_pool.problem() is None, process_pool.problem()
    pool = ProcessPoolExecutor(2)
    try:
        pids = {pool.submit(_pid).result(timeout=60) for _ in range(8)}
        listed = process_pool.processes(pool)
        assert pids <= {p.pid for p in listed} and all(p.is_alive() for p in listed)
    finally:
        pool.shutdown(wait=True)


def _hang() -> None:
    threading.Event().wait()


async def test_a_stuck_worker_is_killed_on_reset() -> None:
    pool = WorkerPool(1)
    try:
        with pytest.raises(TimeoutError):
            await pool.run(0.5, _hang)
        # the stuck worker was killed, not left running: a fresh one answers at once
        assert await pool.run(60, _pid) != os.getpid()
    finally:
        await pool.close()


def test_aiortc_contract() -> None:
    """What the SFU's frame tap replaces and wraps is on aiortc's receiver and sender."""
    assert aiortc_tap.problem() is None, aiortc_tap.problem()


async def test_every_seam_off_and_the_server_still_works(tmp_path: Path) -> None:
    """The off switches: no GC policy (CPython's own thresholds stay), WebSocket frames read
    through aiohttp's public API, SQLite batches through aiosqlite's; /metrics says so."""
    thresholds = gc.get_threshold()
    off = {
        "runtime.gc_policy": False,
        "runtime.ws_text_tap": False,
        "runtime.sqlite_inline_writes": False,
    }
    async with running(tmp_path, **off) as c:
        assert gc.get_threshold() == thresholds
        admin = await c.ws(await c.admin())
        viewer = await c.ws(await c.register("alice"))  # the account: through write_batch
        assert (await viewer.request("subscribe", "broadcast:news"))["op"] == "reply"
        ids = [await admin.send("publish", "broadcast:news", {"n": n}) for n in range(5)]
        assert [(await admin.recv())["id"] for _ in ids] == ids  # in order, as with the tap
        assert [e["data"]["n"] for e in await viewer.events(5)] == list(range(5))
        async with c.session.get(c.url("/metrics")) as resp:
            text = await resp.text()
        for seam in ("gc_policy", "ws_text_tap", "sqlite_inline_writes"):
            assert f'syncstream_runtime_seam_active{{seam="{seam}"}} 0.0' in text


async def test_metrics_show_the_seams_in_use(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        await c.ws(await c.register("alice"))
        async with c.session.get(c.url("/metrics")) as resp:
            text = await resp.text()
        for seam in ("gc_policy", "ws_text_tap", "sqlite_inline_writes"):
            assert f'syncstream_runtime_seam_active{{seam="{seam}"}} 1.0' in text
