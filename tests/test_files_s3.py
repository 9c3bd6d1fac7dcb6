"""The S3 blob store: SigV4 against AWS's published examples, and the files plugin on a
local S3-compatible server (moto's, from PyPI) end to end."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from plugins.files.config import S3Config
from plugins.files.s3 import UNSIGNED, S3BlobStore, S3Error, sign
from syncstream.plugins import PluginError

from .conftest import S3Server
from .files_support import download, processed, tus_upload
from .support import free_port, running

EXAMPLE = {
    "access_key": "AKIAIOSFODNN7EXAMPLE",
    "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "region": "us-east-1",
    "now": datetime(2013, 5, 24, tzinfo=UTC),
}
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("method", "url", "headers", "payload", "signature"),
    [
        (  # GET Object with a range
            "GET",
            "https://examplebucket.s3.amazonaws.com/test.txt",
            {"Range": "bytes=0-9"},
            EMPTY,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
        (  # PUT Object: a '$' in the key, an extra amz header
            "PUT",
            "https://examplebucket.s3.amazonaws.com/test$file.text",
            {
                "Date": "Fri, 24 May 2013 00:00:00 GMT",
                "x-amz-storage-class": "REDUCED_REDUNDANCY",
            },
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        ),
        (  # GET Bucket lifecycle: a query parameter without a value
            "GET",
            "https://examplebucket.s3.amazonaws.com/?lifecycle",
            {},
            EMPTY,
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        (  # List objects: query parameters sorted and encoded
            "GET",
            "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
            {},
            EMPTY,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
)
def test_sigv4_matches_the_aws_examples(
    method: str, url: str, headers: dict[str, str], payload: str, signature: str
) -> None:
    signed = sign(method, url, headers, payload_hash=payload, **EXAMPLE)  # type: ignore[arg-type]
    assert signed["authorization"].endswith(f"Signature={signature}")
    assert signed["x-amz-date"] == "20130524T000000Z"


@pytest.mark.parametrize(
    "url",
    [
        # Real S3 upload ids carry '+', '/' and '='; on the wire they are percent-encoded once.
        "https://b.s3.amazonaws.com/k?partNumber=2&uploadId=Ab%2Bcd%2Fef%3D%3D",
        "https://b.s3.amazonaws.com/my%20dir/a%2Bb~c?uploads",
        "https://b.s3.amazonaws.com/?list-type=2&prefix=a%20b%2F&max-keys=5",
    ],
)
def test_sigv4_matches_botocore_on_encoded_urls(url: str) -> None:
    """botocore (AWS's own SDK core, beside moto) signs the same request the same way."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    ours = sign("PUT", url, {}, access_key="AK", secret_key="SK", region="eu-west-1", now=now)
    request = AWSRequest(
        method="PUT",
        url=url,
        headers={"x-amz-date": ours["x-amz-date"], "x-amz-content-sha256": UNSIGNED},
    )
    request.context["timestamp"] = ours["x-amz-date"]
    auth = S3SigV4Auth(Credentials("AK", "SK"), "s3", "eu-west-1")
    canonical = auth.canonical_request(request)
    theirs = auth.signature(auth.string_to_sign(request, canonical), request)
    assert ours["authorization"].endswith(f"Signature={theirs}"), canonical


async def object_exists(s3: S3Server, key: str) -> bool:
    url = f"{s3.endpoint}/files/{key}"
    headers = sign(
        "HEAD", url, {}, access_key=s3.access_key, secret_key=s3.secret_key,
        region="us-east-1", now=datetime.now(UTC),
    )  # fmt: skip
    async with aiohttp.ClientSession() as session, session.head(url, headers=headers) as resp:
        return resp.status == 200


def blob_store(tmp_path: Path, s3: S3Server, **settings: Any) -> S3BlobStore:
    config = S3Config(**s3.settings(part_bytes=5 << 20) | settings)
    return S3BlobStore(config, tmp_path / "scratch")


async def round_trip(store: S3BlobStore, tmp_path: Path, size: int) -> None:
    """put (one PUT or multipart), ranged read, delete: the data comes back whole."""
    data = os.urandom(size)
    source = tmp_path / "blob"
    source.write_bytes(data)
    await store.put("blob1", source)
    got = b"".join([block async for block in store.read("blob1")])
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    got = b"".join([block async for block in store.read("blob1", size - 10, 7)])
    assert got == data[size - 10 : size - 3]
    await store.delete("blob1")


async def test_the_client_is_checked_by_a_server_that_verifies_signatures(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """moto here checks every signature: multipart ids, ranges and deletes pass, and a wrong
    secret is refused (so these tests fail when signing breaks)."""
    store = blob_store(tmp_path, s3_server, prefix="node.a_1/")
    try:
        await store.check()
        await round_trip(store, tmp_path, (5 << 20) * 2 + 99)  # three parts
    finally:
        await store.close()
    wrong = blob_store(tmp_path, s3_server, secret_key="not-the-secret", retries=0)
    try:
        with pytest.raises(S3Error, match="403"):
            await wrong.check()
        with pytest.raises(S3Error, match="403 SignatureDoesNotMatch"):
            await wrong.delete("blob1")
    finally:
        await wrong.close()


async def test_temporary_credentials_with_a_session_token(
    tmp_path: Path, s3_server: S3Server
) -> None:
    import boto3

    def assume() -> dict[str, str]:
        sts = boto3.client(
            "sts", endpoint_url=s3_server.endpoint, region_name="us-east-1",
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
        )  # fmt: skip
        answer = sts.assume_role(RoleArn=s3_server.role_arn, RoleSessionName="node-a")
        return dict(answer["Credentials"])

    creds = await asyncio.to_thread(assume)
    temporary = {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"]}
    store = blob_store(tmp_path, s3_server, **temporary, session_token=creds["SessionToken"])
    try:
        await round_trip(store, tmp_path, 1000)
    finally:
        await store.close()
    no_token = blob_store(tmp_path, s3_server, **temporary, retries=0)
    try:
        with pytest.raises(S3Error):
            await no_token.check()
    finally:
        await no_token.close()


async def flaky_proxy(upstream: str) -> tuple[web.AppRunner, str, list[str]]:
    """A proxy in front of S3 that answers every request's first attempt with 503 SlowDown
    (or drops the connection) and passes the retry through untouched."""
    seen: set[tuple[str, str]] = set()
    faults: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = (request.method, request.path_qs)
        if key not in seen:
            seen.add(key)
            faults.append(request.method)
            if len(faults) % 3 == 0 and request.transport is not None:
                request.transport.close()  # a dropped connection, not an answer
                return web.Response()
            return web.Response(status=503, text="<Error><Code>SlowDown</Code></Error>")
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                URL(upstream + request.raw_path, encoded=True),
                headers=request.headers,
                data=body,
                skip_auto_headers=["Content-Type"],
            ) as resp,
        ):
            payload = await resp.read()
            headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
            return web.Response(status=resp.status, body=payload, headers=headers)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", faults


async def test_requests_that_fail_on_the_way_are_retried(
    tmp_path: Path, s3_server: S3Server
) -> None:
    runner, endpoint, faults = await flaky_proxy(s3_server.endpoint)
    store = blob_store(tmp_path, s3_server, endpoint=endpoint)
    try:
        await round_trip(store, tmp_path, (5 << 20) + 7)  # multipart: create, 2 parts, complete
        assert len(faults) >= 6, faults
    finally:
        await store.close()
    exhausted = blob_store(tmp_path, s3_server, endpoint=endpoint, retries=0)
    try:
        with pytest.raises(S3Error, match="503 SlowDown"):
            await exhausted.delete("neverseen")
    finally:
        await exhausted.close()
        await runner.cleanup()


async def test_files_on_s3_upload_download_thumbnail_purge(
    tmp_path: Path, s3_server: S3Server
) -> None:
    settings = {
        "plugins.files.storage": "s3",
        "plugins.files.s3": s3_server.settings(prefix="node-a/", part_bytes=5 << 20),
    }
    async with running(tmp_path, **settings) as c:
        token = await c.register("alice")
        big = os.urandom((5 << 20) * 2 + 12345)  # three multipart parts
        big_id = await tus_upload(c, token, big, "big.bin")
        assert await object_exists(s3_server, f"node-a/{big_id}")
        blobs = tmp_path / "data" / "plugins" / "files" / "blobs"
        assert not blobs.exists() or not any(blobs.rglob("*")), "nothing kept on local disk"
        status, got, _ = await download(c, token, f"/api/files/{big_id}/content")
        assert status == 200 and hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
        status, got, _ = await download(
            c, token, f"/api/files/{big_id}/content", Range="bytes=5242870-5242889,-7"
        )
        assert status == 206 and big[5242870:5242890] in got and big[-7:] in got

        from PIL import Image

        picture = tmp_path / "red.png"
        Image.new("RGB", (300, 200), (255, 0, 0)).save(picture)
        pic_id = await tus_upload(c, token, picture.read_bytes(), "red.png")
        info = await processed(c, token, pic_id)
        assert info["thumbnails"] == "ready" and info["meta"]["width"] == 300
        status, body, _ = await download(c, token, f"/api/files/{pic_id}/thumbnail")
        assert status == 200 and body[:2] == b"\xff\xd8"
        assert await object_exists(s3_server, f"node-a/t128x{pic_id}")

        await c.call("DELETE", f"/api/files/{big_id}?permanent=true", token)
        await c.call("DELETE", f"/api/files/{pic_id}?permanent=true", token)
        assert not await object_exists(s3_server, f"node-a/{big_id}")
        assert not await object_exists(s3_server, f"node-a/t128x{pic_id}")


async def test_an_unreachable_bucket_fails_the_plugin_with_the_reason(tmp_path: Path) -> None:
    """The files plugin fails (and the media plugin, which depends on it); the node serves the
    rest, unless the operator marked the plugin required: then start-up stops."""
    settings = {
        "plugins.files.storage": "s3",
        "plugins.files.s3": {
            "endpoint": f"http://127.0.0.1:{free_port()}",
            "bucket": "files",
            "access_key": "k",
            "secret_key": "s",
        },
    }
    async with running(tmp_path, **settings) as c:
        status, body, _ = await c.call("GET", "/readyz")
        assert status == 200
        assert body["plugins"]["failed"] == {"files": "set up", "media": "resolve its dependencies"}
        files = c.server.core.plugins.get("files")  # type: ignore[union-attr]
        assert files is not None
        assert re.search(r"S3 bucket 'files' at http://127\.0\.0\.1", files.reason)
    with pytest.raises(PluginError, match=r"plugin 'files' failed to set up: .*S3 bucket 'files'"):
        async with running(tmp_path, **settings, **{"plugins.files.required": True}):
            pass
