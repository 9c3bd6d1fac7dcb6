"""The type of a file from its first bytes; what a client claims is never trusted.

Magic numbers decide for binary formats; text is recognised by decoding, and only then may
the file name's extension refine which text it is (``.csv``, ``.md`` ...). An extension never
turns binary into something else: an ELF named ``photo.jpg`` stays an executable.
"""

from __future__ import annotations

import re

SNIFF_BYTES = 4096

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (257, b"ustar", "application/x-tar"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"FLV\x01", "video/x-flv"),
    (0, b"MThd", "audio/midi"),
    (0, b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (0, b"\x00asm", "application/wasm"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"wOFF", "font/woff"),
    (0, b"wOF2", "font/woff2"),
)
_ISO_BRANDS = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
    b"3gp6": "video/3gpp",
}
_OOXML = (
    (b"word/", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (b"xl/", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (b"ppt/", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
)
_TEXT_BY_EXTENSION = {
    "csv": "text/csv",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "css": "text/css",
    "js": "text/javascript",
    "mjs": "text/javascript",
    "py": "text/x-python",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "ics": "text/calendar",
}
_HTML = re.compile(rb"^\s*<(!doctype\s+html|html|head|body|script|iframe)[\s>]", re.IGNORECASE)
_LEADING_XML = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?((<!--.*?-->|<!doctype[^>]*>)\s*)*", re.I | re.S)
_CONTROL = frozenset(range(32)) - {9, 10, 12, 13, 27}


def sniff(head: bytes, name: str = "") -> str:
    """The MIME type of a file whose first bytes are ``head`` (``SNIFF_BYTES`` suffice)."""
    if not head:
        return "application/x-empty"
    binary = _binary_type(head)
    if binary:
        return binary
    text = _decoded(head)
    if text is None:
        return "application/octet-stream"
    return _text_type(head, text, name)


def _binary_type(head: bytes) -> str | None:
    for offset, magic, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return mime
    if head[:2] == b"BM" and head[6:10] == b"\0\0\0\0":  # reserved fields: no text has them
        return "image/bmp"
    if head[:2] == b"MZ" and b"\0" in head[:64]:
        return "application/vnd.microsoft.portable-executable"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return _ISO_BRANDS.get(brand, "video/mp4")
    if head[:4] == b"RIFF":
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(
            head[8:12], "application/octet-stream"
        )
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head[:4] == b"OggS":
        return "video/ogg" if b"\x80theora" in head else "audio/ogg"
    if head[:4] == b"PK\x03\x04":
        if b"[Content_Types].xml" in head:
            for marker, mime in _OOXML:
                if marker in head:
                    return mime
        return "application/zip"
    if _is_mpeg_ts(head):
        return "video/mp2t"
    if len(head) > 1 and head[0] == 0xFF and head[:2] != b"\xff\xfe":  # not a UTF-16 BOM
        if head[1] & 0xF6 == 0xF0:
            return "audio/aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
            return "audio/mpeg"
    return None


def _is_mpeg_ts(head: bytes) -> bool:
    packets = min(len(head) // 188, 5)
    return packets >= 2 and all(head[i * 188] == 0x47 for i in range(packets))


def _decoded(head: bytes) -> str | None:
    """The text of ``head`` if it is text (UTF-8, or UTF-16 with a BOM), else None."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return head[2 : len(head) - (len(head) % 2)].decode(
                "utf-16-le" if head[:2] == b"\xff\xfe" else "utf-16-be"
            )
        except UnicodeDecodeError:
            return None
    if any(b in _CONTROL for b in head):
        return None
    for cut in range(4):  # the head may end inside a multi-byte character
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _text_type(head: bytes, text: str, name: str) -> str:
    body = head.removeprefix(b"\xef\xbb\xbf")
    if _HTML.match(body):
        return "text/html"
    rest = body[_LEADING_XML.match(body).end() :]  # type: ignore[union-attr]
    if rest[:4].lower() == b"<svg":
        return "image/svg+xml"
    if _HTML.match(rest):
        return "text/html"
    if body.lstrip()[:5] == b"<?xml":
        return "application/xml"
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] in ("{", "[") and _looks_like_json(stripped):
        return "application/json"
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    return _TEXT_BY_EXTENSION.get(ext, "text/plain")


def _looks_like_json(text: str) -> bool:
    second = text[1:].lstrip()[:1]
    return second in ('"', "{", "[", "]", "}") or second.isdigit() or second in ("-", "t", "f", "n")
