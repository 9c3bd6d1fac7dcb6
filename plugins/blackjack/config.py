"""The blackjack plugin's settings (``plugins.blackjack`` in syncstream.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RulesIn(BaseModel):
    """A table's rules (defaults: 6 decks, dealer stands on soft 17, 3:2, double any two
    and after splits, four hands, no resplit of aces, no surrender, insurance offered)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decks: int = Field(6, ge=1, le=8)
    hit_soft_17: bool = False
    blackjack_pays: Literal["3:2", "6:5"] = "3:2"
    double_on: Literal["any", "9-11"] = "any"
    double_after_split: bool = True
    max_hands: int = Field(4, ge=1, le=4, description="A player's hands after splits")
    resplit_aces: bool = False
    late_surrender: bool = False
    insurance: bool = True
    min_bet: int = Field(10, ge=1)
    max_bet: int = Field(1000, ge=1)
    penetration: float = Field(0.75, ge=0.25, le=0.95, description="Where the cut card sits")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    starting_chips: int = Field(1000, ge=0, description="Chips in a new wallet")
    daily_topup: int = Field(1000, ge=0, description="Chips a player may claim once a day")
    betting_seconds: float = Field(10, gt=0, le=120, description="The window the first bet opens")
    insurance_seconds: float = Field(8, gt=0, le=120)
    turn_seconds: float = Field(15, gt=0, le=300, description="A hand stands when it runs out")
    seat_grace_seconds: float = Field(
        60, gt=0, le=3600, description="A seat outlives its player's disconnection this long"
    )
    big_win: int = Field(5000, ge=1, description="A round's net win that fires blackjack.big_win")
    public_reads: bool = Field(
        True,
        description="Anyone may read the tables, their rounds and shoes without signing in",
    )
    rules: RulesIn = RulesIn()
