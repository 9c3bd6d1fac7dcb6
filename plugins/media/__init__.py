"""Media jobs: FFmpeg conversions, audio extraction, re-encodes, faststart, HLS VOD packages,
trims, snapshots, contact sheets and probes, on files of the files plugin, as a persistent
queue with progress, cancel and retry that any node of a cluster can work on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncstream.sdk import Event, FileStore, Namespace, Plugin, PluginContext, User

from .config import Config
from .encoders import detect
from .error_codes import CODES
from .jobs import MIGRATIONS, Jobs
from .routes import register
from .vod_package import HlsPackager, register_package_routes
from .worker import Worker


def own_topic(user: User, topic: str) -> bool:
    return topic == f"media:{user.id}"


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    files = ctx.services.get(FileStore)
    encoders = await detect(config.hardware, config.vaapi_device)
    jobs = Jobs(ctx.store, ctx.bus.node_id)
    packager = HlsPackager(ctx.data_dir / "packages")
    worker = Worker(
        config=config,
        jobs=jobs,
        files=files,
        bus=ctx.bus,
        gateway=ctx.gateway,
        encoders=encoders,
        scratch=ctx.data_dir / "work",
        packager=packager,
        single_node=not ctx.settings.clustered,
    )
    ctx.gateway.register(Namespace("media", can_subscribe=own_topic))
    register(
        ctx.api,
        config=config,
        jobs=jobs,
        files=files,
        worker=worker,
        bus=ctx.bus,
        encoders=encoders,
        packager=packager,
    )

    async def token_of(job_id: str) -> str | None:
        row = await ctx.store.fetchone("SELECT status, result FROM media_jobs WHERE id = ?", job_id)
        if row is None or row["status"] != "done":
            return None
        package = json.loads(row["result"]).get("package")
        return package.get("token") if package else None

    register_package_routes(ctx.app, packager, token_of)

    async def figures() -> dict[str, float]:
        counts = await jobs.counts()
        return {"queued": counts.get("queued", 0.0), "running": counts.get("running", 0.0)}

    async def facts(user_id: str) -> dict[str, Any]:
        return {"jobs": {k: int(v) for k, v in (await jobs.counts(user_id)).items()}}

    ctx.oversight.add_figures("jobs", figures)
    ctx.oversight.add_user_facts("jobs", facts)
    ctx.add_dashboard(Path(__file__).parent / "dashboard.js")

    def on_remote(event: Event) -> None:
        if event.origin == ctx.bus.node_id:
            return
        if event.type == "media.job.queued":
            worker.wake()  # another node queued work: look now, not at the next poll
        elif event.type == "media.job.canceled":
            worker.cancel_local(event.data["job"]["id"])

    ctx.on_cleanup(worker.close)
    ctx.listen("media.job.*", on_remote)
    await worker.start()
    ctx.announce("Media jobs", f"{encoders.family} video encoding, {config.concurrency} at once")


plugin = Plugin(setup=setup, config=Config, migrations=MIGRATIONS, error_codes=CODES)
