"""Headless Chromium (Debian's, no browser download) driven by Playwright, the one browser
driver of the tests and benchmarks."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Page, async_playwright

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
    # Plain host ICE candidates instead of mDNS names: aioice resolves those under a module
    # lock bound to the event loop that first used it, and each test runs its own loop.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


@asynccontextmanager
async def chromium_page(url: str, *extra_flags: str) -> AsyncIterator[Page]:
    """A page of a fresh headless Chromium, navigated to ``url`` (returned once the navigation
    is under way, as a user's click would leave it)."""
    assert CHROMIUM, "chromium is not installed"
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, *extra_flags]
        )
        try:
            page = await browser.new_page()
            await page.goto(url, wait_until="commit")
            yield page
        finally:
            await browser.close()


# Reads the clock that tests/clockvideo.py burns into frames, off every frame the page's
# <video> presents (requestVideoFrameCallback), into window.__frames: [wall ms at display,
# stamp, presentedFrames]. Re-arms itself if a change of source drops its callback.
FRAME_CLOCK_JS = """
(() => {
  const BITS = %(bits)d, BLOCK = %(block)d;
  const video = document.querySelector("video");
  const canvas = document.createElement("canvas");
  canvas.width = BITS * BLOCK; canvas.height = BLOCK;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  window.__frames = [];
  let handle = null, last = performance.now();
  function onFrame(now, meta) {
    last = performance.now();
    ctx.drawImage(video, 0, 0, canvas.width, BLOCK, 0, 0, canvas.width, BLOCK);
    const px = ctx.getImageData(0, 0, canvas.width, BLOCK).data;
    let stamp = 0;
    for (let bit = 0; bit < BITS; bit++) {
      const i = ((BLOCK >> 1) * canvas.width + bit * BLOCK + (BLOCK >> 1)) * 4;
      if (px[i] > 128) stamp += 2 ** bit;
    }
    const wall = Date.now() + (meta.expectedDisplayTime - performance.now());
    window.__frames.push([wall, stamp, meta.presentedFrames]);
    handle = video.requestVideoFrameCallback(onFrame);
  }
  handle = video.requestVideoFrameCallback(onFrame);
  setInterval(() => {
    if (performance.now() - last < 1000) return;
    video.cancelVideoFrameCallback(handle);
    handle = video.requestVideoFrameCallback(onFrame);
  }, 500);
  return true;
})()
"""


async def install_frame_clock(page: Page, bits: int, block: int) -> None:
    """Once the page has loaded (its <video> exists), read the clock off each frame it
    presents (see FRAME_CLOCK_JS)."""
    for _ in range(100):
        if await page.evaluate("document.readyState === 'complete'"):
            break
        await asyncio.sleep(0.1)
    assert await page.evaluate(FRAME_CLOCK_JS % {"bits": bits, "block": block})


async def take_frames(page: Page) -> list[tuple[float, int, int]]:
    """The presented frames noted since the last call: (wall ms, stamp, presentedFrames)."""
    rows = await page.evaluate("window.__frames.splice(0)")
    return [(float(w), int(s), int(p)) for w, s, p in rows or []]


async def wait_frames(page: Page, count: int = 10, timeout: float = 45.0) -> None:
    """Until the page's <video> has presented ``count`` frames since the last take."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await page.evaluate("window.__frames.length") < count:
        assert asyncio.get_running_loop().time() < deadline, "the video presents no frames"
        await asyncio.sleep(0.2)


async def record_frames(page: Page, seconds: float) -> list[tuple[float, int, int]]:
    """The frames presented over the next ``seconds`` (what came before is dropped)."""
    await take_frames(page)
    rows: list[tuple[float, int, int]] = []
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        rows += await take_frames(page)
    return rows
