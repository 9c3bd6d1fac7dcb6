"""Where the source makes error codes, read with ``ast``: what the registry test compares with
the registries (``syncstream/error_codes.py`` and each plugin's ``error_codes``).

A code is made by
- ``Problem(status, "code", ...)`` (and ``super().__init__(status, "code", ...)`` in a
  subclass of ``Problem``);
- the gateway's ``_error(conn, id, "code", ...)`` and the realtime client's
  ``error(id, "code", ...)`` (a WebSocket ``error`` frame);
- the media plugin's job failures: ``CommandError``/``JobFailed``/``ProbeError("code", ...)``;
- ``code = "code"`` in a class body, ``code="code"`` keywords and ``{"code": "code"}`` dicts
  (job and file-processing failures);
- ``HTTP_EXCEPTION_CODES`` (status → code for aiohttp's own errors) and its ``.get`` default.
An f-string code (``f"invalid_{name}"``) is a pattern: the registry entries it matches count.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"[a-z][a-z0-9_]*")
# callable name → index of its code argument
CARRIERS = {
    "Problem": 1,
    "_error": 2,
    "error": 1,
    "CommandError": 0,
    "JobFailed": 0,
    "ProbeError": 0,
}


@dataclass
class Sites:
    """Codes made by one owner ("core" or a plugin's name): code → HTTP statuses seen."""

    codes: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    patterns: set[str] = field(default_factory=set)  # regexes from f-string codes

    def add(self, code: ast.expr | None, status: ast.expr | None = None) -> None:
        if isinstance(code, ast.Constant) and isinstance(code.value, str):
            if CODE.fullmatch(code.value):
                statuses = self.codes[code.value]
                if isinstance(status, ast.Constant) and isinstance(status.value, int):
                    statuses.add(status.value)
        elif isinstance(code, ast.JoinedStr):
            self.patterns.add(
                "".join(
                    re.escape(part.value) if isinstance(part, ast.Constant) else "[a-z0-9_]+"
                    for part in code.values
                )
            )


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _problem_classes(tree: ast.Module) -> set[ast.ClassDef]:
    return {
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(_name(b) == "Problem" for b in node.bases)
    }


def _scan(tree: ast.Module, sites: Sites) -> None:
    for cls in _problem_classes(tree):
        for node in ast.walk(cls):
            if isinstance(node, ast.Call) and _name(node.func) == "__init__" and node.args:
                sites.add(node.args[1] if len(node.args) > 1 else None, node.args[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in CARRIERS:
                at = CARRIERS[name]
                code = node.args[at] if len(node.args) > at else keywords.get("code")
                status = node.args[0] if name == "Problem" and node.args else None
                sites.add(code, status)
            elif "code" in keywords:
                sites.add(keywords["code"])
            if name == "get" and _name(getattr(node.func, "value", node.func)).endswith("_CODES"):
                sites.add(node.args[1] if len(node.args) > 1 else None)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "code" for t in item.targets
                ):
                    sites.add(item.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    sites.add(value)
        elif isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id.endswith("_CODES") for t in targets):
                for key, value in zip(node.value.keys, node.value.values, strict=True):
                    sites.add(value, key)


def scan() -> dict[str, Sites]:
    """Owner ("core" or a plugin's folder name) → the codes its source makes."""
    owners: dict[str, Sites] = defaultdict(Sites)
    for path in sorted((ROOT / "syncstream").rglob("*.py")):
        _scan(ast.parse(path.read_text(), str(path)), owners["core"])
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        parts = path.relative_to(ROOT / "plugins").parts
        if len(parts) > 1:
            _scan(ast.parse(path.read_text(), str(path)), owners[parts[0]])
    return dict(owners)
