"""The media jobs plugin's settings (``plugins.media`` in syncstream.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Hardware = Literal["auto", "off", "nvenc", "vaapi", "qsv"]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(2, ge=1, le=64, description="Jobs this node runs at once")
    per_user_running: int = Field(1, ge=1, le=64, description="Jobs of one user running at once")
    per_user_queued: int = Field(20, ge=1, le=10_000, description="Unfinished jobs per user")
    max_attempts: int = Field(2, ge=1, le=10, description="Runs of a job a crash may cost")
    timeout_factor: float = Field(
        4.0, gt=0, description="A job may run this many times its media's duration ..."
    )
    min_timeout_seconds: float = Field(120.0, gt=0, description="... but at least this long")
    max_timeout_seconds: float = Field(6 * 3600.0, gt=0, description="... and at most this long")
    max_input_bytes: int = Field(20 << 30, ge=1, description="Largest input file")
    max_pixels: int = Field(8192 * 8192, ge=1, description="Largest video picture (width x height)")
    worker_memory_mb: int = Field(
        1024, ge=0, description="Address space of the process probing inputs (MiB); 0 = no cap"
    )
    lease_seconds: float = Field(
        30.0, ge=2, description="A running job's lease, renewed by its node"
    )
    poll_seconds: float = Field(1.0, gt=0, description="How often an idle node looks for jobs")
    progress_seconds: float = Field(0.5, gt=0, description="Progress events at most this often")
    threads: int = Field(0, ge=0, le=64, description="FFmpeg threads per job; 0 = FFmpeg decides")
    hardware: Hardware = Field(
        "auto", description="Hardware encoders: auto (use one that works), off, or a family"
    )
    vaapi_device: str = Field("/dev/dri/renderD128", description="VAAPI render node")
    presets: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Named job parameters, used as {preset: NAME}"
    )
