"""An S3-compatible blob store (AWS S3, MinIO, Ceph RGW, Garage ...) for several nodes.

Requests are signed with AWS Signature Version 4 (``UNSIGNED-PAYLOAD`` bodies, so a large
file streams from disk without being hashed twice), with a session token for temporary
credentials. Files up to ``part_bytes`` go up in one PUT, larger ones as a multipart upload;
downloads stream ranged GETs. A request that fails on the way (connection error, 500, 502,
503 SlowDown, 504) is signed and sent again after a jittered exponential backoff, up to
``retries`` more times: every request here is idempotent, and a body is made anew per
attempt. Uploads are still assembled on the receiving node's disk and pushed to S3 once
complete, so a tus upload's requests must reach the node that holds it (route by the upload
id, or share the uploads directory between nodes).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from yarl import URL

from .config import S3Config

UNSIGNED = "UNSIGNED-PAYLOAD"
READ_BLOCK = 1 << 20
# S3's answers that say "try again": internal error, bad gateway, SlowDown, gateway timeout.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0


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
    session_token: str | None = None,
) -> dict[str, str]:
    """The headers of a request signed with AWS SigV4 for service ``s3``.

    ``url`` is the URL as it goes on the wire (already percent-encoded): its path and query are
    decoded once and encoded canonically, so an encoded value (an upload id with ``+/=``, a
    key with a space) is signed as S3 decodes it, not encoded twice.
    """
    parts = urlsplit(url)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed |= {"host": parts.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
    if session_token:
        signed["x-amz-security-token"] = session_token
    names = sorted(signed)
    pairs = sorted(
        (_canonical(unquote(k)), _canonical(unquote(v)))
        for k, v in (pair.partition("=")[::2] for pair in parts.query.split("&") if pair)
    )
    query = "&".join(f"{k}={v}" for k, v in pairs)
    canonical = "\n".join(
        [
            method,
            quote(unquote(parts.path) or "/", safe="/-_.~"),
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


def _canonical(text: str) -> str:
    """SigV4's URI encoding of one query name or value: everything but ``A-Za-z0-9-_.~``."""
    return quote(text, safe="-_.~")


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff before retry ``attempt`` (1, 2, ...)."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


# A request body: bytes, or a function making a fresh one for each attempt (a file stream
# cannot be sent twice).
Body = bytes | Callable[[], Any] | None


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
        body: Body = None,
        ok: tuple[int, ...] = (200,),
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
            )
        attempt = 0
        while True:
            try:
                resp = await self._attempt(self._session, method, url, headers or {}, body)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if attempt >= self.config.retries:
                    raise S3Error(f"S3 {method} {urlsplit(url).path}: {exc!r}") from exc
            else:
                if resp.status in ok:
                    return resp
                text = await resp.text()
                resp.release()
                if resp.status not in RETRY_STATUSES or attempt >= self.config.retries:
                    code = re.search(r"<Code>([^<]+)</Code>", text)
                    raise S3Error(
                        f"S3 {method} {urlsplit(url).path}: {resp.status} {code and code[1]}"
                    )
            attempt += 1
            await asyncio.sleep(_backoff(attempt))

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body,
    ) -> aiohttp.ClientResponse:
        """One signed try (signed anew: the date is part of the signature)."""
        signed = sign(
            method,
            url,
            headers,
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            session_token=self.config.session_token,
            region=self.config.region,
            now=datetime.now(UTC),
        )
        data = body() if callable(body) else body
        # encoded=True: the URL goes out exactly as it was signed.
        return await session.request(method, URL(url, encoded=True), headers=signed, data=data)

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
        resp = await self._request(
            "PUT",
            self._url(key),
            headers={"content-length": str(size)},
            body=partial(_file_slice, source, 0, size),
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
                query = f"partNumber={number}&uploadId={quote(uid, safe='')}"
                resp = await self._request(
                    "PUT",
                    self._url(key, query),
                    headers={"content-length": str(length)},
                    body=partial(_file_slice, source, offset, length),
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
                body=f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode(),
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
