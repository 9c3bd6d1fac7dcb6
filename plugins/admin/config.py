"""The admin plugin's settings (``plugins.admin`` in syncstream.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

KINDS = ("stream.started", "stream.ended", "job.failed", "disk.low", "errors.spike",
         "logins.failed")  # fmt: skip


class Alerts(BaseModel):
    """When the dashboard raises an alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    disk_free_percent: float = Field(10, ge=0, le=100, description="Below: disk.low")
    errors_per_minute: int = Field(30, ge=1, description="HTTP 5xx a minute on a node: spike")
    failed_logins: int = Field(20, ge=1, description="Failed logins within the window")
    failed_logins_window_seconds: int = Field(300, ge=10, le=86_400)
    cooldown_seconds: int = Field(600, ge=0, description="Between two alerts of one kind")
    streams: bool = Field(True, description="Notify when live streams start and end")


class Webhook(BaseModel):
    """Notifications POSTed as JSON, signed ``X-SyncStream-Signature: sha256=<hmac>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(pattern=r"^https?://")
    secret: str = Field("", description="HMAC-SHA256 key for the signature ('' = unsigned)")
    kinds: list[str] = Field(default_factory=list, description="Only these kinds ([] = all)")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_seconds: float = Field(2.0, ge=0.2, le=60, description="Live figures every …")
    alerts: Alerts = Field(default_factory=Alerts)
    webhooks: list[Webhook] = Field(default_factory=list)
