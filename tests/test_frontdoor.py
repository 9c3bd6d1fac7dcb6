"""The front door in Chromium: ``/`` shows what runs on the node and who is live, with a
working link to the watch page; ``/api/docs`` is Swagger UI over the node's OpenAPI document.
No script errors, no CSP violations, no failed requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .browser import CHROMIUM
from .support import eventually
from .test_live import live_server

playwright = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")


def watch(page: Any, problems: list[str]) -> None:
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else 0)


async def test_the_landing_page_and_the_api_docs(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        c = live.c
        _, key = await live.account("streamer")
        publisher = await live.push(key, 60)
        try:
            await live.wait_live("streamer")
            status, node, _ = await c.call("GET", "/api/node")
            assert status == 200 and "calls" in node["plugins"]
            assert any(link["label"] == "Call page" for link in node["links"])
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = await browser.new_page()
                problems: list[str] = []
                watch(page, problems)
                await page.goto(c.url("/"))
                await page.wait_for_selector("#streams li a")
                assert "streamer" in await page.inner_text("#streams")
                links = await page.inner_text("#links")
                assert "Call page" in links and "API reference" in links
                assert (await page.inner_text("#node")).startswith("version ")
                await page.click("#streams li a")
                await page.wait_for_url("**/watch/streamer")

                await page.goto(c.url("/api/docs"))

                _, document, _ = await c.call("GET", "/api/openapi.json")
                operations = sum(len(ops) for ops in document["paths"].values())

                async def loaded() -> bool:  # Swagger UI parsed the whole document
                    count = await page.evaluate(
                        "window.ui && window.ui.specSelectors.operations().size"
                    )
                    return bool(count == operations)

                await eventually(loaded, "Swagger UI loads every operation of the document")
                await page.get_by_text("/api/auth/login", exact=True).wait_for()
                await browser.close()
            assert problems == [], problems
        finally:
            publisher.kill()
            await publisher.wait()
