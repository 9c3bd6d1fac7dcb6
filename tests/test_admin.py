"""Admin plugin end to end over HTTP and the gateway: only admins get in; users listed,
sorted and paged; one user's whole picture from every plugin; bans that end sessions,
streams and calls at once; password resets, token revocation, stream keys; the activity log
filtered and exported; notifications (streams, failed logins) live, unread, and delivered to
a signed webhook; live figures and their history; the plugins' own admin actions."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from plugins.admin.alerts import duration, job_failed_title
from plugins.admin.analytics import MINUTE, QUARTER, Sampler, history

from .files_support import form_upload
from .support import Client, running
from .test_calls import next_of
from .test_chess import start_game
from .test_live import live_server
from .test_media import submit, wait_job


async def me(c: Client, token: str) -> dict[str, Any]:
    _, body, _ = await c.call("GET", "/api/auth/me", token)
    return dict(body)


async def test_only_admins_get_in(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        user = await c.register("mallory")
        routes = [("GET", "/api/admin/users"), ("GET", "/api/admin/stats"),
                  ("GET", "/api/admin/activity"), ("GET", "/api/admin/notifications"),
                  ("GET", "/api/admin/activity/export"),
                  ("POST", f"/api/admin/users/{'0' * 32}/password")]  # fmt: skip
        for method, path in routes:
            status, body, _ = await c.call(method, path, user)
            assert status == 403 and body["code"] == "admin_required", (path, body)
            status, body, _ = await c.call(method, path)
            assert status == 401, (path, body)
            status, body, _ = await c.call(method, path, "ss_forged.token")
            assert status == 401, (path, body)
        sock = await c.ws(user)
        reply = await sock.request("subscribe", "admin:notifications")
        assert reply["op"] == "error" and reply["code"] == "forbidden"
        status, html, resp = await c.call("GET", "/admin")
        assert status == 200 and "/admin/static/admin.js" in html
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        status, _, _ = await c.call("GET", "/admin/static/../../syncstream.yaml")
        assert status == 404
        await sock.ws.close()


async def test_a_demoted_admin_loses_the_admin_topics_at_once(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        root = await c.admin()
        other = await c.admin("second")
        _, second, _ = await c.call("GET", "/api/auth/me", other)
        sock = await c.ws(other)
        assert (await sock.request("subscribe", "admin:notifications"))["op"] == "reply"
        status, _, _ = await c.call(
            "PATCH", f"/api/users/{second['id']}", root, json={"role": "user"}
        )
        assert status == 200
        frame = await sock.recv()  # the socket stays; the admin topic goes
        assert frame == {
            "op": "unsubscribe",
            "topic": "admin:notifications",
            "data": {"reason": "role_changed"},
        }
        reply = await sock.request("subscribe", "admin:notifications")
        assert reply["op"] == "error" and reply["code"] == "forbidden"
        status, _, _ = await c.call("GET", "/api/admin/users", other)
        assert status == 403
        await sock.ws.close()


async def test_an_expired_admin_session_gets_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, **{"auth.token_ttl_seconds": 1}) as c:
        admin = await c.admin()
        status, _, _ = await c.call("GET", "/api/admin/users", admin)
        assert status == 200
        await asyncio.sleep(1.2)
        status, problem, _ = await c.call("GET", "/api/admin/users", admin)
        assert status == 401 and problem["code"] == "token_expired"


async def test_users_listed_searched_sorted_and_paged(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        admin = await c.admin()
        for name in ("zoe", "yann", "xavier", "walter"):
            await c.register(name)
            await asyncio.sleep(0.01)
        _, page, _ = await c.call("GET", "/api/admin/users?sort=username&limit=2", admin)
        assert page["total"] == 5 and [u["username"] for u in page["users"]] == ["root", "walter"]
        _, page, _ = await c.call(
            "GET", "/api/admin/users?sort=created_at&order=desc&limit=2&offset=1", admin
        )
        assert [u["username"] for u in page["users"]] == ["xavier", "yann"]
        _, page, _ = await c.call("GET", "/api/admin/users?search=AV&role=user", admin)
        assert [u["username"] for u in page["users"]] == ["xavier"]
        assert page["users"][0]["sessions"] == 1 and page["users"][0]["last_seen_at"]
        _, page, _ = await c.call("GET", "/api/admin/users?role=admin", admin)
        assert [u["username"] for u in page["users"]] == ["root"]
        for query in ("limit=0", "limit=201", "sort=password", "offset=-1", "order=up",
                      "banned=perhaps", "surprise=1"):  # fmt: skip
            status, problem, _ = await c.call("GET", f"/api/admin/users?{query}", admin)
            assert status == 422 and problem["code"], query
        nobody = f"/api/admin/users/{'0' * 32}"
        for method, path in (("GET", ""), ("POST", "/password"), ("POST", "/revoke-tokens"),
                             ("POST", "/stream-key")):  # fmt: skip
            status, problem, _ = await c.call(method, nobody + path, admin, json={})
            assert status == 404 and problem["code"] == "user_not_found", path
        status, _, _ = await c.call("GET", "/api/admin/users/not-an-id", admin)
        assert status == 404


async def test_a_users_whole_picture_and_what_an_admin_does_to_it(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        c = live.c
        admin = await c.admin()
        bob_token, key = await live.account("bob")
        bob = await me(c, bob_token)
        alice = await c.register("alice")
        status, _ = await form_upload(c, bob_token, "notes.txt", b"x" * 1234)
        assert status == 201
        await start_game(c, bob_token, "alice", alice)
        await c.call("GET", "/api/blackjack/wallet", bob_token)
        _, call, _ = await c.call("POST", "/api/calls", bob_token, json={"usernames": ["alice"]})
        await c.call("POST", f"/api/calls/{call['id']}/accept", alice)
        publisher = await live.push(key, 30)
        await live.wait_live("bob")

        status, view, _ = await c.call("GET", f"/api/admin/users/{bob['id']}", admin)
        assert status == 200, view
        facts = view["facts"]
        assert facts["files"]["files"] == 1 and facts["files"]["bytes"] == 1234
        assert len(facts["chess"]["playing_now"]) == 1 and facts["chess"]["rating"] == 1500
        assert facts["blackjack"]["balance"] > 0
        assert facts["calls"]["in_call"] == call["id"]
        assert facts["live"] == {"stream_keys": ["bob"], "live_now": ["bob"]}
        assert "jobs" in facts and len(view["sessions"]) == 1
        assert {"stream.published", "file.uploaded"} <= {a["action"] for a in view["activity"]}

        # A ban ends his sessions, his stream and his call at once.
        sock = await c.ws(bob_token)
        status, user, _ = await c.call(
            "PATCH", f"/api/users/{bob['id']}", admin, json={"banned": True}
        )
        assert status == 200 and user["banned"] is True
        code, _ = await sock.closed()
        assert code is not None
        assert await asyncio.wait_for(publisher.wait(), 15) is not None  # ffmpeg was cut off
        status, _, _ = await c.call("GET", "/api/auth/me", bob_token)
        assert status in (401, 403)
        _, alice_call, _ = await c.call("GET", "/api/calls", alice)
        assert alice_call["calls"][0]["status"] == "ended"
        status, _, _ = await c.call("PATCH", f"/api/users/{bob['id']}", admin,
                                    json={"banned": False})  # fmt: skip
        assert status == 200

        # Password reset: the old one stops working, the new one (shown once) works.
        status, reset, _ = await c.call("POST", f"/api/admin/users/{bob['id']}/password", admin)
        assert status == 200 and len(reset["password"]) >= 16
        login_path = "/api/auth/login"
        old = {"username": "bob", "password": "correct horse battery"}
        status, _, _ = await c.call("POST", login_path, json=old)
        assert status == 401
        new = {"username": "bob", "password": reset["password"]}
        status, login, _ = await c.call("POST", login_path, json=new)
        assert status == 200
        status, revoked, _ = await c.call(
            "POST", f"/api/admin/users/{bob['id']}/revoke-tokens", admin
        )
        assert status == 200 and revoked["revoked"] == 1
        status, _, _ = await c.call("GET", "/api/auth/me", login["token"])
        assert status == 401
        status, rotated, _ = await c.call(
            "POST", f"/api/admin/users/{bob['id']}/stream-key", admin, json={}
        )
        assert status == 200 and rotated["stream"] == "bob" and rotated["key"] != key
        status, _, _ = await c.call(
            "POST", f"/api/admin/users/{bob['id']}/stream-key", admin, json={"stream": "../x"}
        )
        assert status == 422
        _, log, _ = await c.call("GET", "/api/admin/activity?user=bob&limit=50", admin)
        actions = {a["action"] for a in log["activity"]}
        assert {"user.banned", "user.unbanned", "auth.password_reset", "admin.tokens_revoked",
                "admin.stream_key_rotated"} <= actions  # fmt: skip
        assert all(a["actor"] == "root" for a in log["activity"] if a["action"] == "user.banned")


async def test_activity_is_filtered_and_exported(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        admin = await c.admin()
        await c.register("carol")
        for _ in range(3):
            await c.call("POST", "/api/auth/login", json={"username": "carol", "password": "no"})
        _, page, _ = await c.call("GET", "/api/admin/activity?action=auth.&user=carol", admin)
        actions = [a["action"] for a in page["activity"]]
        assert actions.count("auth.login_failed") == 3 and "user.registered" not in actions
        _, page, _ = await c.call("GET", "/api/admin/activity?action=auth.login_failed&limit=2",
                                  admin)  # fmt: skip
        assert len(page["activity"]) == 2 and page["next"] is not None
        _, rest, _ = await c.call(
            "GET", f"/api/admin/activity?action=auth.login_failed&before={page['next']}", admin
        )
        assert len(rest["activity"]) == 1
        future = "2999-01-01T00:00:00"
        _, none, _ = await c.call("GET", f"/api/admin/activity?since={future}", admin)
        assert none["activity"] == []
        for query in ("action=DROP TABLE", "limit=501", "since=yesterday",
                      f"since={future}&until=2000-01-01T00:00:00", "user=nobody"):  # fmt: skip
            status, problem, _ = await c.call("GET", f"/api/admin/activity?{query}", admin)
            assert status in (404, 422) and problem["code"], query
        async with c.session.get(
            c.url("/api/admin/activity/export?format=csv&user=carol"),
            headers={"Authorization": f"Bearer {admin}"},
        ) as resp:
            assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
            rows = list(csv.DictReader(io.StringIO(await resp.text())))
        assert [r["action"] for r in rows].count("auth.login_failed") == 3
        assert all(r["time"].endswith("Z") for r in rows)
        async with c.session.get(
            c.url("/api/admin/activity/export?format=ndjson&action=auth.login_failed"),
            headers={"Authorization": f"Bearer {admin}"},
        ) as resp:
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
        assert len(lines) == 3 and {line["data"]["username"] for line in lines} == {"carol"}


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    got: list[tuple[dict[str, str], bytes]] = []
    fails = [1]  # the first delivery fails: the sender retries

    async def handle(request: web.Request) -> web.Response:
        if fails:
            fails.pop()
            return web.Response(status=503)
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", got
    finally:
        await runner.cleanup()


async def test_notifications_live_unread_and_to_a_signed_webhook(tmp_path: Path) -> None:
    async with webhook_receiver() as (url, got):
        settings = {
            "plugins.admin.alerts": {"failed_logins": 3, "failed_logins_window_seconds": 60},
            "plugins.admin.webhooks": [
                {"url": url, "secret": "s3cret", "kinds": ["logins.failed"]}
            ],
        }
        async with live_server(tmp_path, **settings) as live:
            c = live.c
            admin = await c.admin()
            sock = await c.ws(admin)
            assert (await sock.request("subscribe", "admin:notifications"))["op"] == "reply"
            _, key = await live.account("dora")
            publisher = await live.push(key, 2)
            started = await next_of(sock, "notification", 20)
            assert started["kind"] == "stream.started" and "dora" in started["title"]
            ended = await next_of(sock, "notification", 20)
            assert ended["kind"] == "stream.ended"
            await publisher.wait()
            for _ in range(3):
                await c.call("POST", "/api/auth/login", json={"username": "dora", "password": "x"})
            alert = await next_of(sock, "notification")
            assert alert["kind"] == "logins.failed" and alert["severity"] == "critical"
            _, page, _ = await c.call("GET", "/api/admin/notifications", admin)
            assert page["unread"] == 3
            assert [n["kind"] for n in page["notifications"]] == [
                "logins.failed", "stream.ended", "stream.started"]  # fmt: skip
            status, _, _ = await c.call("POST", "/api/admin/notifications/read", admin, json={})
            assert status == 200
            _, page, _ = await c.call("GET", "/api/admin/notifications", admin)
            assert page["unread"] == 0 and not any(n["unread"] for n in page["notifications"])
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.1)
            assert len(got) == 1, "one delivery after one retry, and only the kind asked for"
            headers, body = got[0]
            expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert headers["X-SyncStream-Signature"] == f"sha256={expected}"
            assert json.loads(body)["kind"] == "logins.failed"
            await sock.ws.close()


async def test_a_failed_media_job_is_named_in_its_alert(tmp_path: Path) -> None:
    """The alert says which job on which file failed and why, in words (not a dict)."""
    async with running(tmp_path) as c:
        admin = await c.admin()
        sock = await c.ws(admin)
        assert (await sock.request("subscribe", "admin:notifications"))["op"] == "reply"
        alice = await c.register("alice")
        _, uploaded = await form_upload(c, alice, "notes.txt", b"just some words\n" * 20)
        job = await submit(c, alice, uploaded["files"][0]["id"], preset="web-mp4")
        failed = await wait_job(c, alice, job["id"])
        assert failed["status"] == "failed" and failed["error"]["detail"]
        alert = await next_of(sock, "notification", 30)
        assert alert["kind"] == "job.failed"
        assert (
            alert["title"] == f"Media job convert of notes.txt failed: {failed['error']['detail']}"
        )
        assert alert["data"]["file"] == "notes.txt" and alert["data"]["job_id"] == job["id"]
        await sock.ws.close()


def test_alert_titles_are_words_whatever_the_event_lacks() -> None:
    job = {"id": "j1", "operation": {"op": "extract_audio"}, "input": {"name": "talk.mov"},
           "error": {"code": "not_media", "detail": "no audio or video stream"}}  # fmt: skip
    assert (
        job_failed_title(job)
        == "Media job extract audio of talk.mov failed: no audio or video stream"
    )
    assert job_failed_title({**job, "error": {"code": "timeout", "detail": None}}) == (
        "Media job extract audio of talk.mov failed: timeout")  # fmt: skip
    for broken in (None, {}, {"operation": None, "input": {"name": None}, "error": "x"}, "job"):
        title = job_failed_title(broken)
        assert title == "A media job failed: no reason", title
    long = job_failed_title({**job, "error": {"detail": "x" * 500}})
    assert len(long) == 200 and long.endswith("…")
    assert [duration(s) for s in (0.4, 42, 60, 90, 300, 3600, 7500)] == [
        "0 s", "42 s", "1 min", "1.5 min", "5 min", "1 h", "2 h 5 min"]  # fmt: skip


async def test_live_figures_reach_dashboards_and_history_folds(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.admin.sample_seconds": 0.2}) as c:
        admin = await c.admin()
        sock = await c.ws(admin)
        assert (await sock.request("subscribe", "admin:stats"))["op"] == "reply"
        sample = await next_of(sock, "stats")
        sample = await next_of(sock, "stats")  # the second one has rates
        for key in ("cpu_percent", "memory_mb", "loop_lag_ms", "ws_connections",
                    "messages_out_per_s", "errors_per_s", "disk_free_percent", "live.streams",
                    "live.viewers", "live.ingest_kbps", "chess.games_active", "calls.active",
                    "blackjack.tables", "jobs.queued", "files.bytes"):  # fmt: skip
            assert key in sample, key
        assert sample["ws_connections"] >= 1
        _, stats, _ = await c.call("GET", "/api/admin/stats", admin)
        assert [n["node"] for n in stats["nodes"]] == [sample["node"]]
        await sock.ws.close()

        # History: a minute's samples fold into one row, minutes into quarters.
        assert c.server is not None and c.server.core is not None
        store = c.server.core.store
        sampler = Sampler("n1", c.server.core.metrics.registry, c.server.core.oversight,
                          tmp_path, store, 1.0, None)  # type: ignore[arg-type]  # fmt: skip
        base = (time.time() // QUARTER - 1) * QUARTER  # the start of the last full quarter
        for minute in range(16):
            for second, cpu, lag in ((0, 10.0, 1.0), (30, 30.0, 9.0)):
                await sampler._keep({"node": "n1", "time": base + minute * MINUTE + second,
                                     "cpu_percent": cpu, "loop_lag_ms": lag})  # fmt: skip
        minutes = await history(store, MINUTE, base, "n1")
        assert len(minutes) == 15 and minutes[0]["cpu_percent"] == 20.0
        assert minutes[0]["loop_lag_ms"] == 9.0  # lag keeps its peak
        (quarter,) = await history(store, QUARTER, base, "n1")
        assert quarter["time"] == base and quarter["cpu_percent"] == 20.0
        status, body, _ = await c.call("GET", "/api/admin/stats/history?range=24h&node=n1", admin)
        assert status == 200 and len(body["rows"]) == 15
        status, _, _ = await c.call("GET", "/api/admin/stats/history?range=1y", admin)
        assert status == 422


async def test_plugins_admin_actions_are_admin_only_and_audited(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        admin = await c.admin()
        eve, frank = await c.register("eve"), await c.register("frank")
        eve_id = (await me(c, eve))["id"]
        # A chess game ended by an admin: no result, no rating change.
        game = await start_game(c, eve, "frank", frank, rated=True)
        _, live, _ = await c.call("GET", "/api/chess/games/live", admin)
        assert [(g["id"], g["white"], g["black"]) for g in live["games"]] == [
            (game["id"], "eve", "frank")]  # fmt: skip
        status, _, _ = await c.call("GET", "/api/chess/games/live", eve)
        assert status == 403
        status, _, _ = await c.call("POST", f"/api/chess/games/{game['id']}/stop", eve)
        assert status == 403
        status, state, _ = await c.call("POST", f"/api/chess/games/{game['id']}/stop", admin)
        assert status == 200 and state["result"] == "*" and state["termination"] == "ended_by_admin"
        status, _, _ = await c.call("POST", f"/api/chess/games/{game['id']}/stop", admin)
        assert status == 409
        # A call ended by an admin.
        _, call, _ = await c.call("POST", "/api/calls", eve, json={"usernames": ["frank"]})
        status, _, _ = await c.call("POST", f"/api/calls/{call['id']}/end", frank)
        assert status == 403
        _, talking, _ = await c.call("GET", "/api/calls/live", admin)
        assert [x["id"] for x in talking["calls"]] == [call["id"]]
        status, _, _ = await c.call("GET", "/api/calls/live", eve)
        assert status == 403
        status, ended, _ = await c.call("POST", f"/api/calls/{call['id']}/end", admin)
        assert status == 200 and ended["end_reason"] == "ended_by_admin"
        _, talking, _ = await c.call("GET", "/api/calls/live", admin)
        _, live, _ = await c.call("GET", "/api/chess/games/live", admin)
        assert talking["calls"] == [] and live["games"] == []
        # Chips, both ways, never below zero, never twice.
        _, wallet, _ = await c.call("GET", "/api/blackjack/wallet", eve)
        adjust = f"/api/blackjack/wallets/{eve_id}/adjust"
        body = {"amount": 500, "reason": "tournament prize", "request_id": "r1"}
        status, done, _ = await c.call("POST", adjust, admin, json=body)
        assert status == 200 and done["balance"] == wallet["balance"] + 500
        status, again, _ = await c.call("POST", adjust, admin, json=body)  # a retry: once
        assert status == 200 and again == {**done, "replayed": True}
        status, problem, _ = await c.call("POST", adjust, admin, json={**body, "amount": 7})
        assert status == 409 and problem["code"] == "request_id_reused"
        other = await c.admin("root2")  # the same request id from another admin: its own
        status, theirs, _ = await c.call("POST", adjust, other, json={**body, "amount": 1})
        assert status == 200 and not theirs["replayed"] and theirs["balance"] == done["balance"] + 1
        status, problem, _ = await c.call(
            "POST", adjust, admin, json={**body, "amount": -(10**8), "request_id": "r2"}
        )
        assert status == 409 and problem["code"] == "insufficient_funds"
        for bad in ({**body, "amount": 0, "request_id": "r3"}, {**body, "reason": ""}):
            status, problem, _ = await c.call("POST", adjust, admin, json=bad)
            assert status == 422, bad
        status, _, _ = await c.call("POST", adjust, eve, json={**body, "request_id": "r4"})
        assert status == 403
        # Content: an admin lists and revokes anyone's link and deletes anyone's file.
        _, uploaded = await form_upload(c, eve, "leak.txt", b"secret")
        file = uploaded["files"][0]
        _, link, _ = await c.call("POST", f"/api/files/{file['id']}/links", eve, json={})
        status, links, _ = await c.call("GET", "/api/files/links", admin)
        assert status == 200 and [(x["owner"], x["name"]) for x in links["links"]] == [
            ("eve", "leak.txt")]  # fmt: skip
        status, _, _ = await c.call("GET", "/api/files/links", frank)
        assert status == 403
        status, _, _ = await c.call("DELETE", f"/api/files/links/{link['token']}", frank)
        assert status == 404
        status, _, _ = await c.call("DELETE", f"/api/files/links/{link['token']}", admin)
        assert status == 204
        status, _, _ = await c.call("DELETE", f"/api/files/{file['id']}?permanent=true", frank)
        assert status == 404
        status, gone, _ = await c.call("DELETE", f"/api/files/{file['id']}?permanent=true", admin)
        assert status == 200 and gone["deleted_files"] == 1
        _, log, _ = await c.call("GET", "/api/admin/activity?user=root&limit=100", admin)
        actions = {a["action"] for a in log["activity"]}
        assert [a["action"] for a in log["activity"]].count("blackjack.chips_adjusted") == 1
        assert {"chess.game_stopped", "call.ended_by_admin", "blackjack.chips_adjusted",
                "file.link_revoked", "file.deleted"} <= actions  # fmt: skip
