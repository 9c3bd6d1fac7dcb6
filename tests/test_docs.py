"""The generated pages of docs/ are what ``python -m syncstream.docs`` makes now, and the
documentation's links between pages lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from syncstream.docs import ROOT, pages

LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


async def test_generated_pages_are_in_step() -> None:
    stale = [
        str(path)
        for path, text in (await pages()).items()
        if not (ROOT / path).is_file() or (ROOT / path).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"{', '.join(stale)} out of step: run `python -m syncstream.docs`"


def test_readme_is_short_and_keeps_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 6 * 1024
    assert "python3 -m pytest -q" in readme  # .ci/run runs the README's test command


def test_relative_links_lead_to_files() -> None:
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target, _ in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_index() -> None:
    index = ROOT / "docs" / "README.md"
    linked = {(index.parent / t).resolve() for t, _ in LINK.findall(index.read_text())}
    pages_ = {p.resolve() for p in (ROOT / "docs").rglob("*.md")} - {index.resolve()}
    assert not pages_ - linked, sorted(str(Path(p).relative_to(ROOT)) for p in pages_ - linked)
