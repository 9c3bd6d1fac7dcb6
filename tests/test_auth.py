"""Accounts, tokens, lockout, bans, stream keys and the audit trail, through the HTTP API."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncstream.auth.service import client_key
from syncstream.logs import REDACTED

from .support import PASSWORD, Client, running


async def test_register_login_me_logout(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        token = await c.register("Alice")
        status, me, _ = await c.call("GET", "/api/auth/me", token)
        assert status == 200 and me["username"] == "Alice" and me["role"] == "user"
        assert me["created_at"].endswith("Z")
        status, body, _ = await c.call(
            "POST", "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert status == 200 and body["user"]["id"] == me["id"]
        second = body["token"]
        status, body, _ = await c.call("GET", "/api/auth/tokens", second)
        assert len(body["tokens"]) == 2
        assert sum(t["current"] for t in body["tokens"]) == 1
        status, _, _ = await c.call("POST", "/api/auth/logout", second)
        assert status == 204
        status, body, _ = await c.call("GET", "/api/auth/me", second)
        assert status == 401 and body["code"] == "invalid_token"
        status, _, _ = await c.call("GET", "/api/auth/me", token)
        assert status == 200


async def test_registration_rules(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        await c.register("bob")
        status, body, _ = await c.call(
            "POST", "/api/auth/register", json={"username": "BOB", "password": PASSWORD}
        )
        assert status == 409 and body["code"] == "username_taken"
        status, body, _ = await c.call(
            "POST", "/api/auth/register", json={"username": "carol", "password": "short"}
        )
        assert status == 422 and body["code"] == "weak_password"
        status, body, _ = await c.call(
            "POST", "/api/auth/register", json={"username": "../etc", "password": PASSWORD}
        )
        assert status == 422 and body["code"] == "invalid_username"
    async with running(tmp_path / "closed", **{"auth.registration": False}) as c:
        status, body, _ = await c.call(
            "POST", "/api/auth/register", json={"username": "dave", "password": PASSWORD}
        )
        assert status == 403 and body["code"] == "registration_closed"


async def test_tokens_are_hashed_at_rest_and_expire(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        token = await c.register("erin")
        store = c.server.core.store  # type: ignore[union-attr]
        rows = await store.fetchall("SELECT token_hash FROM tokens")
        assert rows and all(token not in r["token_hash"] for r in rows)
        await store.execute("UPDATE tokens SET expires_at = ?", time.time() - 1)
        status, body, _ = await c.call("GET", "/api/auth/me", token)
        assert status == 401 and body["code"] == "token_expired"


async def test_forged_and_malformed_tokens(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("frank")
        for bad in (token[:-2] + "xx", "sst_" + "A" * 43, "garbage", "x" * 5000):
            status, body, _ = await c.call("GET", "/api/auth/me", bad)
            assert status == 401 and body["code"] == "invalid_token"
        status, body, resp = await c.call("GET", "/api/auth/me")
        assert status == 401 and body["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        status, body, _ = await c.call(
            "GET", "/api/auth/me", headers={"Authorization": "Basic abc"}
        )
        assert status == 401 and body["code"] == "invalid_token"


async def login_from(c: Client, address: str, username: str, password: str) -> tuple[int, Any]:
    """A login sent from another loopback address (Linux routes all of 127/8 to lo)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            c.url("/api/auth/login"), json={"username": username, "password": password}
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_failed_logins_throttle_the_address_and_name_alike(
    tmp_path: Path, backend: str
) -> None:
    overrides = {"auth.login_max_failures": 3, "auth.lockout_seconds": 60}
    async with running(tmp_path, backend, **overrides) as c:
        await c.register("gina")
        answers: dict[str, list[tuple[int, Any]]] = {}
        for name in ("gina", "ghost"):  # an account, and a name no account has
            answers[name] = []
            for _ in range(4):
                status, body, resp = await c.call(
                    "POST", "/api/auth/login", json={"username": name, "password": "wrong-pass"}
                )
                retry = resp.headers.get("Retry-After")
                answers[name].append((status, {**body, "detail": "", "retry": retry is not None}))
                if status == 429:
                    assert 0 < int(retry or 0) <= 61
        # The same answers for both names: nothing tells that gina exists.
        assert answers["gina"] == answers["ghost"]
        assert [a[1]["code"] for a in answers["gina"]] == ["invalid_credentials"] * 3 + [
            "login_throttled"
        ]
        # From the throttled address even the right password waits ...
        status, body, _ = await c.call(
            "POST", "/api/auth/login", json={"username": "gina", "password": PASSWORD}
        )
        assert status == 429 and body["code"] == "login_throttled"
        # ... but the owner, elsewhere, logs in: the attacker cannot lock her out.
        status, body = await login_from(c, "127.0.0.2", "gina", PASSWORD)
        assert status == 200, body
        actions = [r["action"] for r in await c.server.core.audit.query(limit=50)]  # type: ignore[union-attr]
        assert actions.count("auth.login_throttle_started") == 2
        assert actions.count("auth.login_failed") == 6
    if backend == "sqlite":  # the throttle is in the store: it holds across a restart
        async with running(tmp_path, backend, **overrides) as again:
            status, body, _ = await again.call(
                "POST", "/api/auth/login", json={"username": "gina", "password": PASSWORD}
            )
            assert status == 429 and body["code"] == "login_throttled"


def test_login_limits_count_an_ipv6_client_by_its_64() -> None:
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == ("2001:db8:1:2::/64")
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "-" and client_key("") == "-"


async def test_unknown_user_and_wrong_password_look_the_same(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        await c.register("hank")
        a = await c.call(
            "POST", "/api/auth/login", json={"username": "nobody", "password": "x" * 9}
        )
        b = await c.call("POST", "/api/auth/login", json={"username": "hank", "password": "x" * 9})
        assert a[0] == b[0] == 401
        assert a[1] == b[1]


async def test_per_ip_login_rate_limit(tmp_path: Path) -> None:
    async with running(tmp_path, **{"auth.login_per_ip_per_minute": 3}) as c:
        codes = []
        for _ in range(5):
            _, body, resp = await c.call(
                "POST", "/api/auth/login", json={"username": "nobody", "password": "whatever1"}
            )
            codes.append(body["code"])
        assert codes[:3] == ["invalid_credentials"] * 3
        assert codes[3:] == ["rate_limited"] * 2
        assert int(resp.headers["Retry-After"]) >= 1


async def test_admin_routes_bans_and_roles(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        admin = await c.admin()
        user = await c.register("ivan")
        status, body, _ = await c.call("GET", "/api/users", user)
        assert status == 403 and body["code"] == "admin_required"
        status, body, _ = await c.call("GET", "/api/users?search=iv", admin)
        assert status == 200 and body["total"] == 1
        ivan = body["users"][0]["id"]
        status, body, _ = await c.call("PATCH", f"/api/users/{ivan}", admin, json={"banned": True})
        assert status == 200 and body["banned"] is True
        status, body, _ = await c.call("GET", "/api/auth/me", user)
        assert status == 401  # every token was revoked by the ban
        status, body, _ = await c.call(
            "POST", "/api/auth/login", json={"username": "ivan", "password": PASSWORD}
        )
        assert status == 403 and body["code"] == "user_banned"
        status, body, _ = await c.call(
            "PATCH", f"/api/users/{ivan}", admin, json={"banned": False, "role": "admin"}
        )
        assert body["banned"] is False and body["role"] == "admin"
        status, body, _ = await c.call("PATCH", "/api/users/nope", admin, json={"banned": True})
        assert status == 404 and body["code"] == "user_not_found"
        me = (await c.call("GET", "/api/auth/me", admin))[1]["id"]
        status, body, _ = await c.call("PATCH", f"/api/users/{me}", admin, json={"role": "user"})
        assert status == 409
        actions = {r["action"] for r in await c.server.core.audit.query(limit=50)}  # type: ignore[union-attr]
        assert {
            "user.banned",
            "user.unbanned",
            "user.role_changed",
            "auth.tokens_revoked",
        } <= actions


async def test_password_change_revokes_other_tokens(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        first = await c.register("judy")
        _, body, _ = await c.call(
            "POST", "/api/auth/login", json={"username": "judy", "password": PASSWORD}
        )
        second = body["token"]
        status, body, _ = await c.call(
            "POST",
            "/api/auth/password",
            first,
            json={"old_password": "nope-nope", "new_password": "n3w password"},
        )
        assert status == 403 and body["code"] == "invalid_credentials"
        status, _, _ = await c.call(
            "POST",
            "/api/auth/password",
            first,
            json={"old_password": PASSWORD, "new_password": "n3w password"},
        )
        assert status == 204
        assert (await c.call("GET", "/api/auth/me", first))[0] == 200
        assert (await c.call("GET", "/api/auth/me", second))[0] == 401
        status, _, _ = await c.call(
            "POST", "/api/auth/login", json={"username": "judy", "password": "n3w password"}
        )
        assert status == 200


async def test_revoke_a_token_by_id(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        first = await c.register("kate")
        _, body, _ = await c.call(
            "POST", "/api/auth/login", json={"username": "kate", "password": PASSWORD}
        )
        status, _, _ = await c.call("DELETE", f"/api/auth/tokens/{body['token_id']}", first)
        assert status == 204
        assert (await c.call("GET", "/api/auth/me", body["token"]))[0] == 401
        status, err, _ = await c.call("DELETE", f"/api/auth/tokens/{body['token_id']}", first)
        assert status == 404 and err["code"] == "token_not_found"
        other = await c.register("leo")
        status, _, _ = await c.call("DELETE", "/api/auth/tokens/" + body["token_id"], other)
        assert status == 404


async def test_stream_keys_rotate(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        auth = c.server.core.auth  # type: ignore[union-attr]
        token = await c.register("Mia")
        status, body, _ = await c.call("POST", "/api/auth/stream-key", token, json={})
        assert status == 200 and body["stream"] == "mia" and body["rtmp_url"].endswith("/live")
        first = body["key"]
        owner = await auth.resolve_stream_key(first)
        assert owner is not None and owner[0].username == "Mia" and owner[1] == "mia"
        _, body, _ = await c.call("POST", "/api/auth/stream-key", token, json={})
        assert await auth.resolve_stream_key(first) is None
        assert await auth.resolve_stream_key(body["key"]) is not None
        _, body, _ = await c.call("POST", "/api/auth/stream-key", token, json={"stream": "mia-2"})
        assert body["stream"] == "mia-2"
        _, listed, _ = await c.call("GET", "/api/auth/streams", token)
        assert [s["stream"] for s in listed["streams"]] == ["mia", "mia-2"]
        other = await c.register("ned")
        status, body, _ = await c.call(
            "POST", "/api/auth/stream-key", other, json={"stream": "mia"}
        )
        assert status == 409 and body["code"] == "stream_taken"
        status, body, _ = await c.call(
            "POST", "/api/auth/stream-key", other, json={"stream": "../x"}
        )
        assert status == 422


async def test_token_in_the_url_is_refused_on_http_routes(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        token = await c.register("olga")
        for path in ("/api/auth/me", "/api/chat/rooms", "/api/files"):
            status, body, resp = await c.call("GET", f"{path}?token={token}")
            assert status == 401 and body["code"] == "token_in_url", (path, body)
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            # Not even beside a valid header: the URL has leaked it already.
            status, body, _ = await c.call("GET", f"{path}?token={token}", token)
            assert status == 401 and body["code"] == "token_in_url"
            assert (await c.call("GET", path, token))[0] == 200
        # The WebSocket handshake, where browsers cannot set headers, still takes it.
        sock = await c.ws(token)
        assert sock.hello["user"]["username"] == "olga"
        await sock.ws.close()


async def test_tokens_never_reach_logs_or_the_audit_trail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from structlog.testing import capture_logs

    async with running(tmp_path, **{"logging.access_log": True}) as c:
        token = await c.register("pete")
        status, folder, _ = await c.call(
            "POST", "/api/files/folders", token, json={"name": "shared"}
        )
        assert status == 201, folder
        status, link, _ = await c.call("POST", f"/api/files/{folder['id']}/links", token, json={})
        assert status == 201, link
        secrets = [token, token[4:], link["token"]]
        # INFO: the most the server lets libraries log (see syncstream.logs).
        with caplog.at_level(logging.INFO), capture_logs() as logs:
            for header in (
                f"Token {token}",  # wrong scheme
                token,  # no scheme
                f"Bearer {token} trailing",
                f"Bearer {token[:-3]}",  # forged
            ):
                status, _, _ = await c.call(
                    "GET", "/api/auth/me", headers={"Authorization": header}
                )
                assert status == 401, header
            await c.call("GET", f"/api/auth/me?token={token}")
            await c.call("GET", f"/api/auth/me?token={token}", token)
            await c.call("GET", f"/api/nope?token={token}")
            assert (await c.call("GET", f"/api/files/links/{link['token']}"))[0] == 200
            await c.call("GET", f"/api/files/links/{link['token']}/content")  # a folder: 4xx
            await c.call("POST", "/api/auth/login", json={"username": token[:60], "password": "x"})
            sock = await c.ws(token)
            await sock.ws.close()
            await c.call("POST", "/api/auth/logout", token)
        assert any(e["event"] == "http.request" for e in logs), "the access log was on"
        written = repr(logs) + caplog.text
        audit = repr(await c.server.core.audit.query(limit=500))  # type: ignore[union-attr]
        leaks = [
            (where, secret[:8])
            for secret in secrets
            for where, text in (("logs", written), ("audit", audit))
            if secret in text
        ]
        assert not leaks
        assert f"/api/files/links/{REDACTED}" in written
