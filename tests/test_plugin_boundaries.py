"""The plugin boundary, read from the source: plugins import the core only through
``syncstream.sdk`` and never each other; the core names no plugin."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import syncstream.sdk

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "manifest.json").is_file())
# Strings only a plugin has business with: the tus protocol, public-link passwords, the
# plugins' bus events and realtime topics (singular names: file.adopted, call:<id>).
PLUGIN_SPECIFIC = re.compile(
    r"\b(Tus-|Upload-(Offset|Length|Metadata)|Link-Password)|^(file|call|typing|uploads)[.:]"
)


def modules(folder: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_there_are_plugins_to_check() -> None:
    assert {"admin", "chat", "files", "guestbook", "media"} <= set(PLUGINS)


def test_plugins_import_only_the_sdk_and_never_each_other() -> None:
    public = set(syncstream.sdk.__all__)
    wrong = []
    for path, tree in modules(ROOT / "plugins"):
        relative = path.relative_to(ROOT / "plugins")
        depth = len(relative.parts) - 1  # packages between plugins/ and the module
        for node in ast.walk(tree):
            where = f"{relative}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                wrong += [
                    f"{where}: import {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] in ("syncstream", "plugins")
                ]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                top = (node.module or "").split(".")[0]
                if top == "plugins" or (top == "syncstream" and node.module != "syncstream.sdk"):
                    wrong.append(f"{where}: from {node.module} import ...")
                elif node.module == "syncstream.sdk":
                    wrong += [f"{where}: {a.name} is not in the SDK"
                              for a in node.names if a.name not in public]  # fmt: skip
            elif isinstance(node, ast.ImportFrom) and node.level > depth:
                wrong.append(f"{where}: relative import out of its plugin")
    assert not wrong, "\n".join(wrong)


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes (documentation may mention plugins as examples)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def test_the_core_names_no_plugin() -> None:
    names = "|".join(PLUGINS)
    naming = re.compile(
        rf"^({names})[.:]|/api/({names})\b|^/({names})\b|\bplugins\.({names})|\b({names}) plugin"
    )
    wrong = []
    for path, tree in modules(ROOT / "syncstream"):
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if getattr(node, "level", 0) == 0 and (module or "").split(".")[0] == "plugins":
                    wrong.append(f"{where}: imports {module}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                if naming.search(node.value) or PLUGIN_SPECIFIC.search(node.value):
                    wrong.append(f"{where}: {node.value[:60]!r}")
    assert not wrong, "\n".join(wrong)


def test_the_dashboard_names_no_other_plugin() -> None:
    """Other plugins bring their dashboard parts in scripts of their own (their routes, their
    figures, their audit actions); the admin page itself knows none of them."""
    others = "|".join(p for p in PLUGINS if p != "admin")
    naming = re.compile(rf"/api/({others})\b|[\"'`]({others})[.:]|\b({others}) plugin")
    static = ROOT / "plugins" / "admin" / "static"
    wrong = [
        f"{path.name}: {match.group(0)}"
        for path in (static / "admin.js", static / "admin.html")
        for match in naming.finditer(path.read_text())
    ]
    assert not wrong, wrong
