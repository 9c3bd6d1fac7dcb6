"""Table rules and the arithmetic of a hand: the dealer's play and every payout.

Amounts are integers (chips); a 3:2 blackjack on an odd bet rounds down, as casinos pay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from .cards import is_blackjack, value


@dataclass(frozen=True)
class Rules:
    decks: int = 6
    hit_soft_17: bool = False
    blackjack_pays: Literal["3:2", "6:5"] = "3:2"
    double_on: Literal["any", "9-11"] = "any"
    double_after_split: bool = True
    max_hands: int = 4  # a player's hands after splits
    resplit_aces: bool = False
    late_surrender: bool = False
    insurance: bool = True
    min_bet: int = 10
    max_bet: int = 1000
    penetration: float = 0.75

    @property
    def blackjack_ratio(self) -> Fraction:
        return Fraction(3, 2) if self.blackjack_pays == "3:2" else Fraction(6, 5)

    def may_double(self, cards: list[str], from_split: bool) -> bool:
        if len(cards) != 2 or (from_split and not self.double_after_split):
            return False
        return self.double_on == "any" or value(cards)[0] in (9, 10, 11)


def dealer_play(cards: list[str], draw: Callable[[], str], rules: Rules) -> list[str]:
    """The dealer draws to 17; on a soft 17 too when the table hits soft 17."""
    cards = list(cards)
    while True:
        total, soft = value(cards)
        if total > 21 or total > 17 or (total == 17 and not (soft and rules.hit_soft_17)):
            return cards
        cards.append(draw())


def settle(
    player: list[str],
    bet: int,
    dealer: list[str],
    rules: Rules,
    *,
    from_split: bool = False,
    surrendered: bool = False,
) -> int:
    """The net result of one hand for the player (``bet`` includes any double)."""
    if surrendered:
        return -(bet // 2)
    player_total = value(player)[0]
    dealer_total = value(dealer)[0]
    player_bj = is_blackjack(player, from_split)
    dealer_bj = is_blackjack(dealer)
    if player_total > 21:
        return -bet
    if player_bj or dealer_bj:
        if player_bj and dealer_bj:
            return 0
        return int(bet * rules.blackjack_ratio) if player_bj else -bet
    if dealer_total > 21 or player_total > dealer_total:
        return bet
    return 0 if player_total == dealer_total else -bet


def settle_insurance(stake: int, dealer: list[str]) -> int:
    """Insurance (at most half the bet) pays 2:1 if the dealer has blackjack."""
    return 2 * stake if is_blackjack(dealer) else -stake
