"""Test support: a real server on a free port with real HTTP and WebSocket clients.

Nothing of ours is mocked: the server is the one ``syncstream serve`` runs, on SQLite or on the
PostgreSQL server of this machine (a fresh schema per test), optionally with Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from syncstream.app import Server
from syncstream.config import load_config

PG_URL = os.environ.get("SYNCSTREAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SYNCSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(
    condition: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.05
) -> Any:
    """Poll ``condition()`` (sync or async) until it returns something truthy, and return
    that; fail after a deadline generous enough for a loaded 2-core machine. Tests wait on
    conditions like this, never on fixed sleeps."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(every)


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    name = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
        yield name
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await conn.close()


def base_overrides(data_dir: Path) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        "server.host": "127.0.0.1",
        "server.port": 0,
        "rtmp.enabled": False,
        "logging.level": "warning",
        "logging.access_log": False,
        "plugins.guestbook.enabled": True,
        # SYNCSTREAM_LIVE__HLS_FAST_PATH=false runs the in-process servers without the fast
        # path too (spawned nodes read the variable themselves).
        "live.hls_fast_path": os.environ.get("SYNCSTREAM_LIVE__HLS_FAST_PATH", "true") != "false",
    }


@dataclass
class Client:
    """An HTTP client bound to one running server, with account helpers."""

    base: str
    session: aiohttp.ClientSession
    server: Server | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base + path

    async def call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.url(path), headers=headers, **kwargs) as resp:
            text = await resp.text()
            try:
                body = json.loads(text) if text else None
            except json.JSONDecodeError:
                body = text
            return resp.status, body, resp

    async def register(self, username: str, password: str = PASSWORD) -> str:
        status, body, _ = await self.call(
            "POST", "/api/auth/register", json={"username": username, "password": password}
        )
        assert status == 201, body
        self.tokens[username] = body["token"]
        return str(body["token"])

    async def login(self, username: str, password: str = PASSWORD) -> str:
        """A token for an existing account (after a restart, say)."""
        status, body, _ = await self.call(
            "POST", "/api/auth/login", json={"username": username, "password": password}
        )
        assert status == 200, body
        return str(body["token"])

    async def admin(self, username: str = "root") -> str:
        """An admin account created the way `syncstream user create --admin` does."""
        assert self.server is not None and self.server.core is not None
        await self.server.core.auth.create_user(username, PASSWORD, "admin")
        status, body, _ = await self.call(
            "POST", "/api/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert status == 200, body
        return str(body["token"])

    async def ws(self, token: str | None, **kwargs: Any) -> Socket:
        url = self.url("/ws")
        if token:
            url += f"?token={token}"
        ws = await self.session.ws_connect(url, **kwargs)
        sock = Socket(ws)
        hello = await sock.recv()
        assert hello["op"] == "hello", hello
        sock.hello = hello["data"]
        return sock


@dataclass
class Socket:
    """A realtime client speaking the gateway's JSON protocol."""

    ws: aiohttp.ClientWebSocketResponse
    hello: dict[str, Any] = field(default_factory=dict)
    next_id: int = 0

    async def send(self, op: str, topic: str | None = None, data: Any = None) -> int:
        self.next_id += 1
        frame: dict[str, Any] = {"op": op, "id": self.next_id}
        if topic is not None:
            frame["topic"] = topic
        if data is not None:
            frame["data"] = data
        await self.ws.send_str(json.dumps(frame))
        return self.next_id

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(
                f"expected a text frame, got {msg.type} {msg.data!r} {msg.extra!r}"
            )
        return dict(json.loads(msg.data))

    async def request(self, op: str, topic: str | None = None, data: Any = None) -> dict[str, Any]:
        """Send and return the reply (or error) with the same id, keeping other frames aside."""
        req_id = await self.send(op, topic, data)
        while True:
            frame = await self.recv()
            if frame.get("id") == req_id and frame["op"] in ("reply", "error"):
                return frame

    async def events(
        self, count: int, timeout: float = 5.0, *, ephemeral: bool = False
    ) -> list[dict[str, Any]]:
        """The next ``count`` events with a seq (or, with ``ephemeral=True``, without one)."""
        found = []
        while len(found) < count:
            frame = await self.recv(timeout)
            if frame["op"] == "event" and bool(frame.get("ephemeral")) == ephemeral:
                found.append(frame)
        return found

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; returns (close code, reason)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await self.ws.receive(timeout=deadline - time.monotonic())
            if msg.type == aiohttp.WSMsgType.CLOSE:
                return int(msg.data), str(msg.extra or "")
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code, ""
        raise AssertionError("the server did not close the socket")


def write_plugin(root: Path, name: str, code: str, **manifest: Any) -> Path:
    """A plugin package ``root/name``: a manifest (name, version "1" unless given, any other
    field) and ``code`` as its ``__init__``."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": name, "version": "1", **manifest}))
    (folder / "__init__.py").write_text(code)
    return folder


@asynccontextmanager
async def running(
    tmp_path: Path, backend: str = "sqlite", **overrides: Any
) -> AsyncIterator[Client]:
    """A server (in this process) and an HTTP client for it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "test.yaml"
    config.write_text("{}\n")
    values = {**base_overrides(tmp_path / "data"), **overrides}
    async with _backend(backend) as extra:
        loaded = load_config(config, environ={}, overrides={**extra, **values})
        server = Server(loaded, banner=None)
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Client(server.url, session, server)
        finally:
            await server.stop()


@asynccontextmanager
async def database(backend: str) -> AsyncIterator[tuple[str, str]]:
    """(store url, schema) of a fresh database: SQLite (empty url) or a PostgreSQL schema."""
    if backend == "sqlite":
        yield "", ""
        return
    async with pg_schema() as schema:
        yield PG_URL, schema


@asynccontextmanager
async def _backend(backend: str) -> AsyncIterator[dict[str, Any]]:
    async with database(backend) as (url, schema):
        yield {"store.url": url, "store.schema": schema}


def cluster_yaml(schema: str, extra: str = "") -> str:
    """Config text for a node of a test cluster: its own PostgreSQL schema, a fresh Redis
    prefix, RTMP off, quiet logs; ``extra`` adds lines (``data_dir``, plugins ...)."""
    return (
        "server: {host: 127.0.0.1}\nrtmp: {enabled: false}\n"
        f"store: {{url: '{PG_URL}', schema: {schema}}}\n"
        f"cluster: {{redis_url: '{REDIS_URL}', prefix: t{secrets.token_hex(4)}}}\n"
        "logging: {level: warning, access_log: false}\n" + extra
    )


@dataclass
class NodeProcess:
    """A `syncstream serve` subprocess (for multi-node and CLI tests). Started on port 0 unless
    told otherwise: the node binds a free port itself and ``wait_ready`` reads it from the
    banner (choosing a free port up front races other processes on the machine)."""

    proc: subprocess.Popen[str]
    port: int
    stdout_seen: str = ""  # banner lines read from stdout to learn the port

    @property
    def base(self) -> str:
        assert self.port, "wait_ready() reads the port first"
        return f"http://127.0.0.1:{self.port}"

    def _read_port(self) -> int:
        """The port from the banner. Read from the pipe's descriptor, not through the text
        reader: what its buffer held would be missing from ``proc.communicate()``."""
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            self.stdout_seen += chunk.decode(errors="replace")
            found = re.search(r"HTTP API\s+http://[^/]+:(\d+)/", self.stdout_seen)
            if found:
                return int(found.group(1))
        raise AssertionError(
            f"server exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        if not self.port:
            self.port = await asyncio.wait_for(asyncio.to_thread(self._read_port), timeout)
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"server exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                    )
                try:
                    async with session.get(self.base + "/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("server did not become ready")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def spawn_node(
    config: Path, env: dict[str, str] | None = None, port: int | None = None
) -> NodeProcess:
    full_env = {**os.environ, "SYNCSTREAM_SERVER__PORT": str(port or 0), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncstream", "serve", "--config", str(config)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return NodeProcess(proc, port or 0)


def process_tree(pid: int) -> dict[int, str]:
    """The live processes below ``pid`` (walking ``/proc/<pid>/task/*/children``): pid ->
    identity (start time and command line, so a reused pid is not mistaken for it)."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except OSError:
                continue
            for kid in kids:
                identity = _identity(kid)
                if kid not in found and identity is not None:
                    found[kid] = identity
                    todo.append(kid)
    return found


def _identity(pid: int) -> str | None:
    """``<start time> <command line>`` of a live (not zombie) process, else None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as fb:
            cmdline = fb.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    state, start = fields[0], fields[19]
    return None if state in ("Z", "X") else f"{start} {cmdline}"


def survivors(processes: dict[int, str]) -> dict[int, str]:
    """Those of ``processes`` (from :func:`process_tree`) still alive."""
    return {pid: who for pid, who in processes.items() if _identity(pid) == who}
