"""Helpers for the files plugin tests: a tus client as tus-js-client speaks the protocol."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from multidict import CIMultiDict

from .support import Client, eventually

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_TYPE = "application/offset+octet-stream"


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


async def tus_create(
    c: Client, token: str, length: int | None, name: str = "file.bin", **meta: str
) -> tuple[int, Any, CIMultiDict[str]]:
    headers = {**TUS, "Upload-Metadata": metadata(filename=name, **meta)}
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    status, body, resp = await c.call("POST", "/api/files/tus", token, headers=headers)
    return status, body, resp.headers.copy()


async def tus_patch(
    c: Client,
    token: str,
    location: str,
    offset: int,
    data: bytes | AsyncIterator[bytes],
    **headers: str,
) -> tuple[int, Any, CIMultiDict[str]]:
    sent = {**TUS, "Content-Type": OFFSET_TYPE, "Upload-Offset": str(offset)}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    status, body, resp = await c.call("PATCH", location, token, headers=sent, data=data)
    return status, body, resp.headers.copy()


async def tus_upload(c: Client, token: str, data: bytes, name: str, **meta: str) -> str:
    """Upload ``data`` in two PATCHes; returns the new file's id."""
    status, body, headers = await tus_create(c, token, len(data), name, **meta)
    assert status == 201, body
    location = headers["Location"]
    half = len(data) // 2
    for offset, part in ((0, data[:half]), (half, data[half:])):
        if part:
            status, body, _ = await tus_patch(c, token, location, offset, part)
            assert status == 204, body
    return location.rsplit("/", 1)[1]


async def form_upload(
    c: Client, token: str, name: str, data: bytes, parent_id: str = ""
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    if parent_id:
        form.add_field("parent_id", parent_id)
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    status, body, _ = await c.call("POST", "/api/files", token, data=form)
    return status, body


async def download(
    c: Client, token: str | None, path: str, **headers: str
) -> tuple[int, bytes, CIMultiDict[str]]:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    async with c.session.get(c.url(path), headers=sent) as resp:
        return resp.status, await resp.read(), resp.headers.copy()


async def processed(c: Client, token: str, file_id: str) -> dict[str, Any]:
    """The file once its media facts and thumbnails are done (or failed)."""

    async def done() -> dict[str, Any] | None:
        _, info, _ = await c.call("GET", f"/api/files/{file_id}", token)
        return None if info["thumbnails"] == "pending" else dict(info)

    info: dict[str, Any] = await eventually(
        done, f"file {file_id} to be processed", timeout=120, every=0.05
    )
    return info
