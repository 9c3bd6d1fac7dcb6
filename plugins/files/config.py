"""The files plugin's settings (``plugins.files`` in syncstream.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GiB = 1 << 30
MiB = 1 << 20


class S3Config(BaseModel):
    """An S3-compatible bucket (AWS, MinIO, Ceph, Garage ...) holding every node's files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(
        pattern=r"^https?://", description="e.g. https://s3.eu-west-1.amazonaws.com"
    )
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = "us-east-1"
    access_key: str = Field(min_length=1)
    secret_key: str = Field(min_length=1)
    session_token: str | None = Field(
        None, description="For temporary credentials (STS): sent as x-amz-security-token"
    )
    prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9/_.-]*$", description="Key prefix inside the bucket"
    )
    path_style: bool = Field(
        True, description="endpoint/bucket/key (MinIO); false: bucket.endpoint"
    )
    part_bytes: int = Field(64 * MiB, ge=5 * MiB, le=5 * GiB, description="Multipart part size")
    retries: int = Field(
        4, ge=0, le=10, description="Retries of a request that failed on the way (5xx, network)"
    )


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
    worker_memory_mb: int = Field(
        2048, ge=0, description="Address space of each such process (MiB); 0 = no cap"
    )
    max_pixels: int = Field(
        100_000_000, ge=1, description="Larger images and videos get no thumbnails (width x height)"
    )
    progress_seconds: float = Field(
        0.5, gt=0, description="Upload progress on the realtime topic at most this often"
    )
    storage: Literal["local", "s3"] = Field(
        "local", description="Where finished files live: this node's disk, or an S3 bucket"
    )
    s3: S3Config | None = None

    @model_validator(mode="after")
    def _s3_needs_settings(self) -> Config:
        if self.storage == "s3" and self.s3 is None:
            raise ValueError("storage: s3 needs an s3 section (endpoint, bucket, keys)")
        return self
