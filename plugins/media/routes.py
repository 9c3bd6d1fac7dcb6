"""The media jobs API under ``/api/media``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import (
    Call,
    EventBus,
    FileStore,
    Problem,
    ScopedApi,
    idempotency_key,
)

from .config import Config
from .encoders import Encoders
from .jobs import Jobs, public
from .operations import BUILTIN_PRESETS, resolve
from .vod_package import HlsPackager
from .worker import Worker

JOB = "/jobs/{job_id:[0-9a-f]{32}}"


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_id: str = Field(min_length=1, max_length=64)
    operation: dict[str, Any] | None = Field(None, description="The operation's parameters")
    preset: str | None = Field(None, max_length=64, description="A named preset (plus overrides)")
    priority: int = Field(0, ge=-10, le=10, description="Higher runs first")


class JobsQuery(BaseModel):
    status: Literal["queued", "running", "done", "failed", "canceled"] | None = None
    limit: int = Field(50, ge=1, le=200)
    before: str | None = Field(None, max_length=64, description="Job id to page back from")


def register(
    api: ScopedApi,
    *,
    config: Config,
    jobs: Jobs,
    files: FileStore,
    worker: Worker,
    bus: EventBus,
    encoders: Encoders,
    packager: HlsPackager,
) -> None:
    @api.route("POST", "/jobs", body=JobIn, status=201)
    async def create(call: Call[JobIn]) -> dict[str, Any]:
        """Queue a job on a file you may read; its outputs become files you own. With an
        ``Idempotency-Key`` (yours alone), sending the same request again returns the job the
        first one queued."""
        key = idempotency_key(call.request.headers)
        op = resolve(call.body.operation, call.body.preset, config.presets)
        source = await files.readable(call.user.id, call.body.file_id)
        if source["size"] > config.max_input_bytes:
            raise Problem(
                413, "input_too_large", f"inputs may be at most {config.max_input_bytes} bytes"
            )
        row, created = await jobs.create(
            user_id=call.user.id,
            input_id=source["id"],
            input_name=source["name"],
            params=op.model_dump(mode="json"),
            priority=call.body.priority,
            per_user_queued=config.per_user_queued,
            idempotency_key=key,
        )
        job = public(row)
        if created:
            await bus.fire("media.job.queued", {"user_id": call.user.id, "job": job})
            worker.wake()
        return job

    @api.route("GET", "/jobs", query=JobsQuery)
    async def list_jobs(call: Call[None]) -> dict[str, Any]:
        """Your jobs, newest first."""
        q: JobsQuery = call.query
        rows = await jobs.page(call.user.id, q.status, q.limit, q.before)
        return {
            "jobs": [public(r) for r in rows],
            "next": rows[-1]["id"] if len(rows) == q.limit else None,
        }

    @api.route("GET", JOB)
    async def get_job(call: Call[None]) -> dict[str, Any]:
        """A job: status, progress (percent, speed x realtime, ETA), error or result."""
        return public(await jobs.owned(call.param("job_id"), call.user.id, call.user.is_admin))

    @api.route("POST", f"{JOB}/cancel")
    async def cancel(call: Call[None]) -> dict[str, Any]:
        """Cancel a queued or running job (its FFmpeg is killed; nothing is stored)."""
        row = await jobs.owned(call.param("job_id"), call.user.id, call.user.is_admin)
        row = await jobs.cancel(row)
        worker.cancel_local(row["id"])
        job = public(row)
        await bus.fire("media.job.canceled", {"user_id": row["user_id"], "job": job})
        return job

    @api.route("POST", f"{JOB}/retry")
    async def retry(call: Call[None]) -> dict[str, Any]:
        """Queue a failed or cancelled job again."""
        row = await jobs.owned(call.param("job_id"), call.user.id, call.user.is_admin)
        row = await jobs.retry(row)
        await packager.delete(row["id"])
        worker.wake()
        job = public(row)
        await bus.fire("media.job.queued", {"user_id": row["user_id"], "job": job})
        return job

    @api.route("DELETE", JOB)
    async def delete_job(call: Call[None]) -> None:
        """Forget a finished job (its HLS package goes with it; output files stay yours)."""
        row = await jobs.owned(call.param("job_id"), call.user.id, call.user.is_admin)
        if row["status"] in ("queued", "running"):
            raise Problem(409, "job_unfinished", "cancel the job first")
        await jobs.delete(row["id"])
        await packager.delete(row["id"])

    @api.route("GET", "/presets")
    async def presets(call: Call[None]) -> dict[str, Any]:
        """Named presets (built in, and from the config)."""
        return {"presets": {**BUILTIN_PRESETS, **config.presets}}

    @api.route("GET", "/encoders")
    async def encoder_info(call: Call[None]) -> dict[str, Any]:
        """The video encoders this node uses, and what hardware detection found."""
        return {
            "video": encoders.video,
            "hardware": encoders.family,
            "tried": encoders.found,
            "node": jobs.node_id,
        }
