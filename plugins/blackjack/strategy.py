"""Basic strategy for 4-8 decks with doubling after splits, and a round simulator.

The simulator plays one player with basic strategy against the rules engine (dealer peeks
for blackjack, splits up to ``max_hands``, split aces get one card each); over many hands
its mean result is the house edge, which must match the published figure for the rules -
a correctness check of the whole engine (benchmarks/blackjack.py).
"""

from __future__ import annotations

from collections.abc import Callable

from .cards import VALUES, is_blackjack, is_pair, value
from .rules import Rules, dealer_play, settle

Action = str  # "hit" | "stand" | "double" | "split"


def _up(card: str) -> int:
    """The dealer's up card as 2..11 (ace = 11)."""
    return 11 if card[0] == "A" else VALUES[card[0]]


def decide(
    cards: list[str], dealer_up: str, rules: Rules, can_split: bool, from_split: bool
) -> Action:
    up = _up(dealer_up)
    can_double = rules.may_double(cards, from_split)
    if can_split and is_pair(cards):
        rank = 11 if cards[0][0] == "A" else VALUES[cards[0][0]]
        split_vs = {
            11: range(2, 12), 8: range(2, 12), 9: (2, 3, 4, 5, 6, 8, 9), 7: range(2, 8),
            6: range(2, 7), 4: (5, 6), 3: range(2, 8), 2: range(2, 8),
        }.get(rank, ())  # fmt: skip
        if up in split_vs:
            return "split"
    total, soft = value(cards)
    if soft and len(cards) == 2:
        other = total - 11
        double_vs = {2: (5, 6), 3: (5, 6), 4: (4, 5, 6), 5: (4, 5, 6), 6: (3, 4, 5, 6),
                     7: (2, 3, 4, 5, 6) if rules.hit_soft_17 else (3, 4, 5, 6),
                     8: (6,) if rules.hit_soft_17 else ()}.get(other, ())  # fmt: skip
        if up in double_vs and can_double:
            return "double"
        if other == 7:
            return "stand" if up in (2, 3, 4, 5, 6, 7, 8) else "hit"
        return "stand" if other >= 8 else "hit"
    if soft:
        if total >= 19 or (total == 18 and up in (2, 3, 4, 5, 6, 7, 8)):
            return "stand"
        return "hit"
    if total <= 8:
        return "hit"
    if total == 9:
        return "double" if can_double and up in (3, 4, 5, 6) else "hit"
    if total == 10:
        return "double" if can_double and up <= 9 else "hit"
    if total == 11:
        return "double" if can_double and (up <= 10 or rules.hit_soft_17) else "hit"
    if total == 12:
        return "stand" if up in (4, 5, 6) else "hit"
    if total <= 16:
        return "stand" if up <= 6 else "hit"
    return "stand"


def play_round(draw: Callable[[], str], rules: Rules, bet: int = 2) -> int:
    """One round of basic strategy; the player's net result in chips."""
    player = [draw(), draw()]
    dealer = [draw(), draw()]
    if is_blackjack(dealer):  # the dealer peeks: only the original bet is at stake
        return 0 if is_blackjack(player) else -bet
    if is_blackjack(player):
        return settle(player, bet, dealer, rules)
    hands: list[tuple[list[str], int, bool]] = []  # (cards, bet, from_split)
    pending = [(player, bet, False)]
    while pending:
        cards, stake, from_split = pending.pop()
        if len(cards) == 1:  # the second card of a split hand
            cards = [*cards, draw()]
            if cards[0][0] == "A" and from_split:
                hands.append((cards, stake, True))  # split aces get one card
                continue
        while True:
            room = len(hands) + len(pending) + 1 < rules.max_hands
            may_split = room and (cards[0][0] != "A" or not from_split or rules.resplit_aces)
            action = decide(cards, dealer[0], rules, may_split, from_split)
            if action == "split":
                pending += [([cards[0]], stake, True), ([cards[1]], stake, True)]
                break
            if action == "double":
                cards, stake = [*cards, draw()], stake * 2
                hands.append((cards, stake, from_split))
                break
            if action == "stand" or value(cards)[0] >= 21:
                hands.append((cards, stake, from_split))
                break
            cards = [*cards, draw()]
    if all(value(c)[0] > 21 for c, _, _ in hands):
        return sum(-stake for _, stake, _ in hands)
    final = dealer_play(dealer, draw, rules)
    return sum(settle(c, stake, final, rules, from_split=s) for c, stake, s in hands)
