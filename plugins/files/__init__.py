"""Files: resumable uploads (tus), ranged downloads, folders, trash, sharing, public links,
search and thumbnails, on local disk. Other plugins keep files through the
:class:`syncstream.filestore.FileStore` this plugin provides; live recordings become files of
their broadcaster in ``Recordings/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from syncstream.sdk import Event, FileStore, Namespace, Plugin, PluginContext, User

from .config import Config
from .error_codes import CODES
from .routes import register
from .s3 import S3BlobStore, S3Error
from .schema import MIGRATIONS
from .service import FilesService
from .storage import BlobStore, LocalBlobStore, UploadArea
from .tus import REQUEST_HEADERS, RESPONSE_HEADERS, Tus

SWEEP_SECONDS = 60.0


def own_uploads(user: User, topic: str) -> bool:
    return topic == f"uploads:{user.id}"


async def open_blob_store(config: Config, ctx: PluginContext) -> BlobStore:
    """The configured store; an unreachable S3 bucket fails this plugin with the reason."""
    if config.storage == "local" or config.s3 is None:
        return LocalBlobStore(ctx.data_dir / "blobs")
    store = S3BlobStore(config.s3, ctx.data_dir / "scratch")
    try:
        await store.check()
    except (S3Error, OSError) as exc:
        await store.close()
        raise RuntimeError(
            f"S3 bucket {config.s3.bucket!r} at {config.s3.endpoint}: {exc}"
        ) from exc
    ctx.announce("File storage", f"S3 bucket {config.s3.bucket} at {config.s3.endpoint}")
    return store


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    service = FilesService(
        config=config,
        store=ctx.store,
        bus=ctx.bus,
        gateway=ctx.gateway,
        audit=ctx.audit,
        users=ctx.auth,
        blobs=await open_blob_store(config, ctx),
        area=UploadArea(ctx.data_dir / "uploads"),
        scratch=ctx.data_dir / "scratch",
    )
    ctx.provide(FileStore, service)
    ctx.gateway.register(Namespace("uploads", can_subscribe=own_uploads))
    Tus(service.uploads, service.access, config, ctx.auth.user_from_request).register(
        ctx.app.router
    )
    register(ctx.api, service, ctx.settings.server.public_url.rstrip("/"))
    ctx.allow_cors_headers(allow=(*REQUEST_HEADERS, "Link-Password"), expose=RESPONSE_HEADERS)
    ctx.announce("Files", "{url}/api/files  (tus uploads: {url}/api/files/tus)")
    ctx.oversight.add_user_facts("files", service.user_facts)
    ctx.add_dashboard(Path(__file__).parent / "dashboard.js")
    ctx.oversight.add_figures("files", service.figures)

    async def on_recorded(event: Event) -> None:
        if event.origin == ctx.bus.node_id:  # the recording is on this node's disk
            await service.adopt_recording(event.data)

    ctx.on_cleanup(service.close)
    ctx.listen("stream.recorded", on_recorded)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await service.uploads.sweep()
                await service.purge_expired_trash()
            except Exception:
                ctx.log.exception("files.sweep_failed")

    await service.processor.resume()
    ctx.background(sweep())


plugin = Plugin(setup=setup, config=Config, migrations=MIGRATIONS, error_codes=CODES)
