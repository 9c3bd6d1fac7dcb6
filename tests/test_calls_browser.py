"""Calls as people make them: Chromium pages on ``/call`` with fake cameras (Playwright driving
Debian's Chromium, one browser, a context per person). A group call through the SFU where
each participant joins after the others already publish, and a 1:1 call placed, answered,
muted and hung up by clicking the page's own buttons. No page logs an error (a 404 for any
resource included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from .browser import CHROMIUM
from .support import Client, eventually, running

playwright = pytest.importorskip("playwright.async_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium"),
]
FLAGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream=fps=10",  # light enough for four pages on 2 cores
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # host candidates the peers can reach
    "--autoplay-policy=no-user-gesture-required",
]
# Camera tiles of a group call: [caption, videoWidth, currentTime] of each visible tile.
TILES = """() => [...document.querySelectorAll('#grid figure')].filter(f => !f.hidden)
  .map(f => [f.querySelector('figcaption').textContent,
             f.querySelector('video').videoWidth, f.querySelector('video').currentTime])"""
REMOTE = "() => [document.getElementById('remote').videoWidth, document.getElementById('remote').currentTime]"  # noqa: E501


class Browser:
    """One Chromium; a page per person, each in its own context (cookies, storage)."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.problems: list[str] = []

    async def page(self, url: str, who: str) -> Any:
        context = await self.browser.new_context(viewport={"width": 900, "height": 700})
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.problems.append(f"{who}: script error {exc}"))
        page.on(
            "console",
            lambda msg: self.problems.append(f"{who}: {msg.text}") if msg.type == "error" else None,
        )
        page.on(
            "response",
            lambda r: (
                self.problems.append(f"{who}: {r.status} {r.url}") if r.status >= 400 else None
            ),
        )
        await page.goto(url)
        return page


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield Browser(browser)
        finally:
            await browser.close()


async def plays(page: Any, script: str, what: str, count: int = 1) -> None:
    """Wait until ``count`` videos of the page have a picture and play on."""

    async def playing() -> bool:
        seen = await page.evaluate(script)
        rows = seen if not seen or isinstance(seen[0], list) else [seen]
        return sum(1 for *_, width, time in rows if width > 0 and time > 0.5) >= count

    await eventually(playing, what, timeout=60)


@pytest.mark.parametrize("people", [3, 4])
async def test_late_joiners_see_every_feed(tmp_path: Path, people: int) -> None:
    names = ["alice", "bob", "carol", "dave"][:people]
    async with running(tmp_path) as c, chromium() as browser:
        tokens = [await c.register(name) for name in names]
        body = {"usernames": names[1:], "kind": "group"}
        status, call, _ = await c.call("POST", "/api/calls", tokens[0], json=body)
        assert status == 201 and call["route"] == "sfu", call
        pages = []
        for name, token in zip(names, tokens, strict=True):
            if name != "alice":
                status, _, _ = await c.call("POST", f"/api/calls/{call['id']}/accept", token)
                assert status == 200
            page = await browser.page(c.url(f"/call#token={token}&call={call['id']}"), name)
            pages.append(page)
            # Everyone in the call so far plays everyone else's camera before the next joins,
            # so each newcomer joins a call where the others already publish.
            for joined in pages:
                await plays(joined, TILES, f"{len(pages) - 1} cameras", count=len(pages) - 1)
        for name, page in zip(names, pages, strict=True):
            captions = sorted(caption for caption, *_ in await page.evaluate(TILES))
            assert captions == sorted(f"{n} · camera" for n in names if n != name)
        assert browser.problems == []


async def call_state(c: Client, token: str) -> dict[str, Any]:
    _, history, _ = await c.call("GET", "/api/calls", token)
    return dict(history["calls"][0])


async def test_a_direct_call_placed_answered_muted_and_hung_up_by_clicking(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as c, chromium() as browser:
        alice, bob = await c.register("alice"), await c.register("bob")
        caller = await browser.page(c.url(f"/call#token={alice}"), "alice")
        callee = await browser.page(c.url(f"/call#token={bob}"), "bob")
        for page, name in ((caller, "alice"), (callee, "bob")):
            await eventually(
                lambda page=page, name=name: _text(page, "state", f"signed in as {name}"),
                f"{name}'s lobby",
            )
        await caller.fill("#callee", "bob")
        await caller.click("#dial button[type=submit]")
        await callee.wait_for_selector("#incoming li .accept", timeout=30_000)
        assert "alice is calling" in await callee.inner_text("#incoming li")
        await callee.click("#incoming li .accept")
        await plays(caller, REMOTE, "bob's camera at alice's")
        await plays(callee, REMOTE, "alice's camera at bob's")
        call = await call_state(c, alice)
        assert call["status"] == "active"

        await caller.click("#mute")  # a real click: nothing covers the footer
        assert await caller.inner_text("#mute") == "Unmute"

        async def alice_muted() -> bool:
            _, view, _ = await c.call("GET", f"/api/calls/{call['id']}", bob)
            me = next(p for p in view["participants"] if p["username"] == "alice")
            return me["media"]["audio"] is False

        await eventually(alice_muted, "the server hears alice is muted")
        await callee.click("#hangup")
        for page in (caller, callee):
            await eventually(
                lambda page=page: _startswith(page, "state", ("ended", "you left")),
                "the call ends on both pages",
            )
        assert (await call_state(c, alice))["status"] == "ended"
        assert browser.problems == []


async def _text(page: Any, element: str, wanted: str) -> bool:
    return bool(await page.inner_text(f"#{element}") == wanted)


async def _startswith(page: Any, element: str, prefixes: tuple[str, ...]) -> bool:
    return (await page.inner_text(f"#{element}")).startswith(prefixes)
