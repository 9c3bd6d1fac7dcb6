"""The chess plugin's settings (``plugins.chess`` in syncstream.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lease_seconds: float = Field(
        10.0, ge=1, le=300, description="A node's hold on a game; others take over after it"
    )
    public_reads: bool = Field(
        True,
        description="Anyone may watch: game state, PGN, the game stream, ratings and the"
        " leaderboard answer without a token (false: sign-in required)",
    )
    lichess_api: bool = Field(
        True,
        description="Serve lichess's Board API at its own paths (/api/board, /api/bot,"
        " /api/stream/event, /api/challenge, /api/account) for lichess bots and clients",
    )
