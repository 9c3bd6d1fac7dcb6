"""Two `syncstream serve` processes sharing PostgreSQL and Redis behave as one service."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .support import (
    PASSWORD,
    Client,
    NodeProcess,
    cluster_yaml,
    eventually,
    pg_schema,
    spawn_node,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
async def nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Client, Client]]:
    async with pg_schema() as schema:
        config = tmp_path / "cluster.yaml"
        config.write_text(
            cluster_yaml(
                schema,
                f"data_dir: {tmp_path / 'data'}\nplugins: {{guestbook: {{enabled: true}},"
                " admin: {sample_seconds: 0.3, alerts: {failed_logins: 2}}}\n",
            )
        )
        monkeypatch.setenv("SYNCSTREAM_CONFIG", str(config))
        procs: list[NodeProcess] = []
        try:
            for name in ("node-a", "node-b"):
                procs.append(spawn_node(config, {"SYNCSTREAM_CLUSTER__NODE_ID": name}))
            for proc in procs:
                await proc.wait_ready()
            async with aiohttp.ClientSession() as session:
                yield Client(procs[0].base, session), Client(procs[1].base, session)
        finally:
            for proc in procs:
                proc.stop()


async def test_bus_event_on_one_node_reaches_the_other(nodes: tuple[Client, Client]) -> None:
    a, b = nodes
    token = await a.register("ann")
    status, _, _ = await b.call(
        "POST", "/api/auth/login", json={"username": "ann", "password": PASSWORD}
    )
    assert status == 200, "accounts are shared through PostgreSQL"
    # An admin on node B watches the bus; the event is fired by a request to node A.
    _, reg, _ = await b.call(
        "POST", "/api/auth/register", json={"username": "bea", "password": PASSWORD}
    )
    assert reg["token"]
    watcher_token = await _make_admin(b, "boss")
    watcher = await b.ws(watcher_token)
    assert watcher.hello["node"] == "node-b"
    await watcher.request("subscribe", "bus:guestbook.signed")
    status, entry, _ = await a.call(
        "POST", "/api/guestbook/entries", token, json={"text": "from A"}
    )
    assert status == 201
    (event,) = await watcher.events(1)
    assert event["data"]["type"] == "guestbook.signed"
    assert event["data"]["origin"] == "node-a"
    assert event["data"]["data"]["id"] == entry["id"]


async def test_revocation_on_one_node_is_immediate_on_the_other(
    nodes: tuple[Client, Client],
) -> None:
    a, b = nodes
    token = await a.register("eve")
    assert (await b.call("GET", "/api/auth/me", token))[0] == 200  # now cached on node B
    socket_on_b = await b.ws(token)
    assert (await a.call("POST", "/api/auth/logout", token))[0] == 204
    status, body, _ = await b.call("GET", "/api/auth/me", token)
    assert status == 401 and body["code"] == "invalid_token"
    code, _ = await socket_on_b.closed()
    assert code == 4001


async def test_realtime_topics_span_nodes_with_one_sequence(nodes: tuple[Client, Client]) -> None:
    a, b = nodes
    on_a = await a.ws(await a.register("cal"))
    on_b = await b.ws(await b.register("dee"))
    reply_a = await on_a.request("subscribe", "guestbook:main")
    reply_b = await on_b.request("subscribe", "guestbook:main")
    assert reply_a["data"]["epoch"] == reply_b["data"]["epoch"]
    # Presence is cluster-wide.
    names = [p["username"] for p in reply_b["data"]["presence"]]
    assert names == ["cal", "dee"]
    joins = await on_a.events(2, ephemeral=True)  # its own join, then dee's from node B
    assert [j["data"]["user"]["username"] for j in joins] == ["cal", "dee"]
    for client, text in ((a, "one"), (b, "two"), (a, "three")):
        status, _, _ = await client.call(
            "POST",
            "/api/guestbook/entries",
            client.tokens[next(iter(client.tokens))],
            json={"text": text},
        )
        assert status == 201
    got_a = await on_a.events(3)
    got_b = await on_b.events(3)
    assert [e["seq"] for e in got_a] == [e["seq"] for e in got_b] == [1, 2, 3]
    assert [e["data"]["entry"]["text"] for e in got_b] == ["one", "two", "three"]
    # Resume on the other node after a disconnect.
    await on_a.ws.close()
    await b.call("POST", "/api/guestbook/entries", b.tokens["dee"], json={"text": "four"})
    again = await b.ws(a.tokens["cal"])
    reply = await again.request(
        "subscribe", "guestbook:main", {"since": 3, "epoch": reply_a["data"]["epoch"]}
    )
    assert reply["data"]["recovered"] is True
    (missed,) = await again.events(1)
    assert missed["seq"] == 4 and missed["data"]["entry"]["text"] == "four"


async def test_the_dashboard_sees_every_node_and_alerts_once(
    nodes: tuple[Client, Client],
) -> None:
    a, b = nodes
    admin = await _make_admin(b, "ops")
    watcher = await b.ws(admin)
    assert (await watcher.request("subscribe", "admin:stats"))["op"] == "reply"
    seen: set[str] = set()
    while seen != {"node-a", "node-b"}:  # samples of both nodes reach a dashboard on B
        (frame,) = await watcher.events(1, ephemeral=True)
        seen.add(frame["data"]["node"])
    _, stats, _ = await b.call("GET", "/api/admin/stats", admin)
    assert [n["node"] for n in stats["nodes"]] == ["node-a", "node-b"]
    await a.register("gus")
    for _ in range(2):  # two failed logins on node A: one alert for the whole cluster
        await a.call("POST", "/api/auth/login", json={"username": "gus", "password": "nope"})
    alerts: list[dict[str, Any]] = []

    async def raised() -> bool:
        _, page, _ = await b.call("GET", "/api/admin/notifications", admin)
        alerts[:] = [n for n in page["notifications"] if n["kind"] == "logins.failed"]
        return bool(alerts)

    await eventually(raised, "the failed-logins alert reaches node B")
    assert len(alerts) == 1 and alerts[0]["node"] == "node-a"


async def _make_admin(client: Client, name: str) -> str:
    """Create an admin with the CLI (against the shared store), then log in on ``client``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncstream",
        "user",
        "create",
        name,
        "--admin",
        "--password-stdin",
        "--config",
        os.environ["SYNCSTREAM_CONFIG"],
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate((PASSWORD + "\n").encode())
    assert proc.returncode == 0, err
    status, body, _ = await client.call(
        "POST", "/api/auth/login", json={"username": name, "password": PASSWORD}
    )
    assert status == 200, body
    return str(body["token"])
