"""Shared pieces of the benchmarks: servers as subprocesses, CPU time, scraping, tables."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers" / "socketio"
RESULTS = HERE / "results"
PASSWORD = "benchmark-password"
PG_URL = os.environ.get("SYNCSTREAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SYNCSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@dataclass
class Node:
    """A `syncstream serve` process."""

    proc: subprocess.Popen[Any]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def write_config(directory: Path, extra: str = "") -> Path:
    config = directory / "bench.yaml"
    config.write_text(
        f"data_dir: {directory / 'data'}\n"
        "server: {host: 127.0.0.1}\n"
        "rtmp: {enabled: false}\n"
        "logging: {level: warning, access_log: false}\n"
        "auth: {login_per_ip_per_minute: 100000}\n"
        "realtime: {rate_per_second: 1000000, rate_burst: 1000000, send_buffer_bytes: 16777216}\n"
        + extra
    )
    return config


def cluster_config(schema: str, prefix: str) -> str:
    return (
        f"store: {{url: '{PG_URL}', schema: {schema}}}\n"
        f"cluster: {{redis_url: '{REDIS_URL}', prefix: {prefix}}}\n"
    )


def start_node(config: Path, name: str = "") -> Node:
    port = free_port()
    env = {**os.environ, "SYNCSTREAM_SERVER__PORT": str(port)}
    if name:
        env["SYNCSTREAM_CLUSTER__NODE_ID"] = name
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncstream", "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return Node(proc, port)


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_admin(config: Path, name: str = "bench") -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "syncstream",
            "user",
            "create",
            name,
            "--admin",
            "--password-stdin",
            "--config",
            str(config),
        ],
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )


async def login(url: str, name: str = "bench") -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + "/api/auth/login", json={"username": name, "password": PASSWORD}
        ) as resp,
    ):
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"login failed: {body}")
        return str(body["token"])


class LagSampler:
    """Scrapes `syncstream_event_loop_lag_max_seconds` from nodes while a run goes on."""

    def __init__(self, urls: Sequence[str], interval: float = 0.5) -> None:
        self.urls = urls
        self.interval = interval
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                for url in self.urls:
                    try:
                        async with session.get(url + "/metrics") as resp:
                            for line in (await resp.text()).splitlines():
                                if line.startswith("syncstream_event_loop_lag_max_seconds "):
                                    self.max_lag = max(self.max_lag, float(line.split()[1]))
                    except aiohttp.ClientError:
                        pass
                await asyncio.sleep(self.interval)

    def __enter__(self) -> LagSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def ensure_node_modules() -> None:
    if not (PEERS / "node_modules").is_dir():
        if shutil.which("npm") is None:
            raise SystemExit("npm is needed for the Socket.IO peer and the load client")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True)


@contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="syncstream-bench-") as name:
        yield Path(name)


def random_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def table(rows: Sequence[Sequence[Any]]) -> str:
    cells = [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.rjust(widths[i]) for i, c in enumerate(r)) for r in cells)


def save(name: str, result: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    return path
