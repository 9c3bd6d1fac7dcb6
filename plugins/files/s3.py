"""An S3-compatible blob store (AWS S3, MinIO, Ceph RGW, Garage ...) for several nodes.

Requests are signed with AWS Signature Version 4 (``UNSIGNED-PAYLOAD`` bodies, so a large
file streams from disk without being hashed twice). Files up to ``part_bytes`` go up in one
PUT, larger ones as a multipart upload; downloads stream ranged GETs. Uploads are still
assembled on the receiving node's disk and pushed to S3 once complete, so a tus upload's
requests must reach the node that holds it (route by the upload id, or share the uploads
directory between nodes).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from .config import S3Config

UNSIGNED = "UNSIGNED-PAYLOAD"
READ_BLOCK = 1 << 20


class S3Error(Exception):
    """S3 answered with an error (the message holds its status and code)."""


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime,
    payload_hash: str = UNSIGNED,
) -> dict[str, str]:
    """The headers of a request signed with AWS SigV4 for service ``s3``."""
    parts = urlsplit(url)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed |= {"host": parts.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
    names = sorted(signed)
    pairs = sorted(pair.partition("=")[::2] for pair in parts.query.split("&") if pair)
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    canonical = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            query,
            "".join(f"{k}:{signed[k]}\n" for k in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "s3"), "aws4_request"
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = {k: v for k, v in signed.items() if k != "host"}
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


class S3BlobStore:
    """Blobs as objects ``<prefix><key>`` in one bucket."""

    def __init__(self, config: S3Config, scratch: Path) -> None:
        self.config = config
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self._session: aiohttp.ClientSession | None = None

    def _url(self, key: str, query: str = "") -> str:
        if not key.isalnum():
            raise ValueError(f"invalid blob key {key!r}")
        base = self.config.endpoint.rstrip("/")
        name = quote(self.config.prefix + key, safe="/")
        url = f"{base}/{self.config.bucket}/{name}"
        if not self.config.path_style:
            scheme, host = base.split("://", 1)
            url = f"{scheme}://{self.config.bucket}.{host}/{name}"
        return url + (f"?{query}" if query else "")

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        data: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
            )
        signed = sign(
            method,
            url,
            headers or {},
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            region=self.config.region,
            now=datetime.now(UTC),
        )
        resp = await self._session.request(method, url, headers=signed, data=data)
        if resp.status not in ok:
            body = await resp.text()
            resp.release()
            code = re.search(r"<Code>([^<]+)</Code>", body)
            raise S3Error(f"S3 {method} {urlsplit(url).path}: {resp.status} {code and code[1]}")
        return resp

    async def check(self) -> None:
        """Fail early (at start-up) if the bucket cannot be reached with these credentials."""
        url = f"{self.config.endpoint.rstrip('/')}/{self.config.bucket}"
        if not self.config.path_style:
            scheme, host = self.config.endpoint.rstrip("/").split("://", 1)
            url = f"{scheme}://{self.config.bucket}.{host}/"
        resp = await self._request("HEAD", url)
        resp.release()

    async def put(self, key: str, source: Path) -> None:
        size = (await asyncio.to_thread(source.stat)).st_size
        if size <= self.config.part_bytes:
            await self._put_whole(key, source, size)
        else:
            await self._put_parts(key, source, size)
        await asyncio.to_thread(source.unlink)

    async def _put_whole(self, key: str, source: Path, size: int) -> None:
        with open(source, "rb") as fh:  # noqa: ASYNC230 - aiohttp reads it on a thread
            resp = await self._request(
                "PUT", self._url(key), headers={"content-length": str(size)}, data=fh
            )
        resp.release()

    async def _put_parts(self, key: str, source: Path, size: int) -> None:
        resp = await self._request("POST", self._url(key, "uploads"))
        upload_id = re.search(r"<UploadId>([^<]+)</UploadId>", await resp.text())
        if upload_id is None:
            raise S3Error("S3 CreateMultipartUpload gave no UploadId")
        uid = upload_id[1]
        etags: list[str] = []
        try:
            part = self.config.part_bytes
            for number, offset in enumerate(range(0, size, part), start=1):
                length = min(part, size - offset)
                body = _file_slice(source, offset, length)
                query = f"partNumber={number}&uploadId={quote(uid, safe='')}"
                resp = await self._request(
                    "PUT",
                    self._url(key, query),
                    headers={"content-length": str(length)},
                    data=body,
                )
                etags.append(resp.headers["ETag"])
                resp.release()
            xml = "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{tag}</ETag></Part>"
                for n, tag in enumerate(etags, start=1)
            )
            resp = await self._request(
                "POST",
                self._url(key, f"uploadId={quote(uid, safe='')}"),
                data=f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode(),
            )
            text = await resp.text()
            if "<Error>" in text:  # S3 may report a failed completion with a 200
                raise S3Error(f"S3 CompleteMultipartUpload failed: {text[:200]}")
        except BaseException:
            abort = await self._request(
                "DELETE", self._url(key, f"uploadId={quote(uid, safe='')}"), ok=(204, 200, 404)
            )
            abort.release()
            raise

    async def delete(self, key: str) -> None:
        resp = await self._request("DELETE", self._url(key), ok=(204, 200, 404))
        resp.release()

    def local_path(self, key: str) -> Path | None:
        return None

    async def read(
        self, key: str, offset: int = 0, count: int | None = None
    ) -> AsyncIterator[bytes]:
        """``count`` bytes (None: all) from ``offset``, streamed from a (ranged) GET."""
        headers = {}
        if offset or count is not None:
            end = "" if count is None else str(offset + count - 1)
            headers["range"] = f"bytes={offset}-{end}"
        resp = await self._request("GET", self._url(key), headers=headers, ok=(200, 206))
        try:
            async for block in resp.content.iter_chunked(READ_BLOCK):
                yield block
        finally:
            resp.release()

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """The blob downloaded to a scratch file, removed afterwards."""
        fd, name = tempfile.mkstemp(dir=self.scratch, prefix=f"{key}-")
        os.close(fd)
        path = Path(name)
        try:
            resp = await self._request("GET", self._url(key))
            try:
                with open(path, "wb") as fh:  # noqa: ASYNC230 - blocks go out on a thread
                    async for block in resp.content.iter_chunked(READ_BLOCK):
                        await asyncio.to_thread(fh.write, block)
            finally:
                resp.release()
            yield path
        finally:
            await asyncio.to_thread(path.unlink, True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _file_slice(path: Path, offset: int, length: int) -> AsyncIterator[bytes]:
    """``length`` bytes of ``path`` from ``offset``, read on a thread in 1 MiB blocks."""
    fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
    try:
        while length > 0:
            block = await asyncio.to_thread(os.pread, fd, min(READ_BLOCK, length), offset)
            if not block:
                raise S3Error(f"{path} ended early")
            yield block
            offset += len(block)
            length -= len(block)
    finally:
        os.close(fd)
