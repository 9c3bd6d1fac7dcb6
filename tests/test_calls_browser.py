"""Calls as people make them: Chromium pages on ``/call`` with fake cameras (Playwright driving
Debian's Chromium, one browser, a context per person). A group call through the SFU where
each participant joins after the others already publish; one where the host's controls
(record, mute all with a lock, remove) and a screen share stopped and shared again are
clicked, one page on a phone's viewport; and 1:1 calls placed (by a user who signs in on the
page), cancelled, declined, answered, muted, hung up and removed by clicking the page's own
buttons, the same two pages calling again and again. No page logs an error (a 4xx/5xx for
any request included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from .browser import CHROMIUM
from .support import PASSWORD, Client, eventually, running

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
    "--auto-select-desktop-capture-source=Entire screen",  # screen sharing without a picker
]
# Camera tiles of a group call: [caption, videoWidth, currentTime] of each visible tile.
TILES = """() => [...document.querySelectorAll('#grid figure:not(#self)')].filter(f => !f.hidden)
  .map(f => [f.querySelector('figcaption').textContent,
             f.querySelector('video').videoWidth, f.querySelector('video').currentTime])"""
REFUSED = "Failed to load resource: the server responded with a status of %d"
REMOTE = "() => [document.getElementById('remote').videoWidth, document.getElementById('remote').currentTime]"  # noqa: E501


class Browser:
    """One Chromium; a page per person, each in its own context (cookies, storage)."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.problems: list[str] = []

    async def page(self, url: str, who: str, width: int = 900, height: int = 700) -> Any:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
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


async def in_lobby(page: Any) -> bool:
    """Back in the lobby with nothing of a call left: stage, controls and tiles gone, no
    camera on, the fragment without ``call=``."""
    return bool(
        await page.evaluate(
            """() => !document.getElementById('lobby').hidden
              && document.getElementById('stage').hidden
              && document.getElementById('controls').hidden
              && document.querySelectorAll('#grid figure').length === 0
              && document.getElementById('local').srcObject === null
              && !location.hash.includes('call=')"""
        )
    )


async def dial(page: Any, who: str) -> None:
    await page.fill("#callee", who)
    await page.click("#dial button[type=submit]")


async def test_direct_calls_placed_cancelled_answered_hung_up_and_placed_again(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as c, chromium() as browser:
        alice = await c.register("alice")
        await c.register("bob")
        caller = await browser.page(c.url(f"/call#token={alice}"), "alice")
        # bob has no token: he signs in on the page (the token stays out of the URL).
        callee = await browser.page(c.url("/call"), "bob")
        await callee.wait_for_selector("#signin", state="visible", timeout=30_000)
        await callee.fill("#username", "bob")
        await callee.fill("#password", PASSWORD)
        await callee.click("#signin button[type=submit]")
        for page, name in ((caller, "alice"), (callee, "bob")):
            await eventually(
                lambda page=page, name=name: _text(page, "state", f"signed in as {name}"),
                f"{name}'s lobby",
            )
        assert await callee.is_hidden("#signin")
        assert "token" not in callee.url and "?" not in callee.url
        # A token that is no good (expired, revoked) gets the form too, and leaves the URL.
        stale = await browser.page(c.url("/call#token=not-a-token"), "stale")
        await stale.wait_for_selector("#signin", state="visible", timeout=30_000)
        assert "token" not in stale.url and await stale.is_hidden("#lobby")
        await stale.context.close()
        me = c.url("/api/auth/me")
        for seen in (f"stale: 401 {me}", f"stale: {REFUSED % 401} (Unauthorized)"):
            browser.problems.remove(seen)  # the refusal of the bad token

        # alice calls off a call nobody answered yet.
        await dial(caller, "bob")
        await callee.wait_for_selector("#incoming li .accept", timeout=30_000)
        await caller.click("#hangup")
        await eventually(lambda: _text(caller, "state", "call cancelled"), "alice cancelled")
        await callee.wait_for_selector("#incoming li", state="detached", timeout=30_000)
        assert (await call_state(c, alice))["end_reason"] == "cancelled"
        await eventually(lambda: in_lobby(caller), "alice back in the lobby")
        # bob declines the next one.
        await dial(caller, "bob")
        await callee.click("#incoming li .decline")
        await eventually(lambda: _text(caller, "state", "call declined"), "alice hears no")
        await eventually(lambda: in_lobby(caller), "alice back in the lobby")

        # alice calls again, bob answers, bob hangs up; then bob calls alice from the same
        # pages, and as the host removes her.
        for dialer, answerer, name in ((caller, callee, "bob"), (callee, caller, "alice")):
            await dial(dialer, name)
            await answerer.wait_for_selector("#incoming li .accept", timeout=30_000)
            await answerer.click("#incoming li .accept")
            await plays(dialer, REMOTE, f"{name}'s camera at the caller's")
            await plays(answerer, REMOTE, f"the caller's camera at {name}'s")
            call = await call_state(c, alice)
            assert call["status"] == "active"
            assert f"call={call['id']}" in dialer.url

            await dialer.click("#mute")  # a real click: nothing covers the footer
            assert await dialer.inner_text("#mute") == "Unmute"

            async def muted(call: dict[str, Any] = call, name: str = name) -> bool:
                _, view, _ = await c.call("GET", f"/api/calls/{call['id']}", alice)
                who = next(p for p in view["participants"] if p["username"] != name)
                return who["media"]["audio"] is False

            await eventually(muted, "the server hears the caller is muted")
            assert await answerer.locator("#people .remove").count() == 0  # the host's only
            if dialer is caller:
                await answerer.click("#hangup")
            else:
                await dialer.click("#people .remove")
            for page in (dialer, answerer):
                await eventually(lambda page=page: in_lobby(page), "both pages back in the lobby")
            assert (await call_state(c, alice))["status"] == "ended"
            left = "you left the call" if dialer is caller else "the host removed you from the call"
            assert await answerer.inner_text("#state") == left
            assert await dialer.inner_text("#state") == "call ended"
        assert browser.problems == []


# Whether the local preview or any tile covers another (none may).
COVERED = """() => {
  const local = document.getElementById('local').getBoundingClientRect();
  if (local.width === 0) return 'no preview';
  const rects = [local, ...[...document.querySelectorAll('#grid figure:not(#self)')]
    .filter(f => !f.hidden).map(f => f.getBoundingClientRect())];
  return rects.some((a, i) => rects.slice(i + 1).some(b => a.left < b.right && b.left < a.right
                                                      && a.top < b.bottom && b.top < a.bottom));
}"""


def caption(page: Any, wanted: str) -> Any:
    async def shown() -> bool:
        return any(c == wanted for c, *_ in await page.evaluate(TILES))

    return shown


async def test_host_controls_and_a_screen_shared_twice_in_a_group_call(tmp_path: Path) -> None:
    names = ["alice", "bob", "carol"]
    async with running(tmp_path) as c, chromium() as browser:
        tokens = dict(zip(names, [await c.register(name) for name in names], strict=True))
        ids = {n: (await c.call("GET", "/api/auth/me", t))[1]["id"] for n, t in tokens.items()}
        body = {"usernames": names[1:], "kind": "group"}
        _, call, _ = await c.call("POST", "/api/calls", tokens["alice"], json=body)
        pages = {}
        for name in names:
            if name != "alice":
                await c.call("POST", f"/api/calls/{call['id']}/accept", tokens[name])
            size = (390, 844) if name == "carol" else (900, 700)  # carol is on a phone
            url = c.url(f"/call#token={tokens[name]}&call={call['id']}")
            pages[name] = await browser.page(url, name, *size)
            # One after another, as in test_late_joiners_see_every_feed: three pages joining
            # within a second once left one without both cameras under a loaded full run
            # (never alone) — a follow-up; this test is about the host's controls.
            for page in pages.values():
                await plays(page, TILES, "the others' cameras", count=len(pages) - 1)
        alice, bob, carol = pages.values()
        assert await bob.locator("#grid .remove:visible").count() == 0  # the host's only

        # bob shares his screen, stops, shares again: the others see it come and go, his
        # camera flows on throughout.
        camera_at = """() => [...document.querySelectorAll('#grid figure')]
          .find(f => f.querySelector('figcaption').textContent === 'bob · camera')
          .querySelector('video').currentTime"""
        started = await alice.evaluate(camera_at)
        for sharing in (True, False, True):
            await bob.click("#screen")
            for page in (alice, carol):
                if sharing:
                    await eventually(caption(page, "bob · screen"), "bob's screen tile")
                    await plays(page, TILES, "two cameras and a screen", count=3)
                else:
                    shown = caption(page, "bob · screen")
                    await eventually(lambda shown=shown: _not(shown), "bob's screen tile gone")
        await plays(alice, TILES, "cameras and the screen again", count=3)
        await eventually(
            lambda: _check(alice.evaluate(camera_at), lambda now: now > started + 2),
            "bob's camera still flowing",
        )
        for page in pages.values():  # the preview covers no tile, on the phone too
            assert await page.evaluate(COVERED) is False

        # Record: the button is disabled while its request runs; everyone sees it recording.
        assert await alice.evaluate(
            "() => { const b = document.getElementById('record'); b.click(); return b.disabled; }"
        )
        for page in pages.values():
            await page.wait_for_selector("#recording", state="visible", timeout=30_000)
        await eventually(lambda: _text(alice, "record", "Stop recording"), "a Stop button")
        assert await alice.is_enabled("#record")
        # A request that meets a changed call shows why it was refused.
        held: list[Any] = []
        await alice.route("**/recording", lambda route: held.append(route))
        await alice.click("#record")
        await eventually(lambda: held != [], "the page asks to stop recording")
        status, _, _ = await c.call("DELETE", f"/api/calls/{call['id']}/recording", tokens["alice"])
        assert status == 200
        await held[0].continue_()
        await eventually(lambda: _text(alice, "state", "record: the call is not being recorded"),
                         "the refusal shown")  # fmt: skip
        await alice.unroute("**/recording")
        assert await alice.is_hidden("#recording") and await alice.is_enabled("#record")
        recording = c.url(f"/api/calls/{call['id']}/recording")
        for seen in (f"alice: 409 {recording}", f"alice: {REFUSED % 409} (Conflict)"):
            browser.problems.remove(seen)  # the refusal we caused, and Chromium's log of it

        # Mute all is locked: carol cannot unmute herself until the host unlocks.
        await alice.click("#muteall")
        await eventually(lambda: carol.is_disabled("#mute"), "carol's mute button locked")
        assert await carol.inner_text("#mute") == "Muted by the host"
        assert await carol.inner_text("#state") == "muted by the host"
        await carol.click("#mute", force=True)
        await carol.click("#camera")  # after the mute click on the same socket: a marker

        async def carol_media() -> dict[str, Any]:
            _, view, _ = await c.call("GET", f"/api/calls/{call['id']}", tokens["carol"])
            return dict(next(p for p in view["participants"] if p["username"] == "carol"))

        await eventually(
            lambda: _check(carol_media(), lambda me: me["media"]["video"] is False),
            "carol's camera off",
        )
        me = await carol_media()
        assert me["media"]["audio"] is False and me["locked"] == ["audio"]
        await alice.click("#unlock")
        await eventually(lambda: carol.is_enabled("#mute"), "carol's mute button unlocked")
        assert await carol.inner_text("#mute") == "Unmute"
        assert await alice.is_hidden("#unlock")

        # The host removes carol from her camera tile.
        tile = f"#grid figure[data-user='{ids['carol']}'][data-label='camera'] .remove"
        await alice.click(tile)
        await eventually(lambda: in_lobby(carol), "carol back in the lobby")
        assert "removed" in await carol.inner_text("#state")
        for page in (alice, bob):
            await eventually(
                lambda page=page: _check(
                    page.evaluate(TILES), lambda rows: not any("carol" in r[0] for r in rows)
                ),
                "carol's tiles gone",
            )
        await bob.click("#hangup")  # a real click: no tile covers the footer
        await eventually(lambda: in_lobby(bob), "bob back in the lobby")
        assert browser.problems == []


async def _check(value: Any, test: Any) -> bool:
    return bool(test(await value))


async def _not(shown: Any) -> bool:
    return not await shown()


async def _text(page: Any, element: str, wanted: str) -> bool:
    return bool(await page.inner_text(f"#{element}") == wanted)
