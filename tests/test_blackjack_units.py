"""The blackjack rules engine's pure parts: hands, the provably fair shoe, payouts."""

from __future__ import annotations

import collections
import hashlib
import secrets

import pytest

from plugins.blackjack.cards import deck, is_blackjack, is_pair, value
from plugins.blackjack.rules import Rules, dealer_play, settle, settle_insurance
from plugins.blackjack.shoe import Shoe, _Stream, commitment, order_from_seed, shuffle_key, verify
from plugins.blackjack.strategy import decide, play_round
from plugins.blackjack.table import Table


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        (["AS", "KD"], (21, True)),
        (["AS", "AH"], (12, True)),
        (["AS", "AH", "9C"], (21, True)),
        (["AS", "6H", "TC"], (17, False)),
        (["TS", "9H", "5C"], (24, False)),
        (["AS", "AH", "AD", "AC", "7S"], (21, True)),
        (["5S", "6H"], (11, False)),
    ],
)
def test_hand_values_count_aces_soft_or_hard(cards: list[str], expected: tuple[int, bool]) -> None:
    assert value(cards) == expected


def test_blackjack_and_pairs() -> None:
    assert is_blackjack(["AS", "JD"]) and not is_blackjack(["AS", "JD"], from_split=True)
    assert not is_blackjack(["7S", "7D", "7C"])
    assert is_pair(["KS", "TD"]) and is_pair(["8S", "8H"]) and not is_pair(["AS", "KD"])


def test_a_shoe_is_every_card_once_per_deck_and_follows_its_seed() -> None:
    seed = secrets.token_bytes(32)
    order = order_from_seed(seed, 6)
    assert collections.Counter(order) == collections.Counter(deck() * 6)
    assert order_from_seed(seed, 6) == order, "the seed decides the order"
    assert order_from_seed(secrets.token_bytes(32), 6) != order
    shoe = Shoe(6, 0.75, seed)
    assert shoe.cards == [] and shoe.remaining == 312  # no order before the client seed
    shoe.shuffle("0:lucky")
    assert [shoe.draw() for _ in range(5)] == order_from_seed(shuffle_key(seed, "0:lucky", 0), 6)[
        :5
    ]
    assert shoe.commitment == commitment(seed) != seed.hex()
    with pytest.raises(ValueError):
        shoe.shuffle("again")  # once and for all


def test_the_client_seed_decides_the_order_with_the_committed_seed() -> None:
    seed = secrets.token_bytes(32)
    orders = {tuple(verify(seed.hex(), commitment(seed), 1, 0, client)) for client in
              ("", "0:a", "0:b", "0:a,1:b")}  # fmt: skip
    assert len(orders) == 4, "each client seed gives its own order"
    # At a table the seeds of the first round's bets go in, in seat order.
    table = Table("t", "x", Rules(decks=1), Shoe(1, 0.75, seed))
    for user_id, seat in (("u0", 0), ("u1", 1), ("u2", 2)):
        table.sit(user_id, user_id, seat)
    table.place_bet("u2", 10, "zed")
    table.place_bet("u0", 10, "alpha")
    table.place_bet("u1", 10)
    table.deal()
    assert table.shoe.client_seed == "0:alpha,2:zed"
    assert table.view()["shoe"]["client_seed"] == "0:alpha,2:zed"
    first = verify(seed.hex(), commitment(seed), 1, 0, "0:alpha,2:zed")
    assert table.seats[0].hands[0].cards[0] == first[0] and table.dealer[0] == first[3]
    assert table.seats[2].hands[0].cards == [first[2], first[6]]


def test_a_revealed_seed_verifies_against_its_commitment() -> None:
    shoe = Shoe(2, 0.5)
    shoe.shuffle("3:x")
    revealed = shoe.reveal()
    assert revealed["client_seed"] == "3:x"
    assert verify(str(revealed["seed"]), str(revealed["commitment"]), 2, 0, "3:x") == shoe.cards
    with pytest.raises(ValueError):
        verify(secrets.token_hex(32), str(revealed["commitment"]), 2)


def test_a_round_that_outruns_the_shoe_goes_on_verifiably() -> None:
    shoe = Shoe(1, 0.95)
    dealt = [shoe.draw() for _ in range(52 + 30)]  # past the last card
    assert collections.Counter(dealt[:52]) == collections.Counter(deck())
    revealed = shoe.reveal()
    assert revealed["dealt"] == 82
    assert verify(str(revealed["seed"]), str(revealed["commitment"]), 1, 82) == dealt


def test_the_cut_card_and_bad_shoes() -> None:
    shoe = Shoe(1, 0.5)
    for _ in range(25):
        shoe.draw()
    assert not shoe.needs_shuffle
    shoe.draw()
    assert shoe.needs_shuffle
    for bad in ((0, 0.5), (9, 0.5), (6, 0.1), (6, 0.99)):
        with pytest.raises(ValueError):
            Shoe(*bad)


def test_shuffle_positions_are_uniform() -> None:
    """Each card of a 5-card deck lands in each place ~equally often (chi-square, df 4)."""
    counts = collections.Counter()
    trials = 20_000
    for _ in range(trials):
        stream = _Stream(secrets.token_bytes(16))
        cards = list(range(5))
        for i in range(4, 0, -1):
            j = stream.below(i + 1)
            cards[i], cards[j] = cards[j], cards[i]
        counts[cards.index(0)] += 1
    expected = trials / 5
    chi2 = sum((counts[k] - expected) ** 2 / expected for k in range(5))
    assert chi2 < 18.5, f"chi-square {chi2:.1f} (p < 0.001 would be over 18.5)"


S17 = Rules()
H17 = Rules(hit_soft_17=True)


def dealer_from(cards: list[str], draws: list[str], rules: Rules) -> list[str]:
    pending = iter(draws)
    return dealer_play(cards, lambda: next(pending), rules)


def test_the_dealer_stands_or_hits_soft_17_by_the_rules() -> None:
    assert dealer_from(["AS", "6H"], ["2C"], S17) == ["AS", "6H"]
    assert dealer_from(["AS", "6H"], ["2C"], H17) == ["AS", "6H", "2C"]
    assert dealer_from(["TS", "6H"], ["5C"], S17) == ["TS", "6H", "5C"]
    assert dealer_from(["TS", "7H"], ["5C"], H17) == ["TS", "7H"], "hard 17 stands"
    assert dealer_from(["5S", "6H"], ["AC", "5D"], S17) == ["5S", "6H", "AC", "5D"]


@pytest.mark.parametrize(
    ("player", "bet", "dealer", "rules", "kwargs", "net"),
    [
        (["AS", "KD"], 10, ["TS", "9H"], S17, {}, 15),  # blackjack 3:2
        (["AS", "KD"], 25, ["TS", "9H"], S17, {}, 37),  # 37.5 rounds down
        (["AS", "KD"], 10, ["TS", "9H"], Rules(blackjack_pays="6:5"), {}, 12),
        (["AS", "KD"], 10, ["AH", "QH"], S17, {}, 0),  # both blackjack: push
        (["TS", "QD"], 10, ["AH", "QH"], S17, {}, -10),  # dealer blackjack
        (["AS", "KD"], 10, ["TS", "9H"], S17, {"from_split": True}, 10),  # split 21: even
        (["TS", "8D", "5C"], 20, ["TS", "TH", "TC"], S17, {}, -20),  # player busts first
        (["TS", "8D"], 20, ["TS", "6H", "TC"], S17, {}, 20),  # dealer busts
        (["TS", "8D"], 20, ["TS", "8H"], S17, {}, 0),  # push
        (["TS", "9D"], 20, ["TS", "8H"], S17, {}, 20),
        (["TS", "6D"], 20, ["TS", "8H"], S17, {}, -20),
        (["TS", "6D"], 20, ["TS", "8H"], S17, {"surrendered": True}, -10),
    ],
)
def test_settlement(
    player: list[str], bet: int, dealer: list[str], rules: Rules, kwargs: dict[str, bool], net: int
) -> None:
    assert settle(player, bet, dealer, rules, **kwargs) == net


def test_insurance_doubling_and_the_rules_of_a_table() -> None:
    assert settle_insurance(5, ["AS", "KD"]) == 10 and settle_insurance(5, ["AS", "9D"]) == -5
    assert S17.may_double(["5S", "6H"], from_split=False)
    assert not Rules(double_on="9-11").may_double(["8S", "TH"], from_split=False)
    assert Rules(double_on="9-11").may_double(["4S", "5H"], from_split=False)
    assert not Rules(double_after_split=False).may_double(["5S", "6H"], from_split=True)
    assert not S17.may_double(["5S", "6H", "2C"], from_split=False)


@pytest.mark.parametrize(
    ("cards", "up", "action"),
    [
        (["TS", "6H"], "TD", "hit"),
        (["TS", "6H"], "6D", "stand"),
        (["5S", "6H"], "6D", "double"),
        (["5S", "6H"], "AD", "hit"),
        (["AS", "AH"], "TD", "split"),
        (["8S", "8H"], "AD", "split"),
        (["TS", "KH"], "6D", "stand"),
        (["9S", "9H"], "7D", "stand"),
        (["AS", "7H"], "9D", "hit"),
        (["AS", "7H"], "8D", "stand"),
        (["AS", "6H"], "4D", "double"),
        (["TS", "2H"], "3D", "hit"),
    ],
)
def test_basic_strategy_entries(cards: list[str], up: str, action: str) -> None:
    assert decide(cards, up, S17, can_split=True, from_split=False) == action


def test_basic_strategy_keeps_a_small_house_edge() -> None:
    """A coarse check (the 1M-hand one is benchmarks/blackjack.py): over 40,000 hands the
    edge of 6D S17 DAS 3:2 (published 0.42 %) lies well within +/- 1.5 %. The shoes come
    from fixed seeds, so the test gives the same answer on every run."""
    shoes = (Shoe(6, 0.75, hashlib.sha256(b"shoe %d" % i).digest()) for i in range(10**6))
    shoe, total, hands = next(shoes), 0, 40_000
    for _ in range(hands):
        if shoe.needs_shuffle:
            shoe = next(shoes)
        total += play_round(shoe.draw, S17, bet=2)
    edge = -total / (2 * hands) * 100
    assert -1.1 < edge < 1.9, edge
