"""The chat plugin's settings (``plugins.chat`` in syncstream.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_message_chars: int = Field(4000, ge=1, le=100_000, description="Longest message text")
    max_attachments: int = Field(10, ge=0, le=100, description="Files one message may carry")
    max_group_members: int = Field(1000, ge=2, le=1_000_000)
    messages_per_second: float = Field(2.0, gt=0, description="Per user, over all rooms ...")
    message_burst: int = Field(10, ge=1, description="... with this burst (429 beyond)")
    typing_seconds: float = Field(5.0, gt=0, description="A typing indicator lasts this long")
    sync_limit: int = Field(500, ge=10, le=10_000, description="Changes per room in one sync")
