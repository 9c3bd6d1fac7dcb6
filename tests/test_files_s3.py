"""The S3 blob store: SigV4 against AWS's published examples, and the files plugin on a
local S3-compatible server (moto's, from PyPI) end to end."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from plugins.files.s3 import sign
from syncstream.plugins import PluginError

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


def signed_headers(method: str, url: str) -> dict[str, Any]:
    return sign(
        method,
        url,
        {},
        access_key="test",
        secret_key="test",
        region="us-east-1",
        now=datetime.now(UTC),
    )


async def object_exists(endpoint: str, key: str) -> bool:
    url = f"{endpoint}/files/{key}"
    async with (
        aiohttp.ClientSession() as session,
        session.head(url, headers=signed_headers("HEAD", url)) as resp,
    ):
        return resp.status == 200


async def test_files_on_s3_upload_download_thumbnail_purge(tmp_path: Path, s3_server: str) -> None:
    settings = {
        "plugins.files.storage": "s3",
        "plugins.files.s3": {
            "endpoint": s3_server,
            "bucket": "files",
            "access_key": "test",
            "secret_key": "test",
            "prefix": "node-a/",
            "part_bytes": 5 << 20,
        },
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
