"""Shared fixtures: the store backend every HTTP/WebSocket test runs against."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from plugins.files.s3 import sign

from .support import free_port


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    return str(request.param)


async def _bucket_created(session: aiohttp.ClientSession, endpoint: str) -> bool:
    url = f"{endpoint}/files"
    headers = sign(
        "PUT", url, {}, access_key="test", secret_key="test",
        region="us-east-1", now=datetime.now(UTC),
    )  # fmt: skip
    try:
        async with session.put(url, headers=headers) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


@pytest.fixture
async def s3_server() -> AsyncIterator[str]:
    """moto's S3 server (from PyPI) on a free port with an empty bucket ``files``. moto takes
    its port on the command line, so a port another process grabs first is tried again."""
    pytest.importorskip("moto")
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            port = free_port()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            endpoint = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            try:
                while proc.returncode is None and time.monotonic() < deadline:
                    if await _bucket_created(session, endpoint):
                        yield endpoint
                        return
                    await asyncio.sleep(0.1)
            finally:
                if proc.returncode is None:
                    proc.terminate()
                await proc.wait()
    raise AssertionError("moto did not start")


# In CI every test runs: a skip there means something the tests need was not installed, so
# it fails instead of passing silently (.ci/run installs every package the tests use).
def _skip_fails_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    _skip_fails_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    _skip_fails_in_ci(outcome.get_result())
