"""The blackjack plugin's error codes: code, HTTP statuses (none: not an HTTP answer),
meaning. Listed in docs/api/errors.md."""

from __future__ import annotations

from syncstream.sdk import ErrorCode

CODES: tuple[ErrorCode, ...] = (
    ErrorCode("already_bet", (409,), "you have bet on this round already"),
    ErrorCode("already_seated", (409,), "you already have a seat at this table"),
    ErrorCode("already_topped_up", (409,), "one top-up a day"),
    ErrorCode("bet_out_of_limits", (422,), "bets here are … to …"),
    ErrorCode("betting_closed", (409,), "bets are closed for this round"),
    ErrorCode("cannot_double", (409,), "you may not double this hand"),
    ErrorCode("cannot_split", (409,), "only a pair can be split"),
    ErrorCode("cannot_surrender", (409,), "surrender is for the first two cards"),
    ErrorCode("in_round", (409,), "finish the round before you leave"),
    ErrorCode("insufficient_funds", (409,), "… chips needed; top up or bet less"),
    ErrorCode("insurance_decided", (409,), "you have answered already"),
    ErrorCode("invalid_message", (422,), "every step carries a request_id (1-64 chars)"),
    ErrorCode("invalid_rules", (422,), "min_bet is above max_bet"),
    ErrorCode("no_insurance", (409,), "insurance is offered only against an ace"),
    ErrorCode("not_betting", (409,), "there are no bets to deal"),
    ErrorCode("not_playing", (409,), "no hand is being played now"),
    ErrorCode("not_seated", (403,), "take a seat first"),
    ErrorCode("not_your_turn", (409,), "it is not your turn"),
    ErrorCode("request_id_reused", (409,), "you used that request id for another adjustment"),
    ErrorCode("seat_taken", (409,), "seat … is taken"),
    ErrorCode("seed_mismatch", (422,), "sha256(seed) is not the commitment"),
    ErrorCode("shoe_not_found", (404,), "no such shoe"),
    ErrorCode("sitting_out", (409,), "you are sitting out"),
    ErrorCode("split_aces", (409,), "split aces take one card each"),
    ErrorCode("table_full", (409,), "all … seats are taken"),
    ErrorCode("table_not_found", (404,), "no such table"),
    ErrorCode("unknown_action", (422,), "the action is not hit, stand, double, split or surrender"),
    ErrorCode("zero_adjustment", (422,), "adjust by a number of chips other than 0"),
)
