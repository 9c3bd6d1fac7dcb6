"""Blackjack: the house edge of basic strategy over many hands, against the published figure.

A correctness check of the rules engine (shoe, dealer, doubling, splits, payouts): one player
plays ``--hands`` rounds of basic strategy against 6-deck shoes (75 % penetration). The
published edges (Wizard of Odds; deltas as in shared/NOTES-media.md): 6 decks, S17, double any
two, no DAS, no surrender, 3:2 = 0.56 %; DAS -0.14 %; H17 +0.20 %. Each result is printed with
its 95 % interval; the check passes when the published figure lies within it.

    python -m benchmarks.blackjack --hands 1000000
"""

from __future__ import annotations

import argparse
import time

from plugins.blackjack.rules import Rules
from plugins.blackjack.shoe import Shoe
from plugins.blackjack.strategy import play_round

from .harness import save, table

CASES = [
    ("6D S17 DAS 3:2", Rules(), 0.42),
    ("6D S17 no DAS 3:2", Rules(double_after_split=False), 0.56),
    ("6D H17 DAS 3:2", Rules(hit_soft_17=True), 0.62),
]


def simulate(rules: Rules, hands: int) -> tuple[float, float, float]:
    """(house edge %, half-width of its 95 % interval %, hands per second)."""
    shoe = Shoe(rules.decks, rules.penetration)
    total = squares = 0
    start = time.perf_counter()
    for _ in range(hands):
        if shoe.needs_shuffle:
            shoe = Shoe(rules.decks, rules.penetration)
        net = play_round(shoe.draw, rules, bet=2)
        total += net
        squares += net * net
    elapsed = time.perf_counter() - start
    mean = total / (2 * hands)
    sd = (squares / (4 * hands) - mean * mean) ** 0.5
    return -mean * 100, 1.96 * sd / hands**0.5 * 100, hands / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hands", type=int, default=1_000_000)
    args = parser.parse_args()
    rows: list[list[object]] = [
        ["rules", "edge %", "95 % interval", "published %", "check", "hands/s"]
    ]
    results = []
    for name, rules, published in CASES:
        edge, half, rate = simulate(rules, args.hands)
        ok = abs(edge - published) <= half
        rows.append(
            [name, round(edge, 3), f"+/- {half:.3f}", published, "ok" if ok else "OFF", round(rate)]
        )
        results.append(
            {"rules": name, "edge": edge, "interval": half, "published": published, "ok": ok}
        )
        print(table(rows[:1] + rows[-1:]), flush=True)
    print()
    print(table(rows))
    save("blackjack", {"hands": args.hands, "results": results})


if __name__ == "__main__":
    main()
