"""Shared fixtures: the store backend every HTTP/WebSocket test runs against."""

from __future__ import annotations

import asyncio
import os
import sys
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


@pytest.fixture
async def s3_server() -> AsyncIterator[str]:
    """moto's S3 server (from PyPI) on a free port with an empty bucket ``files``."""
    pytest.importorskip("moto")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    url = f"{endpoint}/files"
                    headers = sign(
                        "PUT", url, {}, access_key="test", secret_key="test",
                        region="us-east-1", now=datetime.now(UTC),
                    )  # fmt: skip
                    async with session.put(f"{endpoint}/files", headers=headers) as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("moto did not start")
        yield endpoint
    finally:
        proc.terminate()
        await proc.wait()


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
