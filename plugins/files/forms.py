"""Plain ``multipart/form-data`` uploads (``POST /api/files``) for small files and old clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader

from syncstream import Call, Problem

from .service import FilesService
from .tree import public


async def upload_form(call: Call[None], service: FilesService) -> dict[str, Any]:
    """Stream each ``file`` part of a multipart form into an upload, then into a file."""
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


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(1 << 20):
        yield chunk
