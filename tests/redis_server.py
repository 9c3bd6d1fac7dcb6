"""A redis-server of the test's own, on a free port, that a fault test may kill and restart.

No persistence (``--save "" --appendonly no``): a restart comes back empty, like a cache node
replaced by the orchestrator — the harshest case for the realtime engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .support import free_port


@dataclass
class RedisServer:
    port: int = 0
    proc: asyncio.subprocess.Process | None = None
    pids: list[int] = field(default_factory=list)  # every redis-server this started

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, timeout: float = 20.0) -> None:
        """Start on ``port`` (a free one first); on a port collision pick another, unless
        this is a restart, which must come back where the nodes look for it."""
        deadline = time.monotonic() + timeout
        fixed = self.port != 0
        while time.monotonic() < deadline:
            port = self.port if fixed else free_port()
            proc = await asyncio.create_subprocess_exec(
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            self.pids.append(proc.pid)
            if await _answers(port, proc, deadline):
                self.port, self.proc = port, proc
                return
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            await asyncio.sleep(0.1)
        raise AssertionError(f"redis-server did not start on port {self.port or 'any'}")

    async def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, nothing saved."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
            self.proc = None

    async def restart(self) -> None:
        await self.kill()
        await self.start()


async def _answers(port: int, proc: asyncio.subprocess.Process, deadline: float) -> bool:
    client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    try:
        while time.monotonic() < deadline and proc.returncode is None:
            try:  # ours, not another server that had the port
                info = await client.info("server")
                return bool(info["process_id"] == proc.pid)
            except (RedisError, OSError):
                await asyncio.sleep(0.05)
        return False
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def own_redis() -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
