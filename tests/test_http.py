"""HTTP basics against a real server: health, metrics, OpenAPI, problem-JSON for bad input."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from openapi_spec_validator import validate

from .files_support import TUS, form_upload, metadata
from .support import Client, running, spawn_node, write_plugin

PROBLEM = "application/problem+json"


def assert_problem(status: int, body: object, resp: aiohttp.ClientResponse, code: str) -> None:
    assert resp.content_type == PROBLEM, (status, body)
    assert isinstance(body, dict)
    assert body["code"] == code, body
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    assert "Traceback" not in str(body)


async def test_health_ready_metrics_openapi(tmp_path: Path, backend: str) -> None:
    gc_callbacks = len(gc.callbacks)
    async with running(tmp_path, backend) as c:
        status, body, _ = await c.call("GET", "/healthz")
        assert status == 200 and body["status"] == "ok"
        status, body, _ = await c.call("GET", "/readyz")
        assert status == 200 and body["status"] == "ready"
        status, text, resp = await c.call("GET", "/metrics")
        assert status == 200 and resp.content_type == "text/plain"
        for name in (
            "syncstream_http_requests_total",
            "syncstream_http_request_duration_seconds",
            "syncstream_ws_connections",
            "syncstream_bus_events_total",
            "syncstream_event_loop_lag_seconds",
        ):
            assert name in text
        assert 'route="/healthz"' in text
        assert len(gc.callbacks) == gc_callbacks + 2  # the pause timer and the GC policy
        gc.collect(2)  # timed: the pause shows per generation
        _, text, _ = await c.call("GET", "/metrics")
        count = text.split('syncstream_gc_pause_seconds_count{generation="2"} ')[1].split()[0]
        assert float(count) >= 1
        status, spec, _ = await c.call("GET", "/api/openapi.json")
        assert status == 200 and spec["openapi"].startswith("3.")
        login = spec["paths"]["/api/auth/login"]["post"]
        assert login["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/Credentials"
        )
        assert "/api/guestbook/entries" in spec["paths"]
        assert spec["paths"]["/api/users/{user_id}"]["patch"]["security"] == [{"bearer": []}]
        validate(spec)  # the whole document against the OpenAPI 3.1 schema
        # Routes whose parameters carry a regex holding braces keep a clean template ...
        assert "/api/files/{file_id}" in spec["paths"]
        assert not [path for path in spec["paths"] if "}}" in path or "{{" in path]
        # ... and the regex is the parameter's pattern.
        param = spec["paths"]["/api/files/{file_id}"]["get"]["parameters"][0]
        assert param["name"] == "file_id" and param["schema"]["pattern"].startswith("^")
        # Numbers state the bounds the server enforces: a field's own, or the core's guard.
        users = {p["name"]: p for p in spec["paths"]["/api/users"]["get"]["parameters"]}
        assert users["limit"]["schema"]["maximum"] == 500
        assert users["offset"]["schema"]["maximum"] == 2**53 - 1
        # Each route once: no trailing-slash alias (served for clients that need one) shows.
        paths = list(spec["paths"])
        assert [p for p in paths if p.endswith("/") and p != "/"] == []
        assert len({p.rstrip("/") for p in paths}) == len(paths)
        assert "/api/board/game/{game_id}/claim-victory" in paths
        # Summaries and descriptions are Markdown: no reStructuredText ``literal`` shows raw,
        # and a summary is its docstring's whole first paragraph, not its first line.
        texts = list(_texts(spec))
        assert len(texts) > len(paths) and [t for t in texts if "``" in t] == []
        assert spec["paths"]["/api/node"]["get"]["summary"] == (
            "What runs on this node: version, plugins, and the links plugins announce (`{url}`"
            " stands for the node's address) — what the landing page at `/` shows."
        )
    assert len(gc.callbacks) == gc_callbacks, "the server's GC callbacks go with it"


def _texts(document: object) -> Iterator[str]:
    """Every summary and description in an OpenAPI document."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key in ("summary", "description") and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(document, list):
        for item in document:
            yield from _texts(item)


async def test_unknown_route_and_method(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        status, body, resp = await c.call("GET", "/api/nope")
        assert status == 404
        assert_problem(status, body, resp, "not_found")
        status, body, resp = await c.call("DELETE", "/api/auth/login")
        assert status == 405
        assert_problem(status, body, resp, "method_not_allowed")
        assert "POST" in resp.headers["Allow"]


async def test_malformed_json_wrong_type_and_validation(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        headers = {"Content-Type": "application/json"}
        status, body, resp = await c.call("POST", "/api/auth/login", data=b"{nope", headers=headers)
        assert status == 400
        assert_problem(status, body, resp, "invalid_json")
        status, body, resp = await c.call(
            "POST",
            "/api/auth/login",
            data=b"a=b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 415
        assert_problem(status, body, resp, "unsupported_media_type")
        status, body, resp = await c.call("POST", "/api/auth/login", json={"username": 5})
        assert status == 422
        assert_problem(status, body, resp, "validation_failed")
        fields = {e["field"] for e in body["errors"]}
        assert fields == {"username", "password"}
        status, body, resp = await c.call("POST", "/api/auth/login", json=[1, 2])
        assert status == 422
        token = await c.register("alice")
        status, body, resp = await c.call("GET", "/api/guestbook/entries?limit=lots", token)
        assert status == 422 and body["errors"][0]["field"] == "limit"


async def test_numbers_and_strings_out_of_bounds_are_422(tmp_path: Path, backend: str) -> None:
    """The shared guard: numbers beyond +-(2**53 - 1), NaN-free, and strings without NUL."""
    async with running(tmp_path, backend) as c:
        token = await c.register("alice")
        status, room, _ = await c.call("POST", "/api/chat/rooms", token, json={"name": "r"})
        assert status == 201, room
        messages = f"/api/chat/rooms/{room['id']}/messages"
        for before in ("9" * 30, str(2**63), str(2**53)):
            status, body, resp = await c.call("GET", f"{messages}?before={before}", token)
            assert_problem(status, body, resp, "validation_failed")
            assert body["errors"][0]["field"] == "before"
        status, body, _ = await c.call("GET", f"{messages}?before={2**53 - 1}", token)
        assert status == 200
        status, body, resp = await c.call("GET", f"{messages}?q=a%00b", token)
        assert_problem(status, body, resp, "validation_failed")
        # orjson reads an integer of 30 digits as a float: nested in free-form data, still caught.
        for bad in (10**30, -(10**30), 1e300, 2**63):
            status, body, resp = await c.call(
                "POST", "/api/realtime/publish", token,
                json={"topic": f"chat:{room['id']}", "data": {"n": [bad]}},
            )  # fmt: skip
            assert_problem(status, body, resp, "validation_failed")
            assert body["errors"][0]["field"] == "data.n.0"
        status, body, resp = await c.call("POST", messages, token, json={"text": "a\x00b"})
        assert_problem(status, body, resp, "validation_failed")
        status, body, resp = await c.call("GET", "/api/chat/rooms/a%00b/messages", token)
        assert_problem(status, body, resp, "not_found")


async def test_numbers_in_headers_are_ascii_digits_or_refused(tmp_path: Path) -> None:
    """Headers carry numbers no model parses (Range, tus's Upload-Length): ``"²"`` is a digit to
    ``str.isdigit`` but not to ``int``, and a Range end that is no number at all made a 500."""
    async with running(tmp_path) as c:
        token = await c.register("alice")
        status, made = await form_upload(c, token, "a.bin", b"0123456789")
        assert status == 201, made
        content = f"/api/files/{made['files'][0]['id']}/content"
        for bad in ("bytes=0-x", "bytes=\u00b2-3", "bytes=1-\u00b2", "bytes=-\u00b2", "bytes=-"):
            status, body, _ = await c.call("GET", content, token, headers={"Range": bad})
            assert status == 200 and str(body) == "0123456789", (bad, status)  # RFC 9110: ignored
        status, body, _ = await c.call("GET", content, token, headers={"Range": "bytes=-3"})
        assert status == 206 and str(body) == "789"
        for bad in ("\u00b2", "9" * 19, "1e3", "-1"):
            headers = {**TUS, "Upload-Length": bad, "Upload-Metadata": metadata(filename="a")}
            status, body, resp = await c.call("POST", "/api/files/tus", token, headers=headers)
            assert_problem(status, body, resp, "invalid_upload_length")


async def test_oversized_body_is_413(tmp_path: Path) -> None:
    async with running(tmp_path, **{"server.max_body_bytes": 1024}) as c:
        big = {"username": "x" * 2000, "password": "y"}
        status, body, resp = await c.call("POST", "/api/auth/login", json=big)
        assert status == 413
        assert_problem(status, body, resp, "body_too_large")
        status, _, _ = await c.call("GET", "/healthz")
        assert status == 200


async def test_unexpected_errors_are_500_problems_without_traceback(tmp_path: Path) -> None:
    plugins = tmp_path / "extra"
    write_plugin(
        plugins,
        "boom",
        "from syncstream.sdk import Plugin\n"
        "async def setup(ctx):\n"
        "    @ctx.api.route('GET', '', auth='public')\n"
        "    async def boom(call):\n"
        "        raise RuntimeError('secret internals')\n"
        "plugin = Plugin(setup=setup)\n",
    )
    async with running(tmp_path, plugin_paths=[str(plugins)]) as c:
        status, body, resp = await c.call("GET", "/api/boom")
        assert status == 500
        assert_problem(status, body, resp, "internal_error")
        assert "secret" not in str(body) and body["request_id"]


async def test_a_constraint_hit_by_a_concurrent_change_is_409(tmp_path: Path) -> None:
    """A handler that meets a constraint it did not expect (a parent deleted meanwhile) gives
    the caller a 409 to retry, not a 500."""
    plugins = tmp_path / "extra"
    write_plugin(
        plugins,
        "racy",
        "from syncstream.sdk import Plugin\n"
        "async def setup(ctx):\n"
        "    @ctx.api.route('POST', '', auth='public')\n"
        "    async def racy(call):\n"
        "        await ctx.store.execute('CREATE TABLE IF NOT EXISTS racy (id TEXT PRIMARY KEY)')\n"
        "        await ctx.store.execute('INSERT INTO racy (id) VALUES (?)', 'one')\n"
        "plugin = Plugin(setup=setup)\n",
    )
    async with running(tmp_path, plugin_paths=[str(plugins)]) as c:
        status, _, _ = await c.call("POST", "/api/racy")
        assert status == 204
        status, body, resp = await c.call("POST", "/api/racy")
        assert status == 409
        assert_problem(status, body, resp, "conflict")


async def test_cors_preflight_and_headers(tmp_path: Path) -> None:
    async with running(tmp_path, **{"server.cors_origins": ["https://app.example"]}) as c:
        origin = {"Origin": "https://app.example"}
        status, _, resp = await c.call(
            "OPTIONS",
            "/api/auth/login",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        )
        assert status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        # The files plugin contributed its tus headers; the core lists none of its own.
        assert "Upload-Offset" in resp.headers["Access-Control-Allow-Headers"]
        assert "Tus-Version" in resp.headers["Access-Control-Expose-Headers"]
        status, _, resp = await c.call("GET", "/healthz", headers=origin)
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        status, _, resp = await c.call(
            "GET", "/healthz", headers={"Origin": "https://evil.example"}
        )
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_problems_are_logged_with_their_code(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    async with running(tmp_path) as c:
        with capture_logs() as logs:
            await c.call(
                "POST", "/api/auth/login", data=b"{", headers={"Content-Type": "application/json"}
            )
            await c.call("GET", "/api/auth/me", "sst_forged")
            sock = await c.ws(await c.register("logme"))
            await sock.request("subscribe", "nosuch:topic")
    codes = {(e["event"], e.get("code")) for e in logs}
    assert ("http.problem", "invalid_json") in codes
    assert ("http.problem", "invalid_token") in codes
    assert ("ws.error", "unknown_topic") in codes


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 30)
    writer.close()
    return answer


async def test_no_token_reaches_the_written_logs_whoever_logs_it(tmp_path: Path) -> None:
    """What the node really writes (its stderr, JSON lines): requests aiohttp's own parser
    refuses quote the bad header or request line in its errors, the token with it."""
    config = tmp_path / "node.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nrtmp: {{enabled: false}}\n"
        "logging: {level: info, access_log: true}\n"
    )
    node = spawn_node(config)
    try:
        await node.wait_ready()
        async with aiohttp.ClientSession() as session:
            token = await Client(node.base, session).register("pete")
            me = "GET /api/auth/me HTTP/1.1\r\nHost: x\r\nAuthorization: "
            for request in (
                f"{me}Bearer\x01{token}\r\n\r\n",
                f"{me}Bearer {token}\x7f\r\n\r\n",
                f"GET /ws?token={token}&pad={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n",
                f"GET /healthz?token={token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ):
                await _raw(node.port, request.encode("latin-1"))
            status, problem, _ = await Client(node.base, session).call(
                "GET", f"/api/live/streams?token={token}"
            )
            assert status == 401 and problem["code"] == "token_in_url", "public routes too"
    finally:
        node.stop()
    _, err = node.proc.communicate()
    assert "Invalid header value" in err and "Got more than" in err, "aiohttp logged them"
    assert token not in err and token[4:] not in err
