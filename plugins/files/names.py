"""File and folder names: validated, normalised, and made unique within a folder.

Names are stored NFC-normalised. Two names collide when their case-folded forms are equal,
so ``Report.pdf`` and ``report.PDF`` cannot sit side by side (as on macOS and Windows).
Separators, NUL, control characters and bidirectional overrides (which can disguise
``evil‮fdp.exe`` as ``evilexe.pdf``) are refused, as are ``.``, ``..`` and names over 255 bytes.
"""

from __future__ import annotations

import re
import unicodedata

from syncstream.sdk import Problem

MAX_NAME_BYTES = 255
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_COPY_SUFFIX = re.compile(r"^(?P<stem>.*) \((?P<n>\d+)\)$")


def clean_name(raw: str) -> str:
    """The normalised form of ``raw``, or a 422 ``invalid_name`` problem saying why not."""
    name = unicodedata.normalize("NFC", raw).strip()
    reason = _why_invalid(name)
    if reason:
        raise Problem(422, "invalid_name", f"invalid name {raw[:80]!r}: {reason}")
    return name


def _why_invalid(name: str) -> str | None:
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return "'.' and '..' are reserved"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    for char in name:
        if char in "/\\":
            return "it contains a path separator"
        if char == "\x00" or unicodedata.category(char) == "Cc":
            return "it contains a control character"
        if char in _BIDI_CONTROLS:
            return "it contains a bidirectional control character"
    return None


def name_key(name: str) -> str:
    """The form two names are compared in (case-insensitive)."""
    return unicodedata.normalize("NFC", name.casefold())


def numbered(name: str, n: int) -> str:
    """``report.pdf`` -> ``report (n).pdf``; the extension is kept."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    match = _COPY_SUFFIX.match(stem)
    if match:
        stem = match["stem"]
    suffix = f" ({n})" + (f".{ext}" if ext else "")
    room = MAX_NAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:room].decode(errors="ignore")
    return stem + suffix
