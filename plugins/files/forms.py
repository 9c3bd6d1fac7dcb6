"""Plain ``multipart/form-data`` uploads (``POST /api/files``) for small files and old clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader

from syncstream.sdk import (
    Call,
    Problem,
    Row,
    idempotency_in_use,
    idempotency_key,
)

from .service import FilesService
from .tree import public


async def upload_form(call: Call[None], service: FilesService) -> dict[str, Any]:
    """Stream each ``file`` part of a multipart form into an upload, then into a file.

    With an ``Idempotency-Key`` (the user's own), the same form again answers the files the
    first one made (409 while it is still arriving) and its body is not read.
    """
    key = idempotency_key(call.request.headers)
    if key is not None and (replayed := await _replay(call, service, key)) is not None:
        return replayed
    try:
        reader = await call.request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise Problem(415, "unsupported_media_type", "send multipart/form-data") from None
    parent_id = ""
    files: list[dict[str, Any]] = []
    limit = service.config.multipart_max_bytes
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise Problem(422, "invalid_form", "nested multipart is not supported")
        if part.name == "parent_id" and part.filename is None:
            parent_id = (await part.text())[:64]
            continue
        if part.name != "file" or part.filename is None:
            raise Problem(422, "invalid_form", f"unexpected form field {str(part.name)[:40]!r}")
        owner_id, parent = await service.access.folder(call.user, parent_id, "write")
        upload = await service.uploads.create(
            owner_id=owner_id,
            parent_id=parent,
            created_by=call.user.id,
            name=part.filename,
            length=None,
            idempotency_key=None if key is None else _part_key(key, len(files)),
        )
        try:
            upload = await service.uploads.append(upload, 0, _part_chunks(part), limit=limit)
            node = await service.uploads.complete(upload)
        except BaseException:
            await service.uploads.delete(upload)
            raise
        files.append(public(node, "owner" if owner_id == call.user.id else "write"))
    if not files:
        raise Problem(422, "invalid_form", "the form has no 'file' part")
    return {"files": files}


def _part_key(key: str, index: int) -> str:
    """Each file of a keyed form is an upload with its own key: ``form:<key>:<index>``."""
    return f"form:{key}:{index}"


async def _replay(call: Call[None], service: FilesService, key: str) -> dict[str, Any] | None:
    """The answer a keyed form already had, or None if this key is new for this user."""
    uploads: list[Row] = []
    while upload := await service.uploads.by_key(call.user.id, _part_key(key, len(uploads))):
        if upload["file_id"] is None:
            raise idempotency_in_use()
        uploads.append(upload)
    if not uploads:
        return None
    nodes = [await service.tree.get(upload["file_id"]) for upload in uploads]
    return {  # a file deleted since is left out
        "files": [
            public(node, "owner" if node["owner_id"] == call.user.id else "write")
            for node in nodes
            if node is not None
        ]
    }


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(1 << 20):
        yield chunk
