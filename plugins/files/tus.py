"""The tus 1.0 resumable upload protocol at ``/api/files/tus`` (tus.io/protocols/resumable-upload).

Extensions: creation, creation-with-upload, creation-defer-length, termination, checksum
(sha1, sha256, md5) and expiration, so tus-js-client and Uppy work unchanged. Metadata keys
``filename`` (or ``name``) and ``parent_id`` (or ``folder``) say what the file is called and
where it goes; ``filetype`` is ignored: the type is sniffed from the content.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from aiohttp import web

from syncstream.sdk import Problem, Row, User, idempotency_key, parse_natural
from syncstream.sdk import idempotency_reused as reused

from .access import Access
from .config import Config
from .uploads import CHECKSUMS, Checksum, Uploads

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration"
OFFSET_TYPE = "application/offset+octet-stream"
BASE = "/api/files/tus"
MAX_METADATA = 4096
# What browsers of other origins may send and read (the core's CORS lists these for us).
REQUEST_HEADERS = (
    "Tus-Resumable", "Upload-Length", "Upload-Defer-Length", "Upload-Offset", "Upload-Metadata",
    "Upload-Checksum",
)  # fmt: skip
RESPONSE_HEADERS = (
    "Tus-Resumable", "Tus-Version", "Tus-Max-Size", "Tus-Extension", "Upload-Offset",
    "Upload-Length", "Upload-Metadata", "Upload-Expires",
)  # fmt: skip

Authenticate = Callable[[web.Request], Awaitable[User]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_metadata(header: str) -> dict[str, str]:
    """``key base64,key2 base64,flag`` -> dict; 400 ``invalid_metadata`` on anything else."""
    if len(header) > MAX_METADATA:
        raise Problem(400, "invalid_metadata", f"Upload-Metadata is over {MAX_METADATA} bytes")
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        if not key or " " in value.strip():
            raise Problem(400, "invalid_metadata", f"malformed Upload-Metadata pair {pair[:40]!r}")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise Problem(
                400, "invalid_metadata", f"metadata {key!r} is not base64 UTF-8"
            ) from None
    return out


def parse_checksum(header: str | None) -> Checksum | None:
    if not header:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise Problem(
            400,
            "checksum_algorithm_unsupported",
            f"unsupported checksum algorithm {algorithm[:20]!r} (use {', '.join(CHECKSUMS)})",
        )
    try:
        return Checksum(algorithm, base64.b64decode(value.strip(), validate=True))
    except binascii.Error:
        raise Problem(400, "invalid_checksum", "Upload-Checksum is not base64") from None


def _int_header(request: web.Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    value = parse_natural(raw)
    if value is None:
        raise Problem(400, f"invalid_{name.lower().replace('-', '_')}", f"{name} is not a number")
    return value


def upload_headers(row: Row) -> dict[str, str]:
    headers = {
        "Upload-Offset": str(row["upload_offset"]),
        "Upload-Expires": formatdate(row["expires_at"], usegmt=True),
        "Cache-Control": "no-store",
    }
    if row["length"] is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(row["length"])
    if row["metadata"]:
        headers["Upload-Metadata"] = row["metadata"]
    return headers


class Tus:
    """The tus routes; bytes and limits are :class:`Uploads`' job."""

    def __init__(
        self, uploads: Uploads, access: Access, config: Config, authenticate: Authenticate
    ) -> None:
        self.uploads, self.access, self.config = uploads, access, config
        self.authenticate = authenticate

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("OPTIONS", BASE, self.options)
        router.add_route("POST", BASE, self._tus(self.create))
        for method, handler in (
            ("OPTIONS", self.options),
            ("HEAD", self._tus(self.head)),
            ("PATCH", self._tus(self.patch)),
            ("DELETE", self._tus(self.delete)),
        ):
            router.add_route(method, BASE + "/{upload_id}", handler)

    def _tus(self, handler: Handler) -> Handler:
        """Require ``Tus-Resumable: 1.0.0`` and answer with it, errors included."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                if request.headers.get("Tus-Resumable") != VERSION:
                    raise Problem(
                        412,
                        "tus_version_unsupported",
                        f"send Tus-Resumable: {VERSION}",
                        headers={"Tus-Version": VERSION},
                    )
                response = await handler(request)
            except Problem as problem:
                problem.headers["Tus-Resumable"] = VERSION
                raise
            response.headers["Tus-Resumable"] = VERSION
            return response

        return wrapped

    async def options(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=204,
            headers={
                "Tus-Resumable": VERSION,
                "Tus-Version": VERSION,
                "Tus-Max-Size": str(self.config.max_file_bytes),
                "Tus-Extension": EXTENSIONS,
                "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
            },
        )

    async def create(self, request: web.Request) -> web.StreamResponse:
        """A new upload; with an ``Idempotency-Key`` (the user's own), the same request again
        answers the upload the first one created, at its current offset (its body is not
        written again: the client goes on from ``Upload-Offset``)."""
        user = await self.authenticate(request)
        key = idempotency_key(request.headers)
        length = _int_header(request, "Upload-Length")
        deferred = request.headers.get("Upload-Defer-Length")
        if length is None and deferred != "1":
            raise Problem(400, "length_required", "send Upload-Length or Upload-Defer-Length: 1")
        if length is not None and deferred is not None:
            raise Problem(400, "length_ambiguous", "send Upload-Length or Upload-Defer-Length")
        raw_meta = request.headers.get("Upload-Metadata", "")
        meta = parse_metadata(raw_meta)
        name = meta.get("filename") or meta.get("name") or ""
        if not name:
            raise Problem(422, "invalid_name", "Upload-Metadata needs a filename")
        owner_id, parent_id = await self.access.folder(
            user, meta.get("parent_id") or meta.get("folder") or "", "write"
        )
        checksum = parse_checksum(request.headers.get("Upload-Checksum"))
        has_body = request.content_type == OFFSET_TYPE and (request.content_length or 0) > 0
        if key is not None:
            existing = await self.uploads.by_key(user.id, f"tus:{key}")
            if existing is not None:
                if (existing["length"], existing["metadata"]) != (length, raw_meta):
                    raise reused()
                location = {"Location": f"{BASE}/{existing['id']}"}
                return web.Response(status=201, headers=location | upload_headers(existing))
        row = await self.uploads.create(
            owner_id=owner_id,
            parent_id=parent_id,
            created_by=user.id,
            name=name,
            length=length,
            metadata=raw_meta,
            idempotency_key=None if key is None else f"tus:{key}",
        )
        headers = {"Location": f"{BASE}/{row['id']}"}
        if has_body:
            try:
                row = await self.uploads.append(
                    row,
                    0,
                    request.content.iter_any(),
                    checksum=checksum,
                    declared=request.content_length,
                )
            except Problem as problem:  # the upload exists: say where, so the client resumes
                problem.headers.update(headers)
                raise
        elif length == 0:
            await self.uploads.finish(row)
        headers |= upload_headers(row)
        return web.Response(status=201, headers=headers)

    async def head(self, request: web.Request) -> web.StreamResponse:
        row = await self._upload(request)
        return web.Response(status=200, headers=upload_headers(row))

    async def patch(self, request: web.Request) -> web.StreamResponse:
        row = await self._upload(request)
        if request.content_type != OFFSET_TYPE:
            raise Problem(415, "unsupported_media_type", f"PATCH bodies are {OFFSET_TYPE}")
        offset = _int_header(request, "Upload-Offset")
        if offset is None:
            raise Problem(400, "offset_required", "send Upload-Offset")
        length = _int_header(request, "Upload-Length")
        if length is not None:
            row = await self.uploads.set_length(row, length)
        checksum = parse_checksum(request.headers.get("Upload-Checksum"))
        row = await self.uploads.append(
            row,
            offset,
            request.content.iter_any(),
            checksum=checksum,
            declared=request.content_length,
        )
        headers = upload_headers(row)
        return web.Response(status=204, headers=headers)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        row = await self._upload(request)
        if row["file_id"] is not None:
            raise Problem(409, "upload_complete", "a finished upload is a file: delete the file")
        await self.uploads.delete(row)
        return web.Response(status=204)

    async def _upload(self, request: web.Request) -> dict[str, Any]:
        user = await self.authenticate(request)
        return await self.uploads.get(request.match_info["upload_id"], user.id)
