"""A small quote-aware SQL scanner: statement splitting and ``?`` -> ``$n`` placeholders."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache


def _code_spans(sql: str) -> Iterator[tuple[int, int, bool]]:
    """Yield (start, end, is_code) spans; string literals, quoted names and comments aren't code."""
    i, n, start = 0, len(sql), 0
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # doubled quote escapes itself
                        end += 2
                        continue
                    break
                end += 1
            closing = min(end + 1, n)
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            closing = n if nl < 0 else nl
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            closing = n if close < 0 else close + 2
        else:
            i += 1
            continue
        if start < i:
            yield start, i, True
        yield i, closing, False
        start = i = closing
    if start < n:
        yield start, n, True


def split_statements(sql: str) -> list[str]:
    """Split a script on ``;`` outside literals and comments; empty statements are dropped."""
    statements, current = [], []
    for start, end, code in _code_spans(sql):
        text = sql[start:end]
        if not code:
            current.append(text)
            continue
        parts = text.split(";")
        for part in parts[:-1]:
            current.append(part)
            statements.append("".join(current))
            current = []
        current.append(parts[-1])
    statements.append("".join(current))
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    return any(statement[s:e].strip() for s, e, code in _code_spans(statement) if code)


@lru_cache(maxsize=2048)
def numbered_placeholders(sql: str) -> str:
    """Rewrite ``?`` placeholders as PostgreSQL's ``$1, $2 ...``."""
    out, count = [], 0
    for start, end, code in _code_spans(sql):
        text = sql[start:end]
        if code and "?" in text:
            pieces = text.split("?")
            rebuilt = [pieces[0]]
            for piece in pieces[1:]:
                count += 1
                rebuilt.append(f"${count}{piece}")
            text = "".join(rebuilt)
        out.append(text)
    return "".join(out)
