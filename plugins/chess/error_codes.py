"""The chess plugin's error codes: code, HTTP statuses (none: not an HTTP answer),
meaning. Listed in docs/api/errors.md."""

from __future__ import annotations

from syncstream.sdk import ErrorCode

CODES: tuple[ErrorCode, ...] = (
    ErrorCode("admin_only", (403,), "only an admin ends other people's games"),
    ErrorCode(
        "challenge_closed", (409,), "the challenge was accepted, declined or cancelled already"
    ),
    ErrorCode("challenge_not_found", (404,), "no such challenge"),
    ErrorCode("challenge_self", (422,), "you cannot accept your own challenge"),
    ErrorCode("game_not_found", (404,), "no game …"),
    ErrorCode("game_over", (409,), "the game is over (the detail says how and the result)"),
    ErrorCode("game_unavailable", (503,), "the node holding this game does not answer; retry soon"),
    ErrorCode("illegal_move", (422,), "… is not a legal move here"),
    ErrorCode("invalid_clock", (422,), "give clock.limit (and clock.increment), or days"),
    ErrorCode("invalid_fen", (422,), "the position is not legal or already over"),
    ErrorCode("invalid_message", (422,), "publish {move, ply?, lag_ms?} or {action}"),
    ErrorCode("no_draw_claim", (409,), "neither threefold repetition nor 50 moves"),
    ErrorCode("no_offer", (409,), "there is no draw offer to accept"),
    ErrorCode("not_a_player", (403,), "spectators cannot act in a game"),
    ErrorCode("not_your_turn", (409,), "it is not your turn"),
    ErrorCode("nothing_to_take_back", (409,), "you have made no move yet"),
    ErrorCode("opponent_present", (409,), "your opponent is still connected"),
    ErrorCode("rated_custom_position", (422,), "games from a custom position cannot be rated"),
    ErrorCode(
        "stale_move", (409,), "the ply was already played with another move, or is not the next one"
    ),
    ErrorCode("too_early_to_claim", (409,), "your opponent was active … s ago; claim after … s"),
    ErrorCode("too_late_to_abort", (409,), "a game can be aborted before both sides moved"),
    ErrorCode(
        "unknown_action",
        (422,),
        "the action is not one a game takes (resign, draw offers, takebacks, claims, abort)",
    ),
    ErrorCode("write_interrupted", (503,), "retry: the game reloads"),
)
