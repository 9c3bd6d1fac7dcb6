"""Chat under faults: two nodes on PostgreSQL + a Redis of our own, real WebSocket clients.

Each client is a user in one of a few rooms with a socket on one node; it sends messages,
every other one by ``publish`` on a socket of its own and the rest over HTTP to either node
(a retry — same ``client_key`` — goes over HTTP, to the other node after a 503 or a dead
connection), and follows its room live, doing what docs/features/chat.md tells clients to do: resume
a subscription with ``since``/``epoch`` after a reconnect, and on ``recovered: false`` or a
``resync`` frame sync from its last version (``POST /api/chat/sync``) before going on live.
Meanwhile the scenario restarts Redis (empty) and kills a node with SIGKILL, then restarts it.

What it checks, for every client: it saw each message of its room exactly once and in version
order with no gap (live, or by sync after a resync), every acknowledged message among them;
no 5xx other than ``503 store_unavailable``/``broker_unavailable`` with ``Retry-After``.
Used by ``tests/test_faults.py`` and ``benchmarks/faults.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .redis_server import RedisServer
from .support import PASSWORD, NodeProcess, cluster_yaml, free_port, pg_schema, spawn_node

DEADLINE = 60.0  # seconds any one condition may take on a loaded machine
ROOMS = 4
ALLOWED_5XX = {"store_unavailable", "broker_unavailable"}


@dataclass
class Report:
    acked: dict[str, dict[str, int]] = field(default_factory=dict)  # room -> id -> version
    accepted_while_redis_down: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "201", "503 broker_unavailable"..
    bad: list[str] = field(default_factory=list)  # what must not happen
    redis_recovery_seconds: float = 0.0
    node_recovery_seconds: float = 0.0
    resyncs: int = 0
    resumes: int = 0
    lost: int = 0  # acknowledged messages some member never got

    @property
    def messages(self) -> int:
        return sum(len(ids) for ids in self.acked.values())


@dataclass
class Cluster:
    config: Path
    redis: RedisServer
    nodes: list[NodeProcess | None]
    spawned: list[NodeProcess] = field(default_factory=list)
    children: set[int] = field(default_factory=set)  # processes the nodes started

    def base(self, index: int) -> str | None:
        node = self.nodes[index]
        return None if node is None else node.base

    async def start_node(self, index: int) -> None:
        node = spawn_node(
            self.config,
            {
                "SYNCSTREAM_CLUSTER__NODE_ID": f"node-{index}",
                "SYNCSTREAM_CLUSTER__REDIS_URL": self.redis.url,
            },
            free_port(),
        )
        self.spawned.append(node)
        await node.wait_ready(DEADLINE)
        self.nodes[index] = node

    def kill_node(self, index: int) -> None:
        node = self.nodes[index]
        assert node is not None
        self.children |= descendants(node.proc.pid)
        self.nodes[index] = None
        node.proc.kill()
        node.proc.wait()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def until(what: str, check: Callable[[], bool], deadline: float = DEADLINE) -> float:
    """Wait for ``check()``; returns how long it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@dataclass
class ChatClient:
    """One user: a socket following its room, and a sender."""

    name: str
    token: str
    room: str
    node: int
    cluster: Cluster
    http: aiohttp.ClientSession
    report: Report
    position: int = 0  # highest version applied: everything up to it was seen, in order
    topic_seq: int = 0  # the broker's position, to resume a subscription
    epoch: str | None = None
    seen: Counter[str] = field(default_factory=Counter)  # message id -> times applied
    live: set[int] = field(default_factory=set)  # versions delivered live
    connected: bool = False
    subscribed: int = 0  # subscribe replies so far (1 + reconnects)
    sent: int = 0
    sender: aiohttp.ClientWebSocketResponse | None = None  # the socket it publishes on
    requests: int = 0

    # -- following the room -------------------------------------------------------------

    async def follow(self) -> None:
        while True:
            base = self.cluster.base(self.node) or self.cluster.base(1 - self.node)
            if base is None:
                await asyncio.sleep(0.05)
                continue
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
                await self._follow(base)  # until its socket closes
            self.connected = False
            if self.cluster.base(self.node) is None:
                self.node = 1 - self.node  # its node is gone: the other one
            await asyncio.sleep(0.05)

    async def _follow(self, base: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.ws_connect(base + "/ws", headers=headers, heartbeat=5) as ws:
            hello = json.loads((await ws.receive(timeout=10)).data)
            assert hello["op"] == "hello", hello
            resume = {"since": self.topic_seq, "epoch": self.epoch} if self.epoch else {}
            topic = f"chat:{self.room}"
            await ws.send_json({"op": "subscribe", "id": 1, "topic": topic, "data": resume})
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if frame["op"] == "reply" and frame.get("id") == 1:
                    data = frame["data"]
                    self.connected = True
                    self.subscribed += 1
                    if not resume or not data["recovered"]:
                        self.topic_seq, self.epoch = data["seq"], data["epoch"]
                        if resume:
                            self.report.resyncs += 1
                        await self.sync()
                    else:
                        self.report.resumes += 1
                elif frame["op"] == "error":
                    raise ConnectionError(f"subscribe failed: {frame}")
                elif frame["op"] == "resync":
                    self.topic_seq, self.epoch = frame["data"]["seq"], frame["data"]["epoch"]
                    self.report.resyncs += 1
                    await self.sync()
                elif frame["op"] == "event" and not frame.get("ephemeral"):
                    self.topic_seq, self.epoch = frame["seq"], frame["epoch"]
                    if frame["data"].get("type") == "message":
                        self.apply(frame["data"]["message"], live=True)

    async def sync(self) -> None:
        """Everything after our position, from the store (frames wait on the socket)."""
        while True:
            body = {"positions": {self.room: self.position}}
            answer = await self.call("POST", "/api/chat/sync", body, prefer=self.node, retries=True)
            assert answer is not None
            room = answer["rooms"][self.room]
            for message in room["changes"]:
                self.apply(message, live=False)
            if not room["more"]:
                return

    def apply(self, message: dict[str, Any], *, live: bool) -> None:
        version = int(message["version"])
        if live:
            if version in self.live:
                self.report.bad.append(f"{self.name}: version {version} delivered twice live")
            self.live.add(version)
        if version <= self.position:
            return  # a sync already brought it
        if version != self.position + 1:
            self.report.bad.append(f"{self.name}: got version {version} after {self.position}")
        self.position = version
        self.seen[message["id"]] += 1

    # -- sending ------------------------------------------------------------------------

    async def send_forever(self, redis_down: Callable[[], bool]) -> None:
        """Every other message over a socket of its own (``publish`` to the room), the rest
        over HTTP; what fails is retried over HTTP with the same key."""
        try:
            while True:
                await self._send_one(redis_down)
                await asyncio.sleep(0.01)
        finally:
            if self.sender is not None:
                await self.sender.close()

    async def _send_one(self, redis_down: Callable[[], bool]) -> None:
        key = f"{self.name}-{self.sent}"
        body = {"text": f"{self.name} {self.sent}", "client_key": key}
        path = f"/api/chat/rooms/{self.room}/messages"
        down = redis_down()
        message = await self.publish(body) if self.sent % 2 else None
        if message is None:
            message = await self.call("POST", path, body, prefer=self.sent % 2, retries=True)
        assert message is not None
        self.report.acked.setdefault(self.room, {})[message["id"]] = message["version"]
        if down and redis_down():
            self.report.accepted_while_redis_down += 1
        self.sent += 1

    async def publish(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Send on the sender's socket; None if that failed (a dead node, a 503)."""
        base = self.cluster.base(self.node)
        if base is None:
            return None
        try:
            if self.sender is None or self.sender.closed:
                self.sender = await self.http.ws_connect(
                    base + "/ws", headers={"Authorization": f"Bearer {self.token}"}
                )
                assert json.loads((await self.sender.receive(timeout=10)).data)["op"] == "hello"
            self.requests += 1
            await self.sender.send_json(
                {"op": "publish", "id": self.requests, "topic": f"chat:{self.room}", "data": body}
            )
            while True:
                msg = await self.sender.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"the socket closed: {msg.type}")
                frame = json.loads(msg.data)
                if frame.get("id") == self.requests:
                    break
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            if self.sender is not None:
                await self.sender.close()
            self.sender = None
            return None
        if frame["op"] == "reply":
            self.report.answers["ws reply"] += 1
            return dict(frame["data"]["message"])
        self.report.answers[f"ws {frame['code']}"] += 1
        if frame["code"] not in ALLOWED_5XX or not frame.get("retry_after"):
            self.report.bad.append(f"publish: {frame}")
        return None

    async def call(self, method: str, path: str, body: Any, *, prefer: int, retries: bool) -> Any:
        """The answer of the preferred node, or of the other after a 503 or a dead node."""
        index = prefer
        for _ in range(int(DEADLINE / 0.05)):
            base = self.cluster.base(index)
            if base is not None:
                try:
                    async with self.http.request(
                        method, base + path, json=body,
                        headers={"Authorization": f"Bearer {self.token}"},
                    ) as resp:  # fmt: skip
                        answer = await resp.json(content_type=None)
                        if resp.status < 500:
                            self.report.answers[str(resp.status)] += 1
                            assert resp.status in (200, 201), (resp.status, answer)
                            return answer
                        code = answer.get("code") if isinstance(answer, dict) else None
                        self.report.answers[f"{resp.status} {code}"] += 1
                        if not (
                            resp.status == 503
                            and code in ALLOWED_5XX
                            and resp.headers.get("Retry-After")
                        ):
                            self.report.bad.append(f"{method} {path}: {resp.status} {answer}")
                except (aiohttp.ClientError, ConnectionError, TimeoutError):
                    pass  # the node died under us: the same request to the other one
            if not retries:
                return None
            index = 1 - index
            await asyncio.sleep(0.05)
        raise AssertionError(f"{method} {path} never succeeded")


async def run(
    tmp_path: Path, redis: RedisServer, clients: int = 20, log: Callable[[str], None] = print
) -> Report:
    """The whole scenario; returns what it saw (the caller asserts)."""
    report = Report()
    began = time.monotonic()

    def phase(name: str) -> None:
        log(f"{time.monotonic() - began:6.2f} s  {name}")

    async with pg_schema() as schema:
        config = tmp_path / "faults.yaml"
        config.write_text(
            cluster_yaml(
                schema,
                f"data_dir: {tmp_path / 'data'}\n"
                "plugins: {chat: {messages_per_second: 1000, message_burst: 1000},"
                " media: {enabled: false}, files: {enabled: false}}\n",
            )
        )
        cluster = Cluster(config, redis, [None, None])
        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.gather(cluster.start_node(0), cluster.start_node(1))
            phase("two nodes ready")
            async with aiohttp.ClientSession() as http:
                people = await _people(cluster, http, report, clients)
                phase(f"{clients} users in {ROOMS} rooms")
                tasks = [asyncio.create_task(c.follow()) for c in people]
                await until("every client subscribed", lambda: all(c.connected for c in people))
                await _same_key_on_both_nodes(people[0], report)
                down = False
                tasks += [asyncio.create_task(c.send_forever(lambda: down)) for c in people]
                await _watch(tasks, until("traffic", lambda: report.messages >= 100))

                # Redis restarts empty while messages are being sent.
                phase("killing Redis")
                await redis.kill()
                down = True
                await _watch(
                    tasks,
                    until(
                        "sends accepted while Redis is down",
                        lambda: report.accepted_while_redis_down >= 20,
                    ),
                )
                await redis.start()
                phase("Redis back")
                down = False
                back = _snapshot(report)
                report.redis_recovery_seconds = await _watch(
                    tasks, until("recovery after the Redis restart", _caught_up(people, back))
                )
                log(f"recovery after a Redis restart: {report.redis_recovery_seconds:.2f} s")

                # A node dies mid-traffic (SIGKILL), its clients move; then it comes back.
                phase("killing a node")
                moved = {c.name: c.subscribed for c in people if c.node == 1}
                started = time.monotonic()
                cluster.kill_node(1)
                await _watch(
                    tasks,
                    until(
                        "the dead node's clients on the other node",
                        lambda: all(
                            c.subscribed > moved[c.name] for c in people if c.name in moved
                        ),
                    ),
                )
                await _watch(tasks, until("catching up", _caught_up(people, _snapshot(report))))
                report.node_recovery_seconds = time.monotonic() - started
                log(f"recovery after kill -9 of a node: {report.node_recovery_seconds:.2f} s")
                before = report.messages
                await _watch(tasks, cluster.start_node(1))
                phase("the node is back")
                await _watch(tasks, until("traffic again", lambda: report.messages >= before + 60))

                for task in tasks[len(people) :]:  # senders stop; followers catch up
                    task.cancel()
                final = _snapshot(report)
                await _watch(tasks[: len(people)], until("the end", _caught_up(people, final)))
                _check(people, report)
                phase("checked")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for index, node in enumerate(cluster.nodes):
                if node is not None:
                    cluster.children |= descendants(node.proc.pid)
                    node.stop()
                    cluster.nodes[index] = None
    leftovers = [n.proc.pid for n in cluster.spawned if n.proc.poll() is None]
    leftovers += [pid for pid in cluster.children if alive(pid)]
    if leftovers:
        report.bad.append(f"processes left behind: {leftovers}")
    return report


async def _people(
    cluster: Cluster, http: aiohttp.ClientSession, report: Report, count: int
) -> list[ChatClient]:
    """``count`` users in ``ROOMS`` rooms, sockets alternating between the nodes."""
    base = cluster.base(0)
    assert base is not None

    async def register(i: int) -> tuple[str, str]:
        name = f"u{i}x{secrets.token_hex(2)}"
        node = cluster.base(i % 2)  # password hashing is slow: both nodes take a share
        async with http.post(
            f"{node}/api/auth/register", json={"username": name, "password": PASSWORD}
        ) as resp:
            assert resp.status == 201, await resp.text()
            return name, (await resp.json())["token"]

    tokens = await asyncio.gather(*(register(i) for i in range(count)))
    rooms = []
    for r in range(ROOMS):
        owner = tokens[r][1]
        members = [name for i, (name, _) in enumerate(tokens) if i % ROOMS == r and i != r]
        async with http.post(
            base + "/api/chat/rooms",
            json={"name": f"room {r}", "members": members},
            headers={"Authorization": f"Bearer {owner}"},
        ) as resp:
            assert resp.status == 201, await resp.text()
            rooms.append((await resp.json())["id"])
    return [
        ChatClient(name, token, rooms[i % ROOMS], i % 2, cluster, http, report)
        for i, (name, token) in enumerate(tokens)
    ]


async def _same_key_on_both_nodes(client: ChatClient, report: Report) -> None:
    """One send retried on both nodes at once: one message, every answer is it."""
    body = {"text": "twice?", "client_key": "raced"}
    path = f"/api/chat/rooms/{client.room}/messages"
    answers = await asyncio.gather(
        *(client.call("POST", path, body, prefer=n % 2, retries=False) for n in range(40))
    )
    ids = {a["id"] for a in answers if a is not None}
    if len(ids) != 1 or None in answers:
        report.bad.append(
            f"one client_key on two nodes: answers {ids}, {answers.count(None)} failed"
        )
    if answers[0] is not None:
        report.acked.setdefault(client.room, {})[answers[0]["id"]] = answers[0]["version"]


def _snapshot(report: Report) -> dict[str, int]:
    """Per room, the highest version acknowledged so far."""
    return {room: max(ids.values()) for room, ids in report.acked.items() if ids}


def _caught_up(people: list[ChatClient], target: dict[str, int]) -> Callable[[], bool]:
    return lambda: all(c.position >= target.get(c.room, 0) for c in people)


async def _watch(tasks: list[asyncio.Task[None]], step: Awaitable[Any]) -> Any:
    """Await ``step``, failing at once if a client task failed meanwhile."""
    waiting = asyncio.ensure_future(step)
    while True:
        done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            return waiting.result()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                waiting.cancel()
                raise AssertionError("a client failed") from task.exception()
        tasks = [t for t in tasks if t not in done]


def _check(people: list[ChatClient], report: Report) -> None:
    for client in people:
        acked = report.acked.get(client.room, {})
        missing = set(acked) - set(client.seen)
        report.lost += len(missing)
        if missing:
            report.bad.append(f"{client.name}: {len(missing)} acknowledged messages never came")
        twice = [m for m, n in client.seen.items() if n > 1]
        if twice:
            report.bad.append(f"{client.name}: {len(twice)} messages applied twice")
