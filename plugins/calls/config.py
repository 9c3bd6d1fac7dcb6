"""The calls plugin's settings (``plugins.calls`` in syncstream.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class IceServer(BaseModel):
    """A STUN or TURN server handed to clients as is (RTCIceServer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    urls: list[str] = Field(min_length=1)
    username: str | None = None
    credential: str | None = None


class Turn(BaseModel):
    """A TURN server with coturn's REST-API secret (``use-auth-secret``): each call gets
    credentials that expire."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    urls: list[str] = Field(min_length=1)
    secret: str = Field(min_length=16)
    ttl_seconds: int = Field(86_400, ge=60, le=7 * 86_400)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ring_seconds: float = Field(30, gt=0, le=300, description="Unanswered invitations: missed")
    max_participants: int = Field(8, ge=2, le=64, description="Per call, the caller included")
    leave_after_seconds: float = Field(
        15, gt=0, le=600, description="A participant with no socket on call:<id> this long leaves"
    )
    max_sdp_bytes: int = Field(65_536, ge=1024, le=1_048_576)
    max_video_kbps: int = Field(
        1500, ge=100, le=20_000, description="Per video track sent to the SFU (b=AS and REMB)"
    )
    speaker_threshold_dbov: int = Field(
        -50, ge=-127, le=0, description="Quieter than this is nobody speaking"
    )
    ice_servers: list[IceServer] = Field(default_factory=list, description="STUN/TURN as is")
    turn: Turn | None = Field(None, description="TURN with time-limited credentials")
