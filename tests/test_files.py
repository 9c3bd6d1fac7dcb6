"""Files plugin end to end: tus uploads, ranged downloads, folders, trash, sharing, links."""

from __future__ import annotations

import asyncio
import email
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncstream.bus import Event

from .files_support import (
    OFFSET_TYPE,
    TUS,
    checksum,
    download,
    form_upload,
    metadata,
    processed,
    tus_create,
    tus_patch,
    tus_upload,
)
from .support import Client, eventually, running, spawn_node

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cf000001010100189dd0a60000000049454e44ae426082"
)


async def test_tus_upload_with_checksums_resumes_and_sniffs(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        status, _, resp = await c.call("OPTIONS", "/api/files/tus")
        assert status == 204
        assert resp.headers["Tus-Version"] == "1.0.0"
        assert "checksum" in resp.headers["Tus-Extension"]
        assert "sha1" in resp.headers["Tus-Checksum-Algorithm"]
        data = os.urandom(300_000) + b"tail"
        status, body, headers = await tus_create(
            c, token, len(data), "photo.png", filetype="image/png"
        )
        assert status == 201, body
        assert headers["Tus-Resumable"] == "1.0.0" and "Upload-Expires" in headers
        location = headers["Location"]
        status, _, resp = await c.call("HEAD", location, token, headers=TUS)
        assert status == 200 and resp.headers["Upload-Offset"] == "0"
        assert resp.headers["Upload-Length"] == str(len(data))
        assert resp.headers["Cache-Control"] == "no-store"

        first = data[:100_000]
        status, body, headers = await tus_patch(
            c, token, location, 0, first, Upload_Checksum=checksum("sha1", first)
        )
        assert status == 204 and headers["Upload-Offset"] == "100000", body
        # Wrong offset: 409 and nothing changes.
        status, body, _ = await tus_patch(c, token, location, 5, data[5:10])
        assert status == 409 and body["code"] == "offset_mismatch"
        # Checksum mismatch: 460, the chunk is discarded.
        chunk = data[100_000:200_000]
        status, body, _ = await tus_patch(
            c, token, location, 100_000, chunk, Upload_Checksum=checksum("sha256", b"other")
        )
        assert status == 460 and body["code"] == "checksum_mismatch"
        status, body, _ = await tus_patch(
            c, token, location, 100_000, chunk, Upload_Checksum="crc32 AAAA"
        )
        assert status == 400 and body["code"] == "checksum_algorithm_unsupported"
        _, _, resp = await c.call("HEAD", location, token, headers=TUS)
        assert resp.headers["Upload-Offset"] == "100000"
        # Missing Tus-Resumable: 412 with Tus-Version.
        status, body, resp = await c.call("HEAD", location, token)
        assert status == 412 and resp.headers["Tus-Version"] == "1.0.0"
        # Wrong content type: 415.
        status, body, _ = await c.call(
            "PATCH",
            location,
            token,
            data=b"x",
            headers={**TUS, "Content-Type": "text/plain", "Upload-Offset": "100000"},
        )
        assert status == 415
        # Past the declared length: 413, nothing kept.
        status, body, _ = await tus_patch(c, token, location, 100_000, data[100_000:] + b"extra")
        assert status == 413 and body["code"] == "upload_too_large"
        status, body, headers = await tus_patch(c, token, location, 100_000, data[100_000:])
        assert status == 204 and headers["Upload-Offset"] == str(len(data))

        file_id = location.rsplit("/", 1)[1]
        status, info, _ = await c.call("GET", f"/api/files/{file_id}", token)
        assert status == 200, info
        assert info["name"] == "photo.png" and info["size"] == len(data)
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["mime"] == "application/octet-stream", "the client's filetype is not trusted"
        assert info["access"] == "owner" and info["path"] == []
        status, got, _ = await download(c, token, f"/api/files/{file_id}/content")
        assert status == 200 and got == data
        # Another user cannot see the upload or the file.
        bob = await c.register("bob")
        status, body, _ = await c.call("HEAD", location, bob, headers=TUS)
        assert status == 404
        status, body, _ = await c.call("GET", f"/api/files/{file_id}", bob)
        assert status == 404 and body["code"] == "file_not_found"
        status, _, _ = await download(c, bob, f"/api/files/{file_id}/content")
        assert status == 404
        status, body, _ = await c.call("GET", f"/api/files/{file_id}")
        assert status == 401


async def test_creation_with_upload_deferred_length_and_termination(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        headers = {
            **TUS,
            "Upload-Length": "11",
            "Upload-Metadata": metadata(filename="hello.txt"),
            "Content-Type": OFFSET_TYPE,
        }
        status, body, resp = await c.call(
            "POST", "/api/files/tus", token, headers=headers, data=b"hello world"
        )
        assert status == 201, body
        assert resp.headers["Upload-Offset"] == "11"
        file_id = resp.headers["Location"].rsplit("/", 1)[1]
        _, info, _ = await c.call("GET", f"/api/files/{file_id}", token)
        assert info["mime"] == "text/plain" and info["size"] == 11

        status, body, headers2 = await tus_create(c, token, None, "later.bin")
        assert status == 201 and headers2["Upload-Defer-Length"] == "1"
        location = headers2["Location"]
        status, _, _ = await tus_patch(c, token, location, 0, b"abc")
        assert status == 204
        status, _, h = await tus_patch(c, token, location, 3, b"def", Upload_Length="6")
        assert status == 204 and h["Upload-Offset"] == "6"
        _, info, _ = await c.call("GET", f"/api/files/{location.rsplit('/', 1)[1]}", token)
        assert info["size"] == 6

        status, _, headers3 = await tus_create(c, token, 100, "gone.bin")
        location = headers3["Location"]
        status, _, _ = await c.call("DELETE", location, token, headers=TUS)
        assert status == 204
        status, body, _ = await c.call("HEAD", location, token, headers=TUS)
        assert status == 404
        # Bad requests.
        status, body, _ = await c.call(
            "POST", "/api/files/tus", token, headers={**TUS, "Upload-Metadata": "filename eA=="}
        )
        assert status == 400 and body["code"] == "length_required"
        status, body, _ = await c.call(
            "POST",
            "/api/files/tus",
            token,
            headers={**TUS, "Upload-Length": "1", "Upload-Metadata": "filename !!!"},
        )
        assert status == 400 and body["code"] == "invalid_metadata"
        status, body, _ = await tus_create(c, token, 5, "../../etc/passwd")
        assert status == 422 and body["code"] == "invalid_name"
        status, body, headers4 = await tus_create(c, token, 0, "empty.txt")
        assert status == 201, body
        _, info, _ = await c.call("GET", f"/api/files/{headers4['Location'][-32:]}", token)
        assert info["size"] == 0 and info["mime"] == "application/x-empty"


async def test_limits_quota_and_expiry(tmp_path: Path) -> None:
    overrides = {
        "plugins.files.max_file_bytes": 1000,
        "plugins.files.quota_bytes": 1500,
        "plugins.files.upload_expiry_seconds": 3,
        "plugins.files.multipart_max_bytes": 400,
    }
    async with running(tmp_path, **overrides) as c:
        token = await c.register("alice")
        status, body, _ = await tus_create(c, token, 1001, "big.bin")
        assert status == 413 and body["code"] == "file_too_large"
        status, body, headers = await tus_create(c, token, 1000, "a.bin")
        assert status == 201
        status, body, _ = await tus_create(c, token, 600, "b.bin")
        assert status == 413 and body["code"] == "quota_exceeded"
        assert body["quota"] == 1500
        # The open upload expires; its reservation goes with it.
        expires = email.utils.parsedate_to_datetime(headers["Upload-Expires"]).timestamp() + 1
        await eventually(lambda: time.time() > expires, "the upload's expiry", timeout=30)
        status, body, _ = await tus_patch(c, token, headers["Location"], 0, b"late")
        assert status == 410 and body["code"] == "upload_expired"
        # Deferred length is checked while bytes arrive.
        status, body, headers = await tus_create(c, token, None, "stream.bin")
        status, body, _ = await tus_patch(c, token, headers["Location"], 0, b"x" * 1200)
        assert status == 413
        _, _, resp = await c.call("HEAD", headers["Location"], token, headers=TUS)
        assert resp.headers["Upload-Offset"] == "0", "a refused body leaves nothing behind"
        # Plain form uploads have their own cap.
        status, body = await form_upload(c, token, "small.txt", b"hi there")
        assert status == 201 and body["files"][0]["size"] == 8
        status, body = await form_upload(c, token, "large.bin", b"x" * 401)
        assert status == 413
        _, usage, _ = await c.call("GET", "/api/files/usage", token)
        assert usage == {"used": 8, "quota": 1500}


async def test_ranged_downloads_and_validators(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        data = bytes(range(256)) * 40
        file_id = await tus_upload(c, token, data, "Résumé «final».bin")
        path = f"/api/files/{file_id}/content"
        status, body, h = await download(c, token, path)
        assert status == 200 and body == data
        assert h["Accept-Ranges"] == "bytes" and h["Content-Length"] == str(len(data))
        assert h["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert (
            "filename*=UTF-8''R%C3%A9sum%C3%A9%20%C2%ABfinal%C2%BB.bin" in h["Content-Disposition"]
        )
        assert h["Content-Disposition"].startswith("attachment;")
        etag, modified = h["ETag"], h["Last-Modified"]

        status, body, h = await download(c, token, path, Range="bytes=100-199")
        assert status == 206 and body == data[100:200]
        assert h["Content-Range"] == f"bytes 100-199/{len(data)}"
        status, body, h = await download(c, token, path, Range="bytes=-10")
        assert status == 206 and body == data[-10:]
        status, body, h = await download(c, token, path, Range="bytes=10000-")
        assert status == 206 and body == data[10000:]
        status, body, h = await download(c, token, path, Range=f"bytes={len(data)}-")
        assert status == 416 and h["Content-Range"] == f"bytes */{len(data)}"
        status, body, h = await download(c, token, path, Range="lines=1-2")
        assert status == 200 and body == data

        status, body, h = await download(c, token, path, Range="bytes=0-9,20-29,25-39")
        assert status == 206
        assert h["Content-Type"].startswith("multipart/byteranges; boundary=")
        assert int(h["Content-Length"]) == len(body)
        message = email.message_from_bytes(
            f"Content-Type: {h['Content-Type']}\r\n\r\n".encode() + body
        )
        parts = [(p["Content-Range"], p.get_payload(decode=True)) for p in message.get_payload()]
        assert parts == [
            (f"bytes 0-9/{len(data)}", data[0:10]),
            (f"bytes 20-39/{len(data)}", data[20:40]),
        ]
        # If-Range: resume only if the file is unchanged.
        status, body, _ = await download(c, token, path, Range="bytes=5-9", If_Range=etag)
        assert status == 206 and body == data[5:10]
        status, body, _ = await download(c, token, path, Range="bytes=5-9", If_Range='"stale"')
        assert status == 200 and body == data
        status, body, _ = await download(c, token, path, Range="bytes=5-9", If_Range=modified)
        assert status == 206
        status, body, _ = await download(c, token, path, If_None_Match=etag)
        assert status == 304 and body == b""
        status, _, resp = await c.call("HEAD", path, token)
        assert status == 200 and resp.headers["Content-Length"] == str(len(data))
        # Inline only for safe types.
        png = await tus_upload(c, token, PNG_1PX, "dot.png")
        _, _, h = await download(c, token, f"/api/files/{png}/content?inline=true")
        assert h["Content-Disposition"].startswith("inline;") and h["Content-Type"] == "image/png"
        html = await tus_upload(c, token, b"<html><script>alert(1)</script>", "x.png")
        _, _, h = await download(c, token, f"/api/files/{html}/content?inline=true")
        assert h["Content-Disposition"].startswith("attachment;")
        assert h["Content-Type"] == "text/html" and "sandbox" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"


async def test_folders_trash_and_hostile_names(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")

        async def folder(name: str, parent: str = "") -> dict[str, Any]:
            status, body, _ = await c.call(
                "POST", "/api/files/folders", token, json={"name": name, "parent_id": parent}
            )
            assert status == 201, body
            return dict(body)

        docs = await folder("Docs")
        work = await folder("Work", docs["id"])
        status, body, _ = await c.call(
            "POST", "/api/files/folders", token, json={"name": "docs", "parent_id": ""}
        )
        assert status == 409 and body["code"] == "name_taken", "names collide case-insensitively"
        for bad in ("..", ".", "a/b", "a\\b", "nul\x00byte", "x" * 256, "evil\u202egpj.exe", " "):
            status, body, _ = await c.call(
                "POST", "/api/files/folders", token, json={"name": bad, "parent_id": ""}
            )
            # The core's guard refuses NUL in any field before the plugin sees the name.
            code = "validation_failed" if "\x00" in bad else "invalid_name"
            assert status == 422 and body["code"] == code, bad
        status, body, _ = await c.call(
            "POST", "/api/files/folders", token, json={"name": "x", "parent_id": "f" * 32}
        )
        assert status == 404

        report = await tus_upload(c, token, b"report", "report.txt", parent_id=work["id"])
        again = await tus_upload(c, token, b"report 2", "report.txt", parent_id=work["id"])
        _, info, _ = await c.call("GET", f"/api/files/{again}", token)
        assert info["name"] == "report (1).txt", "uploads never overwrite: the name is numbered"
        assert [p["name"] for p in info["path"]] == ["Docs", "Work"]

        _, page, _ = await c.call("GET", f"/api/files?parent={work['id']}", token)
        assert [i["name"] for i in page["items"]] == ["report (1).txt", "report.txt"]
        _, page, _ = await c.call("GET", "/api/files", token)
        assert [i["name"] for i in page["items"]] == ["Docs"]

        status, body, _ = await c.call(
            "PATCH", f"/api/files/{report}", token, json={"name": "Report (1).TXT"}
        )
        assert status == 409 and body["code"] == "name_taken"
        status, body, _ = await c.call(
            "PATCH", f"/api/files/{report}", token, json={"name": "final.txt", "parent_id": ""}
        )
        assert status == 200 and body["name"] == "final.txt" and body["parent_id"] is None
        status, body, _ = await c.call(
            "PATCH", f"/api/files/{docs['id']}", token, json={"parent_id": work["id"]}
        )
        assert status == 409 and body["code"] == "move_into_itself"

        # Trash a folder: its contents go with it and come back with it.
        status, _, _ = await c.call("DELETE", f"/api/files/{docs['id']}", token)
        assert status == 204
        status, _, _ = await c.call("GET", f"/api/files/{again}/content", token)
        _, trash, _ = await c.call("GET", "/api/files/trash", token)
        assert [i["name"] for i in trash["items"]] == ["Docs"]
        _, page, _ = await c.call("GET", "/api/files", token)
        assert [i["name"] for i in page["items"]] == ["final.txt"]
        await folder("Docs")  # the name is free while the old one is in the trash
        status, body, _ = await c.call("POST", f"/api/files/{docs['id']}/restore", token)
        assert status == 200 and body["name"] == "Docs (1)"
        _, page, _ = await c.call("GET", f"/api/files?parent={work['id']}", token)
        assert [i["name"] for i in page["items"]] == ["report (1).txt"]
        # Purge: gone for good, bytes included.
        await c.call("DELETE", f"/api/files/{docs['id']}", token)
        _, body, _ = await c.call("DELETE", "/api/files/trash", token)
        assert body == {"deleted_files": 1}
        status, _, _ = await c.call("GET", f"/api/files/{again}", token)
        assert status == 404
        blobs = tmp_path / "data" / "plugins" / "files" / "blobs"
        assert not (blobs / again[-2:] / again).exists()
        status, body, _ = await c.call("GET", "/api/files/not-an-id", token)
        assert status == 404


async def test_sharing_is_checked_on_every_access(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        events: list[Event] = []
        assert c.server is not None and c.server.core is not None
        c.server.core.bus.listen("file.*", events.append)
        alice = await c.register("alice")
        bob = await c.register("bob")
        await c.register("carol")
        _, team, _ = await c.call("POST", "/api/files/folders", alice, json={"name": "Team"})
        _, sub, _ = await c.call(
            "POST", "/api/files/folders", alice, json={"name": "Sub", "parent_id": team["id"]}
        )
        secret = await tus_upload(c, alice, b"secret plan", "plan.txt", parent_id=sub["id"])
        mine = await tus_upload(c, alice, b"private", "private.txt")

        status, _, _ = await c.call("GET", f"/api/files/{secret}", bob)
        assert status == 404
        status, body, _ = await c.call(
            "PUT", f"/api/files/{team['id']}/shares/bob", alice, json={"permission": "read"}
        )
        assert status == 200, body
        status, body, _ = await c.call(
            "PUT", f"/api/files/{team['id']}/shares/carol", bob, json={"permission": "read"}
        )
        assert status == 403 and body["code"] == "owner_only"
        # Inherited down the tree; read is not write.
        status, body, _ = await c.call("GET", f"/api/files/{secret}", bob)
        assert status == 200 and body["access"] == "read"
        status, got, _ = await download(c, bob, f"/api/files/{secret}/content")
        assert got == b"secret plan"
        status, body, _ = await c.call("PATCH", f"/api/files/{secret}", bob, json={"name": "x"})
        assert status == 403
        status, _, _ = await c.call("GET", f"/api/files/{mine}", bob)
        assert status == 404
        status, body, _ = await tus_create(c, bob, 3, "b.txt", parent_id=sub["id"])
        assert status == 403
        _, shared, _ = await c.call("GET", "/api/files/shared", bob)
        assert [i["name"] for i in shared["items"]] == ["Team"]
        _, found, _ = await c.call("GET", "/api/files/search?q=plan&scope=shared", bob)
        assert [i["id"] for i in found["items"]] == [secret]
        _, found, _ = await c.call("GET", "/api/files/search?q=plan", bob)
        assert found["items"] == [], "scope=mine is the caller's own files"

        # Write access lets bob add a file; it counts against alice's storage.
        await c.call(
            "PUT", f"/api/files/{team['id']}/shares/bob", alice, json={"permission": "write"}
        )
        added = await tus_upload(c, bob, b"from bob", "notes.txt", parent_id=sub["id"])
        _, info, _ = await c.call("GET", f"/api/files/{added}", alice)
        assert info["owner_id"] != info["created_by"]
        _, shares, _ = await c.call("GET", f"/api/files/{team['id']}/shares", alice)
        assert [(s["username"], s["permission"]) for s in shares["shares"]] == [("bob", "write")]

        # Revocation takes effect at once.
        status, _, _ = await c.call("DELETE", f"/api/files/{team['id']}/shares/bob", alice)
        assert status == 204
        status, _, _ = await download(c, bob, f"/api/files/{secret}/content")
        assert status == 404
        status, body, _ = await c.call("DELETE", f"/api/files/{team['id']}/shares/bob", alice)
        assert status == 404

        await c.call("DELETE", f"/api/files/{mine}?permanent=true", alice)
        wanted = {"file.uploaded", "file.shared", "file.deleted"}
        await eventually(lambda: wanted <= {e.type for e in events}, f"events {wanted}", timeout=30)


async def test_public_links_with_password_limit_expiry_and_revocation(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = await c.register("alice")
        data = b"shared bytes" * 100
        file_id = await tus_upload(c, alice, data, "deck.pdf")
        status, link, _ = await c.call(
            "POST",
            f"/api/files/{file_id}/links",
            alice,
            json={"password": "open sesame", "max_downloads": 2},
        )
        assert status == 201, link
        base = f"/api/files/links/{link['token']}"
        status, body, _ = await c.call("GET", base)
        assert status == 401 and body["code"] == "link_password_required"
        status, body, _ = await c.call("GET", base, headers={"Link-Password": "wrong"})
        assert status == 401
        ok = {"Link_Password": "open sesame"}
        status, body, _ = await c.call("GET", base, headers={"Link-Password": "open sesame"})
        assert status == 200 and body["item"]["name"] == "deck.pdf"
        assert body["downloads_left"] == 2
        for _ in range(2):
            status, got, _ = await download(c, None, base + "/content", **ok)
            assert status == 200 and got == data
        # Resuming a download (a range past byte 0) does not count as another download...
        status, got, _ = await download(c, None, base + "/content", Range="bytes=10-", **ok)
        assert status == 206 and got == data[10:]
        # ... a new download does, and the limit is reached.
        status, body, _ = await download(c, None, base + "/content", **ok)
        assert status == 410

        status, link2, _ = await c.call(
            "POST", f"/api/files/{file_id}/links", alice, json={"expires_in_seconds": 3}
        )
        status, _, _ = await download(c, None, f"/api/files/links/{link2['token']}/content")
        assert status == 200

        async def expired() -> Any:
            status, body, _ = await c.call("GET", f"/api/files/links/{link2['token']}")
            assert status in (200, 410), body
            return body if status == 410 else None

        body = await eventually(expired, "the link to expire", timeout=30)
        assert body["code"] == "link_expired"

        _, link3, _ = await c.call("POST", f"/api/files/{file_id}/links", alice, json={})
        _, listing, _ = await c.call("GET", f"/api/files/{file_id}/links", alice)
        assert len(listing["links"]) == 3
        bob = await c.register("bob")
        status, _, _ = await c.call("DELETE", f"/api/files/links/{link3['token']}", bob)
        assert status == 404
        status, _, _ = await c.call("DELETE", f"/api/files/links/{link3['token']}", alice)
        assert status == 204
        status, _, _ = await download(c, None, f"/api/files/links/{link3['token']}/content")
        assert status == 404
        status, _, _ = await download(c, None, "/api/files/links/made-up/content")
        assert status == 404

        # A folder link reaches what is inside the folder and nothing else.
        _, box, _ = await c.call("POST", "/api/files/folders", alice, json={"name": "Box"})
        inside = await tus_upload(c, alice, b"inside", "in.txt", parent_id=box["id"])
        _, flink, _ = await c.call("POST", f"/api/files/{box['id']}/links", alice, json={})
        fbase = f"/api/files/links/{flink['token']}"
        _, body, _ = await c.call("GET", fbase)
        assert [i["name"] for i in body["items"]] == ["in.txt"]
        status, got, _ = await download(c, None, f"{fbase}/files/{inside}/content")
        assert status == 200 and got == b"inside"
        status, _, _ = await download(c, None, f"{fbase}/files/{file_id}/content")
        assert status == 404, "a folder link does not reach files outside the folder"


async def test_search_by_words_filters_and_pages(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend) as c:
        token = await c.register("alice")
        _, trip, _ = await c.call("POST", "/api/files/folders", token, json={"name": "Trip"})
        names = ["Holiday_video 2024.mp4", "holiday-notes.txt", "Café menu.txt", "budget.csv"]
        ids = {}
        for i, name in enumerate(names):
            head = b"\x00\x00\x00\x18ftypisom" if name.endswith(".mp4") else b""
            data = (head + b"x" * 500)[: 20 + i * 100]
            ids[name] = await tus_upload(
                c, token, data, name, parent_id=trip["id"] if i < 2 else ""
            )
        bob = await c.register("bob")
        await tus_upload(c, bob, b"bob", "holiday bob.txt")

        async def search(query: str) -> list[str]:
            status, body, _ = await c.call("GET", f"/api/files/search?{query}", token)
            assert status == 200, body
            return sorted(i["name"] for i in body["items"])

        assert await search("q=holi") == ["Holiday_video 2024.mp4", "holiday-notes.txt"]
        assert await search("q=holiday+vid") == ["Holiday_video 2024.mp4"]
        assert await search("q=notes") == ["holiday-notes.txt"]
        assert await search("q=caf") == ["Café menu.txt"]
        assert await search("q=x%27%22*%29OR") == []  # hostile query text is only words
        assert await search("q=holiday&type=document") == ["holiday-notes.txt"]
        assert await search("type=folder") == ["Trip"]
        assert await search("min_size=100&max_size=150") == ["holiday-notes.txt"]
        assert await search(f"folder={trip['id']}") == sorted(names[:2])
        assert await search("after=2000-01-01T00:00:00Z&type=file") == sorted(names)
        assert await search("before=2000-01-01T00:00:00Z") == []
        status, body, _ = await c.call("GET", "/api/files/search?min_size=-1", token)
        assert status == 422
        status, body, _ = await c.call("GET", "/api/files/search?cursor=garbage", token)
        assert status == 422 and body["code"] == "invalid_cursor"

        seen: list[str] = []
        cursor = ""
        for _ in range(10):
            status, body, _ = await c.call(
                "GET", f"/api/files/search?limit=2&sort=name&order=asc{cursor}", token
            )
            seen += [i["name"] for i in body["items"]]
            if not body["next_cursor"]:
                break
            cursor = f"&cursor={body['next_cursor']}"
        assert seen[0] == "Trip", "folders come first"
        assert sorted(seen) == sorted([*names, "Trip"]) and len(seen) == len(set(seen))


@pytest.mark.parametrize("kind", ["image", "video"])
async def test_thumbnails_and_media_facts(tmp_path: Path, kind: str) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        if kind == "image":
            from PIL import Image

            source = tmp_path / "pic.png"
            Image.new("RGB", (640, 480), (200, 30, 30)).save(source)
        else:
            source = tmp_path / "clip.mp4"
            proc = await asyncio.create_subprocess_exec(
                "ffmpeg",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
                "-t",
                "3",
                "-c:v",
                "libx264",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
                str(source),
            )
            assert await proc.wait() == 0
        file_id = await tus_upload(c, token, source.read_bytes(), source.name)
        status, body, h = await download(c, token, f"/api/files/{file_id}/thumbnail")
        assert status == 200
        info = await processed(c, token, file_id)
        assert info["thumbnails"] == "ready", info
        if kind == "image":
            assert info["mime"] == "image/png" and info["meta"]["width"] == 640
        else:
            assert info["mime"] == "video/mp4" and abs(info["meta"]["duration"] - 3) < 0.2
            assert info["meta"]["width"] == 320
        status, body, h = await download(c, token, f"/api/files/{file_id}/thumbnail?size=100")
        assert status == 200 and h["Content-Type"] == "image/jpeg"
        assert "max-age" in h["Cache-Control"] and body[:2] == b"\xff\xd8"
        from io import BytesIO

        from PIL import Image

        thumb = Image.open(BytesIO(body))
        assert max(thumb.size) == 128 and thumb.size[0] > thumb.size[1]
        bob = await c.register("bob")
        status, _, _ = await download(c, bob, f"/api/files/{file_id}/thumbnail")
        assert status == 404


async def test_upload_progress_reaches_the_uploaders_other_devices(tmp_path: Path) -> None:
    async with running(tmp_path, **{"plugins.files.progress_seconds": 0.01}) as c:
        token = await c.register("alice")
        bob = await c.register("bob")
        phone = await c.ws(token)
        reply = await phone.request("subscribe", f"uploads:{phone.hello['user']['id']}")
        assert reply["op"] == "reply", reply
        snoop = await c.ws(bob)
        reply = await snoop.request("subscribe", f"uploads:{phone.hello['user']['id']}")
        assert reply["op"] == "error"
        file_id = await tus_upload(c, token, b"z" * 5000, "z.bin")
        frames = []  # each append's progress (if the throttle let it through), then the file
        while not frames or "file" not in frames[-1]["data"]:
            frames += await phone.events(1, 30, ephemeral=True)
        assert [f["data"]["offset"] for f in frames] in ([2500, 5000], [2500, 5000, 5000])
        assert frames[-1]["data"]["file"]["id"] == file_id
        await phone.ws.close()
        await snoop.ws.close()


async def test_kill_9_mid_upload_loses_nothing_acknowledged(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nrtmp: {{enabled: false}}\n"
        "logging: {level: warning, access_log: false}\n"
    )
    node = spawn_node(config)
    data = os.urandom(3 << 20)
    try:
        await node.wait_ready()
        async with aiohttp.ClientSession() as session:
            c = Client(node.base, session)
            token = await c.register("alice")
            status, body, headers = await tus_create(c, token, len(data), "big.bin")
            location = headers["Location"]
            status, body, _ = await tus_patch(c, token, location, 0, data[: 1 << 20])
            assert status == 204, body

            sent = asyncio.Event()

            async def stalls() -> AsyncIterator[bytes]:
                yield data[1 << 20 : (1 << 20) + 300_000]
                sent.set()
                await asyncio.sleep(30)
                yield b""

            patch = asyncio.create_task(tus_patch(c, token, location, 1 << 20, stalls()))
            await sent.wait()  # unacknowledged bytes on their way: they must not survive
            node.proc.kill()  # kill -9: no cleanup, no flush
            node.proc.wait()
            with pytest.raises(aiohttp.ClientError):
                await patch

        node = spawn_node(config, port=node.port)
        await node.wait_ready()
        async with aiohttp.ClientSession() as session:
            c = Client(node.base, session)
            token = await c.login("alice")
            status, _, resp = await c.call("HEAD", location, token, headers=TUS)
            offset = int(resp.headers["Upload-Offset"])
            assert offset == 1 << 20, "exactly the acknowledged bytes survive"
            status, body, _ = await tus_patch(c, token, location, offset, data[offset:])
            assert status == 204, body
            status, got, _ = await download(c, token, f"/api/files/{location[-32:]}/content")
            assert got == data
    finally:
        node.stop()


async def test_a_cut_off_body_keeps_what_arrived(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        data = os.urandom(2 << 20)
        status, body, headers = await tus_create(c, token, len(data), "cut.bin")
        location = headers["Location"]
        host, port = c.base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"Tus-Resumable: 1.0.0\r\nContent-Type: {OFFSET_TYPE}\r\n"
                f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:700_000]
        )
        await writer.drain()
        writer.close()  # the client vanishes mid-body (TCP still delivers what it sent)

        async def kept() -> int:
            _, _, resp = await c.call("HEAD", location, token, headers=TUS)
            return int(resp.headers["Upload-Offset"])

        offset = await eventually(kept, "the bytes that arrived to be kept", timeout=30)
        assert 0 < offset <= 700_000
        status, body, _ = await tus_patch(c, token, location, offset, data[offset:])
        assert status == 204, body
        _, info, _ = await c.call("GET", f"/api/files/{location[-32:]}", token)
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        del reader


TUS_CLIENT = Path(__file__).parent / "clients" / "tus"


@pytest.fixture(scope="session")
def tus_js_client() -> Path:
    """tus-js-client from npm, installed once from the committed lock file."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (TUS_CLIENT / "node_modules" / "tus-js-client").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=TUS_CLIENT,
            check=True,
            timeout=300,
        )
    return TUS_CLIENT / "upload.mjs"


async def test_tus_js_client_uploads_aborts_and_resumes(
    tmp_path: Path, tus_js_client: Path
) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        data = os.urandom(1_300_000)
        source = tmp_path / "holiday.mov"
        source.write_bytes(data)
        chunk = 256 * 1024
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(tus_js_client),
            c.url("/api/files/tus"),
            token,
            str(source),
            str(chunk),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        events = [json.loads(line) for line in out.decode().splitlines()]
        assert proc.returncode == 0, (events, err.decode())
        kinds = [e["event"] for e in events]
        assert kinds == ["aborted", "resumed", "success"], events
        assert events[1]["sent"] >= 2 * chunk, "the second client resumed, not restarted"
        file_id = events[2]["url"].rsplit("/", 1)[1]
        _, info, _ = await c.call("GET", f"/api/files/{file_id}", token)
        assert info["name"] == "holiday.mov" and info["size"] == len(data)
        assert info["sha256"] == hashlib.sha256(data).hexdigest()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims a huge picture (a decompression bomb's first bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("bomb.png", png_claiming(100_000, 100_000), "image too large"),
        ("broken.mp4", b"\x00\x00\x00\x18ftypisom" + os.urandom(4000), "not readable media"),
        ("cut.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 100, "not a readable image"),
    ],
)
async def test_hostile_media_fails_processing_with_a_reason(
    tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    async with running(tmp_path) as c:
        token = await c.register("alice")
        file_id = await tus_upload(c, token, data, name)
        info = await processed(c, token, file_id)
        assert info["thumbnails"] == "failed", info
        assert reason in info["meta"]["error"]
        code = "media_too_large" if "large" in reason else "unreadable_media"
        assert info["meta"]["code"] == code, info["meta"]
        assert str(tmp_path) not in info["meta"]["error"], "no server paths in errors"
        status, got, headers = await download(c, token, f"/api/files/{file_id}/content")
        assert status == 200 and got == data, "the file itself is kept, byte for byte"
        status, _, headers = await download(c, token, f"/api/files/{file_id}/thumbnail")
        assert status == 200 and headers["X-Thumbnail"] == "failed"


async def test_idempotency_keys_belong_to_their_user(tmp_path: Path, backend: str) -> None:
    """The same Idempotency-Key from two users: each gets their own upload; a replay by the
    same user answers the original (tus creation and plain forms)."""
    async with running(tmp_path, backend) as c:
        alice, bob = await c.register("alice"), await c.register("bob")

        async def create(token: str, key: str, length: int = 10) -> tuple[int, Any, Any]:
            headers = {
                **TUS,
                "Upload-Length": str(length),
                "Upload-Metadata": metadata(filename="a.txt"),
                "Idempotency-Key": key,
            }
            return await c.call("POST", "/api/files/tus", token, headers=headers)

        status, _, first = await create(alice, "same-key")
        assert status == 201
        status, _, replay = await create(alice, "same-key")
        assert status == 201 and replay.headers["Location"] == first.headers["Location"]
        status, _, theirs = await create(bob, "same-key")
        assert status == 201 and theirs.headers["Location"] != first.headers["Location"]
        status, body, _ = await c.call("HEAD", first.headers["Location"], bob, headers=TUS)
        assert status == 404
        status, body, _ = await tus_patch(c, alice, first.headers["Location"], 0, b"0123456789")
        assert status == 204, body
        status, _, replay = await create(alice, "same-key")
        assert replay.headers["Upload-Offset"] == "10", "the replay says where the upload is"
        status, body, _ = await create(alice, "same-key", length=11)
        assert status == 422 and body["code"] == "idempotency_key_reused"
        status, body, _ = await create(alice, "no spaces allowed")
        assert status == 422 and body["code"] == "invalid_idempotency_key"
        at_once = await asyncio.gather(*(create(bob, "at-once") for _ in range(4)))
        assert {status for status, _, _ in at_once} <= {201, 409}, at_once
        made = {resp.headers["Location"] for status, _, resp in at_once if status == 201}
        assert len(made) == 1, "sent at the same time, the key still makes one upload"

        async def form(token: str, key: str, data: bytes) -> dict[str, Any]:
            body = aiohttp.FormData()
            body.add_field("file", data, filename="f.txt", content_type="text/plain")
            headers = {"Idempotency-Key": key}
            status, answer, _ = await c.call(
                "POST", "/api/files", token, data=body, headers=headers
            )
            assert status == 201, answer
            return dict(answer)

        mine = await form(alice, "form-key", b"alice's")
        again = await form(alice, "form-key", b"alice's")
        assert [f["id"] for f in again["files"]] == [f["id"] for f in mine["files"]]
        bobs = await form(bob, "form-key", b"bob's")
        assert bobs["files"][0]["id"] != mine["files"][0]["id"]
        status, got, _ = await download(c, bob, f"/api/files/{bobs['files'][0]['id']}/content")
        assert got == b"bob's"
        _, page, _ = await c.call("GET", "/api/files", alice)
        assert sorted(i["name"] for i in page["items"]) == ["a.txt", "f.txt"], "one file each"
