"""Unit checks of the files plugin's pure parts: names, ranges, type sniffing."""

from __future__ import annotations

import pytest

from plugins.files.download import content_disposition, may_inline, parse_ranges
from plugins.files.names import clean_name, name_key, numbered
from plugins.files.sniff import sniff
from syncstream.sdk import Problem


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  report.pdf ", "report.pdf"),
        ("Cafe\u0301.txt", "Café.txt"),  # NFD -> NFC
        ("日本語のファイル.txt", "日本語のファイル.txt"),
        ("a" * 255, "a" * 255),
    ],
)
def test_names_are_normalised(raw: str, clean: str) -> None:
    assert clean_name(raw) == clean


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        ".",
        "..",
        "a/b",
        "..\\x",
        "a\x00b",
        "tab\there",
        "x" * 256,
        "é" * 128,
        "invoice\u202efdp.exe",
        "\u2066hidden",
    ],
)
def test_hostile_names_are_refused(bad: str) -> None:
    with pytest.raises(Problem) as err:
        clean_name(bad)
    assert err.value.code == "invalid_name"


def test_names_compare_case_insensitively_and_number_keeping_the_extension() -> None:
    assert name_key("Report.PDF") == name_key("report.pdf")
    assert name_key("STRASSE") == name_key("straße")
    assert numbered("report.pdf", 1) == "report (1).pdf"
    assert numbered("report (1).pdf", 2) == "report (2).pdf"
    assert numbered("Makefile", 3) == "Makefile (3)"
    assert numbered(".bashrc", 1) == ".bashrc (1)"
    long = numbered("é" * 127 + ".txt", 12)
    assert len(long.encode()) <= 255 and long.endswith(" (12).txt")


@pytest.mark.parametrize(
    ("header", "ranges"),
    [
        ("bytes=0-99", [(0, 99)]),
        ("bytes=100-", [(100, 999)]),
        ("bytes=-100", [(900, 999)]),
        ("bytes=-5000", [(0, 999)]),
        ("bytes=0-9999", [(0, 999)]),
        ("bytes=0-9, 20-29,5-14", [(0, 14), (20, 29)]),
        ("bytes=10-19,20-29", [(10, 29)]),
        ("bytes=0-1,5000-6000", [(0, 1)]),
        ("items=0-5", None),
        ("bytes=5-1", None),
        ("bytes=a-b", None),
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(0, 200, 2)), None),  # a range flood
    ],
)
def test_range_parsing(header: str, ranges: list[tuple[int, int]] | None) -> None:
    assert parse_ranges(header, 1000) == ranges


def test_unsatisfiable_ranges_say_the_size() -> None:
    with pytest.raises(Problem) as err:
        parse_ranges("bytes=1000-", 1000)
    assert err.value.status == 416 and err.value.headers["Content-Range"] == "bytes */1000"
    with pytest.raises(Problem):
        parse_ranges("bytes=-0", 1000)


def test_content_disposition_and_inline_rules() -> None:
    header = content_disposition('naïve "quote".pdf', inline=False)
    assert header.startswith('attachment; filename="na_ve _quote_.pdf";')
    assert header.endswith("filename*=UTF-8''na%C3%AFve%20%22quote%22.pdf")
    assert may_inline("image/png") and may_inline("video/mp4") and may_inline("application/pdf")
    assert not may_inline("image/svg+xml") and not may_inline("text/html")


@pytest.mark.parametrize(
    ("head", "name", "mime"),
    [
        (b"", "x", "application/x-empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "virus.exe", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a", "image/jpeg"),
        (b"GIF89a" + b"\x00" * 10, "a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "a", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "a", "audio/wav"),
        (b"BM\x00\x00\x00\x00\x00\x00\x00\x006\x00", "a", "image/bmp"),
        (b"BMW service report", "a.txt", "text/plain"),
        (b"%PDF-1.7\n", "a", "application/pdf"),
        (b"\x7fELF\x02\x01\x01", "holiday.jpg", "application/x-executable"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "a.txt", "application/vnd.microsoft.portable-executable"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00", "a", "video/mp4"),
        (b"\x00\x00\x00\x20ftypqt  \x00\x00", "a", "video/quicktime"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "a", "audio/mp4"),
        (b"\x00\x00\x00\x1cftypheic", "a", "image/heic"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm", "a", "video/webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x82\x88matroska", "a", "video/x-matroska"),
        (b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis", "a", "audio/ogg"),
        (b"fLaC\x00\x00\x00\x22", "a", "audio/flac"),
        (b"ID3\x04\x00", "a", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "a", "audio/mpeg"),
        (b"\xff\xf1\x50\x80", "a", "audio/aac"),
        (b"FLV\x01\x05", "a", "video/x-flv"),
        ((b"\x47" + b"\x00" * 187) * 3, "a", "video/mp2t"),
        (
            b"PK\x03\x04" + b"\x00" * 26 + b"[Content_Types].xml word/",
            "a",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (b"PK\x03\x04" + b"\x00" * 40, "a", "application/zip"),
        (b"\x1f\x8b\x08\x00", "a", "application/gzip"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "a.png", "image/svg+xml"),
        (b'<?xml version="1.0"?>\n<!-- c -->\n<svg>', "a", "image/svg+xml"),
        (b"<?xml version='1.0'?><feed/>", "a", "application/xml"),
        (b"  <!DOCTYPE html><html>", "cat.png", "text/html"),
        (b"<script>alert(1)</script>", "a.txt", "text/html"),
        (b'{"a": [1, 2]}', "data.bin", "application/json"),
        (b"[1, 2, 3]", "a", "application/json"),
        (b"a,b\n1,2\n", "table.csv", "text/csv"),
        (b"# Title\n", "README.md", "text/markdown"),
        ("héllo wörld ✓".encode()[:-1], "a", "text/plain"),  # cut inside a character
        (b"\xef\xbb\xbfBOM text", "a", "text/plain"),
        ("UTF-16 text".encode("utf-16"), "a", "text/plain"),
        (b"\x00\x01\x02binary\xfe", "a.txt", "application/octet-stream"),
        (b"\xc3\x28 invalid utf-8 \xff", "a.txt", "application/octet-stream"),
    ],
)
def test_sniffing_trusts_bytes_not_names(head: bytes, name: str, mime: str) -> None:
    assert sniff(head, name) == mime
