"""The admin dashboard in a real browser (Playwright driving Debian's Chromium): an admin
signs in, bans a user from the user page, ends a chess game from the content page, sees the
notification of a stream starting while
on the overview, and the page is screenshotted into ``artifacts/`` (kept by the test run).
No script errors and no Content-Security-Policy violations along the way."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from .browser import CHROMIUM
from .clockvideo import ClockPublisher
from .support import PASSWORD
from .test_chess import start_game
from .test_live import live_server

playwright = pytest.importorskip("playwright.async_api")
ARTIFACTS = Path(os.environ.get("SYNCSTREAM_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))


async def until(read: Callable[[], Awaitable[Any]], wanted: Any, timeout: float = 10) -> None:
    """Poll the page (the strict CSP rules out Playwright's eval-based waits)."""
    deadline = time.monotonic() + timeout
    while (seen := await read()) != wanted:
        assert time.monotonic() < deadline, f"still {seen!r}, not {wanted!r}"
        await asyncio.sleep(0.1)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
async def test_an_admin_bans_a_user_and_sees_a_stream_start(tmp_path: Path) -> None:
    async with live_server(tmp_path, **{"plugins.admin.sample_seconds": 0.5}) as live:
        c = live.c
        root = await c.admin()
        mallory = await c.register("mallory")
        _, key = await live.account("streamer")
        game = await start_game(c, await c.register("white"), "black", await c.register("black"))
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1400, "height": 950})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
            page.on(
                "console", lambda msg: problems.append(msg.text) if msg.type == "error" else None
            )
            await page.goto(c.url("/admin"))
            await page.fill("#login-username", "root")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector("#tiles .tile")
            await page.wait_for_selector("#live.on")  # the realtime feed is on

            # Find mallory, open her page, ban her.
            await page.click("a[data-view=users]")
            await page.fill("input[type=search]", "mall")
            rows = page.locator("#users-table tbody tr")
            await until(lambda: rows.count(), 1)  # the search narrowed the list to her
            await page.click("tr[data-user=mallory]")
            await page.click("button:text-is('Ban')")
            await page.click("#dialog-ok")
            await page.wait_for_selector("#banned-tag")
            status, _, _ = await c.call("GET", "/api/auth/me", mallory)
            assert status in (401, 403), "her sessions ended"

            # On the content page, end a chess game in progress.
            await page.click("a[data-view=content]")
            await page.click(f"tr[data-game='{game['id']}'] button")
            await page.click("#dialog-ok")
            await page.locator(".toast", has_text="The game ended").wait_for()
            _, state, _ = await c.call("GET", f"/api/chess/games/{game['id']}", root)
            assert state["status"] == "ended" and state["termination"] == "ended_by_admin"

            # The plugins page lists every plugin's state; the tiles of the plugins' own
            # dashboard scripts are on the overview.
            await page.click("a[data-view=plugins]")
            row = page.locator("tr[data-plugin=chess]")
            await row.wait_for()
            assert "running" in await row.inner_text()

            # Back on the overview, a stream starts: a notification pops up, the bell counts.
            await page.click("a[data-view=overview]")
            publisher = await live.push(key, 30)
            toast = page.locator(".toast", has_text="went live: streamer")
            await toast.wait_for(timeout=20_000)
            assert int(await page.inner_text("#unread")) >= 1
            tile = page.locator(".tile", has_text="Live streams").locator(".value")
            await until(lambda: tile.inner_text(), "1")
            for label in ("Chess games", "Blackjack tables", "Calls", "Jobs queued", "Storage"):
                assert await page.locator(".tile", has_text=label).count() == 1, label
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "admin-dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            await page.click("#bell")
            await page.wait_for_selector("#bell-menu .notice.unread")
            publisher.kill()
            await publisher.wait()
            await browser.close()
            assert not problems, problems


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
async def test_the_content_page_flags_streams_with_b_frames(tmp_path: Path) -> None:
    """An OBS-default stream (x264 with B-frames) is tagged: its WebRTC viewers cost a
    re-encode; the same stream without them is not."""
    async with live_server(tmp_path) as live:
        await live.c.admin()
        _, key = await live.account("obs")
        _, plain_key = await live.account("plain")
        with (
            ClockPublisher(live.url(key), 2, seconds=60),
            ClockPublisher(live.url(plain_key), 0, seconds=60),
        ):
            await live.wait_live("obs")
            await live.wait_live("plain")
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = await browser.new_page()
                await page.goto(live.c.url("/admin#/content"))
                await page.fill("#login-username", "root")
                await page.fill("#login-password", PASSWORD)
                await page.click("#login-form button[type=submit]")
                await page.click("a[data-view=content]")
                obs = page.locator("tr[data-stream=obs]")
                await obs.wait_for(timeout=20_000)
                assert "640\u00d7360 h264" in await obs.inner_text()
                await obs.locator(".tag", has_text="B-frames").wait_for()
                plain = page.locator("tr[data-stream=plain]")
                assert "640\u00d7360 h264" in await plain.inner_text()
                assert await plain.locator(".tag").count() == 0
                await browser.close()
