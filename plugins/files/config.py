"""The files plugin's settings (``plugins.files`` in syncstream.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

GiB = 1 << 30


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_file_bytes: int = Field(10 * GiB, ge=1, description="Largest single file")
    quota_bytes: int = Field(
        50 * GiB, ge=0, description="Storage per user (files, trash and open uploads); 0 = none"
    )
    multipart_max_bytes: int = Field(
        64 << 20, ge=1, description="Largest plain multipart upload; larger files use tus"
    )
    upload_expiry_seconds: float = Field(
        24 * 3600,
        gt=0,
        description="An unfinished tus upload is deleted this long after its last byte",
    )
    trash_days: float = Field(30, gt=0, description="Trashed items are purged after this many days")
    thumbnail_sizes: list[int] = Field(
        default_factory=lambda: [128, 512], description="Thumbnail sizes (longest edge, pixels)"
    )
    workers: int = Field(
        2, ge=1, le=64, description="Processes probing media and making thumbnails"
    )
    progress_seconds: float = Field(
        0.5, gt=0, description="Upload progress on the realtime topic at most this often"
    )
