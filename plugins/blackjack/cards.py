"""Cards and hands: ``"AS"`` is the ace of spades, ``"TD"`` the ten of diamonds."""

from __future__ import annotations

RANKS = "A23456789TJQK"
SUITS = "SHDC"
VALUES = {"A": 1, "T": 10, "J": 10, "Q": 10, "K": 10} | {str(n): n for n in range(2, 10)}


def deck() -> list[str]:
    return [rank + suit for suit in SUITS for rank in RANKS]


def value(cards: list[str]) -> tuple[int, bool]:
    """(best total, soft): an ace counts 11 when that does not bust the hand."""
    total = sum(VALUES[card[0]] for card in cards)
    if any(card[0] == "A" for card in cards) and total + 10 <= 21:
        return total + 10, True
    return total, False


def is_blackjack(cards: list[str], from_split: bool = False) -> bool:
    """Two cards making 21 - not after a split, where 21 is just 21."""
    return len(cards) == 2 and value(cards)[0] == 21 and not from_split


def is_pair(cards: list[str]) -> bool:
    """Two cards of the same value (a king and a ten split like two tens)."""
    return len(cards) == 2 and VALUES[cards[0][0]] == VALUES[cards[1][0]]
