"""Shared fixtures: the store backend every HTTP/WebSocket test runs against."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from .support import free_port


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    return str(request.param)


@dataclass(frozen=True)
class S3Server:
    """moto's S3 server with signatures checked, and an IAM user allowed to use bucket
    ``files`` (``access_key``/``secret_key``) and a role it may assume (temporary keys)."""

    endpoint: str
    access_key: str
    secret_key: str
    role_arn: str

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The files plugin's ``s3`` section for this server."""
        return {
            "endpoint": self.endpoint,
            "bucket": "files",
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        } | extra


S3_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def _set_up_moto(endpoint: str) -> S3Server:
    """Bucket, user and role made while moto lets anyone in; then signatures are enforced."""
    import boto3

    def client(service: str) -> Any:
        return boto3.client(
            service, endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="setup", aws_secret_access_key="setup",
        )  # fmt: skip

    client("s3").create_bucket(Bucket="files")
    iam = client("iam")
    iam.create_user(UserName="syncstream")
    iam.put_user_policy(UserName="syncstream", PolicyName="all", PolicyDocument=S3_POLICY)
    key = iam.create_access_key(UserName="syncstream")["AccessKey"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="uploader", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="uploader", PolicyName="all", PolicyDocument=S3_POLICY)
    return S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], role["Role"]["Arn"])


async def _answers(session: aiohttp.ClientSession, endpoint: str) -> bool:
    try:
        async with session.get(f"{endpoint}/moto-api/data.json") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


@pytest.fixture
async def s3_server() -> AsyncIterator[S3Server]:
    """moto's S3 server (from PyPI) on a free port with an empty bucket ``files``, checking
    every request's SigV4 signature. moto takes its port on the command line, so a port
    another process grabs first is tried again."""
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
                    if await _answers(session, endpoint):
                        server = await asyncio.to_thread(_set_up_moto, endpoint)
                        async with session.post(
                            f"{endpoint}/moto-api/reset-auth", data=b"0"
                        ) as resp:
                            assert resp.status == 200, await resp.text()
                        yield server
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
