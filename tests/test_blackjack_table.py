"""The table's round logic with stacked and random shoes, and a property test over many
thousands of random rounds: chips are conserved and every payout matches the rules."""

from __future__ import annotations

import copy
import random
from fractions import Fraction

import pytest

from plugins.blackjack.rules import Rules
from plugins.blackjack.shoe import Shoe
from plugins.blackjack.table import ACTIONS, STEPS, Table
from syncstream.sdk import Problem

PLAYERS = [(f"u{n}", f"player{n}") for n in range(7)]


class StackedShoe(Shoe):
    """A shoe whose first cards are given (the rest shuffled as usual)."""

    def __init__(self, first: list[str], rules: Rules) -> None:
        super().__init__(rules.decks, rules.penetration, seed=b"\x01" * 32)
        self.shuffle("")
        self.cards = first + self.cards


def table_with(first: list[str], rules: Rules | None = None, players: int = 1) -> Table:
    rules = rules or Rules()
    table = Table("t1", "test", rules, StackedShoe(first, rules))
    for user_id, name in PLAYERS[:players]:
        table.sit(user_id, name, None)
    return table


def refused(code: str, call: object, *args: object) -> None:
    with pytest.raises(Problem) as problem:
        call(*args)  # type: ignore[operator]
    assert problem.value.code == code


def test_deal_order_hidden_hole_card_and_a_plain_win() -> None:
    # Deal order: player, dealer up, player, dealer hole.
    table = table_with(["TS", "9H", "QD", "7C", "2S"])
    table.place_bet("u0", 100)
    table.deal()
    view = table.view()
    assert view["dealer"]["cards"] == ["9H", "??"] and view["dealer"]["total"] is None
    assert "7C" not in str(view)
    table.act("u0", "stand")
    assert table.phase == "settled"
    assert table.view()["dealer"] == {"cards": ["9H", "7C", "2S"], "total": 18}
    assert table.seats[0].hands[0].net == 100 and table.returns() == {0: 200}


def test_a_view_is_a_snapshot_that_later_steps_leave_alone() -> None:
    table = table_with(["5S", "9H", "4D", "7C", "2S", "3H", "TD"])
    table.place_bet("u0", 100)
    table.deal()
    before = table.view()
    kept = copy.deepcopy(before)
    table.act("u0", "hit")
    table.act("u0", "hit")
    table.act("u0", "stand")
    assert table.phase == "settled" and before == kept


def test_blackjack_pays_3_to_2_or_6_to_5() -> None:
    for pays, won in (("3:2", 150), ("6:5", 120)):
        table = table_with(["AS", "9H", "KD", "7C"], Rules(blackjack_pays=pays))
        table.place_bet("u0", 100)
        table.deal()
        assert table.phase == "settled"  # nothing to decide on a blackjack
        assert table.seats[0].hands[0].net == won
        assert table.returns() == {0: 100 + won}


def test_insurance_against_a_dealer_blackjack_and_even_money() -> None:
    table = table_with(["TS", "AH", "9D", "KC"])
    table.place_bet("u0", 100)
    table.deal()
    assert table.phase == "insurance"
    assert table.cost_of("u0", "insurance") == 50
    table.take_insurance("u0", True)
    assert table.phase == "settled"  # the dealer peeked: blackjack
    assert table.seats[0].hands[0].net == -100 and table.seats[0].insurance_net == 100
    assert table.returns() == {0: 150}  # stake 100 + 50 back: the insurance saved the bet

    table = table_with(["AS", "AH", "KD", "9C"])  # even money: a blackjack insured
    table.place_bet("u0", 100)
    table.deal()
    table.take_insurance("u0", True)
    assert table.phase == "settled"
    assert table.returns() == {0: 250}  # 150 staked: +100 whatever the dealer had


def test_double_split_and_their_refusals() -> None:
    # Player 8,8 vs dealer 6 (hole T): split, the first 8 gets a 3 and doubles.
    table = table_with(["8S", "6H", "8D", "TC", "3S", "9D", "5H", "TD"])
    table.place_bet("u0", 100)
    table.deal()
    assert table.cost_of("u0", "split") == 100
    table.act("u0", "split")
    hands = table.seats[0].hands
    assert [h.cards for h in hands] == [["8S", "3S"], ["8D", "9D"]]
    assert table.cost_of("u0", "double") == 100  # double after split
    table.act("u0", "double")
    assert hands[0].cards == ["8S", "3S", "5H"] and hands[0].bet == 200
    refused("cannot_split", table.cost_of, "u0", "split")
    table.act("u0", "stand")
    assert table.phase == "settled"  # dealer 6 + T + T = 26: bust
    assert [h.net for h in hands] == [200, 100]
    assert table.returns() == {0: 200 + 200 + 100 + 100}


def test_turns_timeouts_and_bad_steps() -> None:
    table = table_with(["TS", "TH", "9D", "7C", "8C", "5S"], Rules(double_on="9-11"), players=2)
    refused("bet_out_of_limits", table.place_bet, "u0", 5)
    table.place_bet("u0", 10)
    refused("already_bet", table.place_bet, "u0", 10)
    assert not table.everyone_bet
    table.place_bet("u1", 20)
    table.deal()
    refused("betting_closed", table.place_bet, "u0", 10)
    refused("not_your_turn", table.act, "u1", "hit")
    refused("unknown_action", table.act, "u0", "fold")
    refused("cannot_surrender", table.act, "u0", "surrender")  # not offered at this table
    refused("cannot_split", table.act, "u0", "split")
    refused("cannot_double", table.act, "u0", "double")  # 18: only 9-11 double here
    table.stand_on_timeout()
    assert table.turn == (1, 0)
    refused("in_round", table.leave, "u1")
    table.act("u1", "stand")
    assert table.phase == "settled" and table.leave("u1") == 1


def test_a_step_the_table_refuses_costs_nothing_first() -> None:
    # Aces split and one of them paired again (resplit allowed): that hand may be split
    # again but takes no card by hitting or doubling - refused before the double is paid.
    rules = Rules(resplit_aces=True, double_after_split=True)
    table = table_with(["AS", "6H", "AD", "TC", "AH", "5D"], rules)
    table.place_bet("u0", 100)
    table.deal()
    table.act("u0", "split")
    assert table.seats[0].hands[0].cards == ["AS", "AH"] and table.turn == (0, 0)
    refused("split_aces", table.cost_of, "u0", "double")
    refused("split_aces", table.cost_of, "u0", "hit")
    assert table.view()["allowed"] == {
        "0": {"actions": ["stand", "split"], "costs": {"split": 100}}
    }


def test_each_state_says_what_each_seat_may_do() -> None:
    rules = Rules(late_surrender=True, min_bet=5, max_bet=500)
    table = table_with(["8S", "AH", "8D", "9C", "TS", "TD"], rules, players=2)
    limits = {"min": 5, "max": 500}
    bet_only = {"actions": ["bet"], "costs": {}, "bet": limits}
    assert table.view()["allowed"] == {"0": bet_only, "1": bet_only}
    table.place_bet("u0", 100)
    assert table.view()["allowed"] == {"1": bet_only}  # u0 has bet
    table.sit_out("u1", True)
    table.deal()  # dealer shows an ace: insurance, for the seat that plays
    assert table.view()["allowed"] == {"0": {"actions": ["insurance"],
                                             "costs": {"insurance": 50}}}  # fmt: skip
    table.take_insurance("u0", False)  # no blackjack under the ace: 8, 8 to play
    assert table.view()["allowed"] == {
        "0": {"actions": ["hit", "stand", "double", "split", "surrender"],
              "costs": {"double": 100, "split": 100}},
    }  # fmt: skip
    table.act("u0", "hit")  # 8, 8, T: 26, bust - the round is settled
    assert table.phase == "settled"
    assert table.view()["allowed"] == {"0": bet_only}  # u1 still sits out


def attempt(table: Table, user_id: str, step: str, amount: int) -> int | None:
    """What ``step`` cost if a copy of the table took it, or None if it refused."""
    trial = copy.deepcopy(table)
    try:
        cost = trial.cost_of(user_id, step, amount)
        if step == "bet":
            trial.place_bet(user_id, amount)
        elif step == "insurance":
            trial.take_insurance(user_id, True)
        else:
            trial.act(user_id, step)
    except Problem:
        return None
    return cost


@pytest.mark.parametrize("seed", range(3))
def test_the_allowed_steps_are_exactly_those_the_table_takes(seed: int) -> None:
    """Over random rules and rounds, at every decision: a step listed is taken (and costs
    what is listed), a step not listed is refused."""
    rng = random.Random(seed)
    rules = Rules(
        decks=1, double_on=rng.choice(["any", "9-11"]), double_after_split=rng.random() < 0.5,
        max_hands=rng.choice([2, 4]), resplit_aces=rng.random() < 0.5, late_surrender=True,
    )  # fmt: skip
    table = Table("t", "prop", rules, Shoe(rules.decks, rules.penetration, rng.randbytes(32)))
    for user_id, name in PLAYERS[:3]:
        table.sit(user_id, name, None)
    checked: set[str] = set()

    def check() -> list[str]:
        """The listed steps against the table's answers; the turn's listed actions."""
        allowed = table.view()["allowed"]
        for seat_no, seat in table.seats.items():
            may = allowed.get(str(seat_no), {"actions": [], "costs": {}})
            for step in STEPS:
                cost = attempt(table, seat.user_id, step, rules.min_bet)
                assert (cost is not None) == (step in may["actions"]), (step, may, seat)
                if cost is not None:
                    assert may["costs"].get(step, 0) == (0 if step == "bet" else cost)
                    checked.add(step)
        return list(allowed[str(table.turn[0])]["actions"]) if table.turn else []

    for _ in range(150):
        if table.shoe.needs_shuffle:
            table.shoe = Shoe(rules.decks, rules.penetration, rng.randbytes(32))
        check()
        for user_id, _ in PLAYERS[:3]:
            table.place_bet(user_id, rules.min_bet)
        table.deal()
        while table.phase != "settled":
            actions = check()
            if table.phase == "insurance":
                user_id = next(s.user_id for s in table.seats.values()
                               if s.hands and s.insurance is None)  # fmt: skip
                table.take_insurance(user_id, rng.random() < 0.5)
            else:
                assert table.turn is not None
                table.act(table.seats[table.turn[0]].user_id, rng.choice(actions))
    assert checked == set(STEPS), "every kind of step came up"


def hand_total(cards: list[str]) -> int:
    """An oracle for the property test, written apart from the server's own code."""
    total = sum(min(10, "A23456789TJQK".index(c[0]) + 1) for c in cards)
    aces = sum(c[0] == "A" for c in cards)
    return total + 10 if aces and total + 10 <= 21 else total


def expected_net(cards: list[str], bet: int, dealer: list[str], rules: Rules,
                 from_split: bool, surrendered: bool) -> int:  # fmt: skip
    if surrendered:
        return -(bet // 2)
    mine, theirs = hand_total(cards), hand_total(dealer)
    my_bj = len(cards) == 2 and mine == 21 and not from_split
    their_bj = len(dealer) == 2 and theirs == 21
    if mine > 21:
        return -bet
    if my_bj and not their_bj:
        ratio = Fraction(3, 2) if rules.blackjack_pays == "3:2" else Fraction(6, 5)
        return int(bet * ratio)
    if their_bj:
        return 0 if my_bj else -bet
    if theirs > 21 or mine > theirs:
        return bet
    return 0 if mine == theirs else -bet


@pytest.mark.parametrize("seed", range(4))
def test_random_rounds_conserve_chips_and_pay_by_the_rules(seed: int) -> None:
    rng = random.Random(seed)
    rules = Rules(
        decks=rng.choice([1, 2, 6, 8]), hit_soft_17=rng.random() < 0.5,
        blackjack_pays=rng.choice(["3:2", "6:5"]), double_on=rng.choice(["any", "9-11"]),
        double_after_split=rng.random() < 0.5, max_hands=rng.choice([2, 3, 4]),
        resplit_aces=rng.random() < 0.5, late_surrender=rng.random() < 0.5,
    )  # fmt: skip
    table = Table("t", "prop", rules, Shoe(rules.decks, rules.penetration, rng.randbytes(32)))
    players = rng.randint(1, 7)
    for user_id, name in PLAYERS[:players]:
        table.sit(user_id, name, None)
    wallets = {user_id: 1_000_000 for user_id, _ in PLAYERS[:players]}
    house = 0
    start_total = sum(wallets.values())
    for _ in range(1500):
        if table.shoe.needs_shuffle:
            table.shoe = Shoe(rules.decks, rules.penetration, rng.randbytes(32))
        paid = dict.fromkeys(wallets, 0)
        for user_id in wallets:
            amount = rng.randint(rules.min_bet, rules.max_bet)
            wallets[user_id] -= table.cost_of(user_id, "bet", amount)
            paid[user_id] += amount
            table.place_bet(user_id, amount)
        table.deal()
        while table.phase == "insurance":
            user_id = next(s.user_id for s in table.seats.values()
                           if s.hands and s.insurance is None)  # fmt: skip
            take = rng.random() < 0.3
            cost = table.cost_of(user_id, "insurance") if take else 0
            wallets[user_id] -= cost
            paid[user_id] += cost
            table.take_insurance(user_id, take)
        while table.phase == "playing":
            assert table.turn is not None
            user_id = table.seats[table.turn[0]].user_id
            action = rng.choice(ACTIONS)
            try:
                cost = table.cost_of(user_id, action)
                table.act(user_id, action)
            except Problem:
                continue  # refused: nothing may have changed hands
            wallets[user_id] -= cost
            paid[user_id] += cost
        assert table.phase == "settled"
        returns = table.returns()
        for seat_no, seat in table.seats.items():
            expected = sum(
                h.bet + expected_net(h.cards, h.bet, table.dealer, rules, h.from_split,
                                     h.surrendered)
                for h in seat.hands
            )  # fmt: skip
            if seat.insurance:
                dealer_bj = len(table.dealer) == 2 and hand_total(table.dealer) == 21
                expected += 3 * seat.insurance if dealer_bj else 0
            assert returns.get(seat_no, 0) == expected
            assert sum(h.bet for h in seat.hands) + (seat.insurance or 0) == paid[seat.user_id]
            wallets[seat.user_id] += returns.get(seat_no, 0)
            house += paid[seat.user_id] - returns.get(seat_no, 0)
        assert hand_total(table.dealer) >= 17 or all(
            hand_total(h.cards) > 21 or h.surrendered or len(h.cards) == 2
            for s in table.seats.values() for h in s.hands
        )  # fmt: skip
        assert sum(wallets.values()) + house == start_total
