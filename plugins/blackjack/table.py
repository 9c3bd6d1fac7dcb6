"""One table's round, as a state machine without I/O: seats, bets, the deal, insurance, the
players' turns, the dealer's play and the settlement.

Money never moves here. A step that costs chips (a bet, a double, a split, insurance) is
checked with :meth:`Table.cost_of` first; the service reserves the chips in the wallet and
only then applies the step. :meth:`Table.settle` says what each seat gets back; the sum of
the stakes and returns is what the house won or lost, so chips are conserved by design.

Phases: ``idle`` (no round) → ``betting`` (a window opened by the first bet) → ``insurance``
(only when the dealer shows an ace) → ``playing`` (hand by hand in seat order) →
``settled`` (the dealer played; returns are known) → the next ``idle`` round.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from syncstream.sdk import Problem

from .cards import is_blackjack, is_pair, value
from .rules import Rules, dealer_play, settle, settle_insurance
from .shoe import Shoe

SEATS = 7
Phase = Literal["idle", "betting", "insurance", "playing", "settled"]
ACTIONS = ("hit", "stand", "double", "split", "surrender")
STEPS = ("bet", "insurance", *ACTIONS)  # everything a seat may do, in the order it is listed


@dataclass
class Hand:
    cards: list[str]
    bet: int
    from_split: bool = False
    doubled: bool = False
    surrendered: bool = False
    done: bool = False
    net: int | None = None  # the player's result once settled

    def view(self) -> dict[str, Any]:
        total, soft = value(self.cards)
        return {"cards": list(self.cards), "bet": self.bet, "total": total, "soft": soft,
                "doubled": self.doubled, "surrendered": self.surrendered,
                "from_split": self.from_split, "done": self.done, "net": self.net}  # fmt: skip


@dataclass
class Seat:
    user_id: str
    username: str
    bet: int = 0  # staked for the coming deal
    hands: list[Hand] = field(default_factory=list)
    insurance: int | None = None  # None: not asked or not answered; 0: declined
    insurance_net: int | None = None
    sitting_out: bool = False
    client_seed: str | None = None  # given with this round's bet, for a new shoe's shuffle

    def view(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "username": self.username, "bet": self.bet,
                "hands": [h.view() for h in self.hands], "insurance": self.insurance,
                "insurance_net": self.insurance_net, "sitting_out": self.sitting_out,
                "client_seed": self.client_seed}  # fmt: skip


@dataclass
class Table:
    id: str
    name: str
    rules: Rules
    shoe: Shoe
    seats: dict[int, Seat] = field(default_factory=dict)
    phase: Phase = "idle"
    round_id: str | None = None
    dealer: list[str] = field(default_factory=list)
    hole_revealed: bool = False
    turn: tuple[int, int] | None = None  # (seat, hand index)
    actions: list[dict[str, Any]] = field(default_factory=list)  # this round's, in order

    # -- seats ------------------------------------------------------------------------------

    def seat_of(self, user_id: str) -> int | None:
        return next((n for n, s in self.seats.items() if s.user_id == user_id), None)

    def sit(self, user_id: str, username: str, seat: int | None) -> int:
        if self.seat_of(user_id) is not None:
            raise Problem(409, "already_seated", "you already have a seat at this table")
        free = [n for n in range(SEATS) if n not in self.seats]
        if not free:
            raise Problem(409, "table_full", f"all {SEATS} seats are taken")
        if seat is None:
            seat = free[0]
        elif seat not in free:
            raise Problem(409, "seat_taken", f"seat {seat} is taken")
        self.seats[seat] = Seat(user_id, username)
        return seat

    def leave(self, user_id: str) -> int:
        seat = self._seated(user_id)
        staked = self.seats[seat].bet or self.seats[seat].hands
        if staked and self.phase not in ("idle", "settled"):
            raise Problem(409, "in_round", "finish the round before you leave")
        del self.seats[seat]
        return seat

    def sit_out(self, user_id: str, out: bool) -> None:
        self.seats[self._seated(user_id)].sitting_out = out

    def _seated(self, user_id: str) -> int:
        seat = self.seat_of(user_id)
        if seat is None:
            raise Problem(403, "not_seated", "take a seat first")
        return seat

    # -- what costs chips -------------------------------------------------------------------

    def cost_of(self, user_id: str, step: str, amount: int = 0) -> int:
        """Chips ``step`` would take from the player now; raises a problem if it may not."""
        return self._cost(self._seated(user_id), step, amount)

    def _cost(self, seat_no: int, step: str, amount: int) -> int:
        seat = self.seats[seat_no]
        if step == "bet":
            if self.phase not in ("idle", "betting", "settled"):
                raise Problem(409, "betting_closed", "bets are closed for this round")
            if seat.sitting_out:
                raise Problem(409, "sitting_out", "you are sitting out")
            if seat.bet and self.phase == "betting":
                raise Problem(409, "already_bet", "you have bet on this round already")
            if not self.rules.min_bet <= amount <= self.rules.max_bet:
                raise Problem(
                    422, "bet_out_of_limits",
                    f"bets here are {self.rules.min_bet} to {self.rules.max_bet}",
                )  # fmt: skip
            return amount
        if step == "insurance":
            if self.phase != "insurance":
                raise Problem(409, "no_insurance", "insurance is offered only against an ace")
            if not seat.hands or seat.insurance is not None:
                raise Problem(409, "insurance_decided", "you have answered already")
            return seat.hands[0].bet // 2
        hand = self._hand_to_act(seat_no)
        if hand.from_split and hand.cards[0][0] == "A" and step in ("hit", "double"):
            raise Problem(409, "split_aces", "split aces take one card each")
        if step == "double":
            if not self.rules.may_double(hand.cards, hand.from_split):
                raise Problem(409, "cannot_double", "you may not double this hand")
            return hand.bet
        if step == "split":
            self._check_split(seat, hand)
            return hand.bet
        if step == "surrender" and (
            not self.rules.late_surrender or len(hand.cards) != 2 or hand.from_split
        ):
            raise Problem(409, "cannot_surrender", "surrender is for the first two cards")
        return 0

    def allowed(self) -> dict[str, dict[str, Any]]:
        """What each seat may do now, by the table's rules and its hand (the same checks as
        the steps themselves): ``{"<seat>": {"actions": [...], "costs": {action: chips},
        "bet": {"min", "max"}}}``, ``costs`` naming what takes chips and ``bet`` present when
        the seat may bet. Whether the player's chips cover a cost is checked when they act:
        balances are private, and the table is seen by anyone."""
        # Only the steps the phase has any use for are put to the checks (a view is built
        # for every step of every table: most refusals need not be raised to be known).
        rules, out = self.rules, {}
        if self.phase == "playing":
            candidates: dict[int, tuple[str, ...]] = {self.turn[0]: ACTIONS} if self.turn else {}
        elif self.phase == "insurance":
            candidates = dict.fromkeys(self.seats, ("insurance",))
        else:  # bets: one entry, the same for every seat that may bet
            bet = {"actions": ["bet"], "costs": {}, "bet": {"min": rules.min_bet,
                                                           "max": rules.max_bet}}  # fmt: skip
            for seat_no in sorted(self.seats):
                try:
                    self._cost(seat_no, "bet", rules.min_bet)
                except Problem:
                    continue  # refused: not listed
                out[str(seat_no)] = bet
            return out
        for seat_no, steps in sorted(candidates.items()):
            costs: dict[str, int] = {}
            for step in steps:
                try:
                    costs[step] = self._cost(seat_no, step, rules.min_bet)
                except Problem:
                    continue
            if costs:
                out[str(seat_no)] = {"actions": list(costs),
                                     "costs": {k: v for k, v in costs.items() if v}}  # fmt: skip
        return out

    def _hand_to_act(self, seat_no: int) -> Hand:
        if self.phase != "playing" or self.turn is None:
            raise Problem(409, "not_playing", "no hand is being played now")
        if self.turn[0] != seat_no:
            raise Problem(409, "not_your_turn", "it is not your turn")
        return self.seats[seat_no].hands[self.turn[1]]

    def _check_split(self, seat: Seat, hand: Hand) -> None:
        if not is_pair(hand.cards):
            raise Problem(409, "cannot_split", "only a pair can be split")
        if len(seat.hands) >= self.rules.max_hands:
            raise Problem(409, "cannot_split", f"at most {self.rules.max_hands} hands")
        if hand.from_split and hand.cards[0][0] == "A" and not self.rules.resplit_aces:
            raise Problem(409, "cannot_split", "aces are not split again here")

    # -- the round --------------------------------------------------------------------------

    def place_bet(self, user_id: str, amount: int, client_seed: str | None = None) -> None:
        """Stake ``amount`` (already reserved) on the coming deal; ``client_seed`` goes into
        the shuffle if this round's deal is a new shoe's first."""
        self.cost_of(user_id, "bet", amount)
        if self.phase in ("idle", "settled"):
            self.begin_round()
        seat = self.seats[self._seated(user_id)]
        seat.bet, seat.client_seed = amount, client_seed
        self.actions.append({"seat": self.seat_of(user_id), "action": "bet", "amount": amount})

    def begin_round(self) -> None:
        self.phase = "betting"
        self.round_id = secrets.token_hex(16)
        self.dealer, self.hole_revealed, self.turn, self.actions = [], False, None, []
        for seat in self.seats.values():
            seat.bet, seat.hands, seat.client_seed = 0, [], None
            seat.insurance = seat.insurance_net = None

    @property
    def everyone_bet(self) -> bool:
        active = [s for s in self.seats.values() if not s.sitting_out]
        return bool(active) and all(s.bet for s in active)

    def deal(self) -> None:
        """Close the bets: two cards to each bet, one up and one down to the dealer."""
        if self.phase != "betting":
            raise Problem(409, "not_betting", "there are no bets to deal")
        bets = [(n, s) for n, s in sorted(self.seats.items()) if s.bet]
        if not bets:  # the window closed without a bet
            self.phase = "idle"
            return
        if self.shoe.client_seed is None:  # a new shoe: the players' seeds go in, seat order
            self.shoe.shuffle(",".join(f"{n}:{s.client_seed}" for n, s in bets if s.client_seed))
        playing = [s for _, s in bets]
        for seat in playing:
            seat.hands = [Hand([], seat.bet)]
        for _ in range(2):
            for seat in playing:
                seat.hands[0].cards.append(self.shoe.draw())
            self.dealer.append(self.shoe.draw())
        for seat in playing:
            seat.hands[0].done = is_blackjack(seat.hands[0].cards)
        if self.dealer[0][0] == "A" and self.rules.insurance:
            self.phase = "insurance"
        else:
            self._peek()

    def take_insurance(self, user_id: str, take: bool) -> None:
        cost = self.cost_of(user_id, "insurance")
        seat = self.seats[self._seated(user_id)]
        seat.insurance = cost if take else 0
        self.actions.append({"seat": self.seat_of(user_id), "action": "insurance",
                             "amount": seat.insurance})  # fmt: skip
        if all(s.insurance is not None for s in self.seats.values() if s.hands):
            self._peek()

    def close_insurance(self) -> None:
        """The insurance window timed out: whoever did not answer declined."""
        if self.phase == "insurance":
            for seat in self.seats.values():
                if seat.hands and seat.insurance is None:
                    seat.insurance = 0
            self._peek()

    def _peek(self) -> None:
        """The dealer looks under a ten or an ace; a blackjack ends the round at once."""
        if is_blackjack(self.dealer):
            self.hole_revealed = True
            for seat in self.seats.values():
                for hand in seat.hands:
                    hand.done = True
            self._finish()
            return
        self.phase = "playing"
        self.turn = (-1, 0)
        self._advance()

    def act(self, user_id: str, action: str) -> None:
        """A hand's move; ``double`` and ``split`` must have been paid for."""
        if action not in ACTIONS:
            raise Problem(422, "unknown_action", f"actions: {', '.join(ACTIONS)}")
        seat_no = self._seated(user_id)
        hand = self._hand_to_act(seat_no)
        self.cost_of(user_id, action)  # every check, before any chip moved
        if action == "surrender":
            hand.surrendered = hand.done = True
        elif action == "hit":
            hand.cards.append(self.shoe.draw())
            hand.done = value(hand.cards)[0] >= 21
        elif action == "stand":
            hand.done = True
        elif action == "double":
            hand.bet *= 2
            hand.doubled = True
            hand.cards.append(self.shoe.draw())
            hand.done = True
        else:
            self._split(self.seats[seat_no], hand)
        assert self.turn is not None
        self.actions.append({"seat": seat_no, "hand": self.turn[1], "action": action})
        self._advance()

    def _split(self, seat: Seat, hand: Hand) -> None:
        assert self.turn is not None
        aces = hand.cards[0][0] == "A"
        second = Hand([hand.cards.pop()], hand.bet, from_split=True)
        hand.from_split = True
        seat.hands.insert(self.turn[1] + 1, second)
        for h in (hand, second):
            h.cards.append(self.shoe.draw())
            # Split aces get one card each, unless a new pair of aces may be split again.
            resplit = self.rules.resplit_aces and is_pair(h.cards)
            h.done = (aces and not resplit) or value(h.cards)[0] == 21

    def stand_on_timeout(self) -> None:
        """The turn timer ran out: the hand stands."""
        if self.phase == "playing" and self.turn is not None:
            self.seats[self.turn[0]].hands[self.turn[1]].done = True
            self.actions.append({"seat": self.turn[0], "hand": self.turn[1],
                                 "action": "stand", "timeout": True})  # fmt: skip
            self._advance()

    def _advance(self) -> None:
        """The next hand that has to act, in seat order; the dealer after the last."""
        assert self.turn is not None
        for seat_no, seat in sorted(self.seats.items()):
            if seat_no < self.turn[0]:
                continue
            for index, hand in enumerate(seat.hands):
                if not hand.done:
                    self.turn = (seat_no, index)
                    return
        self.turn = None
        self._finish()

    def _finish(self) -> None:
        """The dealer plays (unless no hand is left to beat) and every hand is settled."""
        self.hole_revealed = True
        hands = [h for s in self.seats.values() for h in s.hands]
        standing = [h for h in hands if value(h.cards)[0] <= 21 and not h.surrendered]
        if not is_blackjack(self.dealer) and not all(
            is_blackjack(h.cards, h.from_split) for h in standing
        ):  # some hand is still to beat
            self.dealer = dealer_play(self.dealer, self.shoe.draw, self.rules)
        for seat in self.seats.values():
            for hand in seat.hands:
                hand.net = settle(
                    hand.cards, hand.bet, self.dealer, self.rules,
                    from_split=hand.from_split, surrendered=hand.surrendered,
                )  # fmt: skip
            if seat.insurance:
                seat.insurance_net = settle_insurance(seat.insurance, self.dealer)
        self.phase = "settled"

    def returns(self) -> dict[int, int]:
        """What each seat gets back after settling: stakes plus winnings (0 for a loss)."""
        out: dict[int, int] = {}
        for seat_no, seat in self.seats.items():
            back = sum(h.bet + (h.net or 0) for h in seat.hands)
            if seat.insurance:
                back += seat.insurance + (seat.insurance_net or 0)
            if back:
                out[seat_no] = back
        return out

    # -- views ------------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The table as anyone may see it: the hole card only once it is turned. A snapshot
        (no list shared with the live table): a step's answer is kept for its retries."""
        dealer = (
            list(self.dealer)
            if self.hole_revealed
            else self.dealer[:1] + ["??"] * (len(self.dealer) > 1)
        )
        total = value(self.dealer)[0] if self.hole_revealed and self.dealer else None
        return {
            "id": self.id,
            "name": self.name,
            "phase": self.phase,
            "round_id": self.round_id,
            "dealer": {"cards": dealer, "total": total},
            "seats": {str(n): s.view() for n, s in sorted(self.seats.items())},
            "turn": {"seat": self.turn[0], "hand": self.turn[1]} if self.turn else None,
            "allowed": self.allowed(),
            "shoe": {
                "commitment": self.shoe.commitment,
                "decks": self.shoe.decks,
                "remaining": self.shoe.remaining,
                "client_seed": self.shoe.client_seed,  # None until the shoe's first deal
                "cut_card_reached": self.shoe.needs_shuffle,
            },
        }
