"""The game logic without a server: the board's trimmed history keeps every rule intact."""

from __future__ import annotations

import chess
import pytest

from plugins.chess import game as game_module
from plugins.chess.clock import Clock
from plugins.chess.game import Game
from syncstream import Problem

WHITE, BLACK = "u-white", "u-black"
SLACK = 4


@pytest.fixture(autouse=True)
def small_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trim after a few extra plies instead of 32, so short lines exercise it."""
    monkeypatch.setattr(game_module, "TRIM_SLACK", SLACK)


def new_game() -> Game:
    return Game("g1", {"white": WHITE, "black": BLACK}, {"white": "w", "black": "b"}, False,
                Clock(600_000, 0, None))  # fmt: skip


def play(game: Game, *moves: str) -> None:
    for move in moves:
        game.play(WHITE if game.turn == "white" else BLACK, move, None, 0, 0.0)


# Pawn moves keep the halfmove clock at 0, so the board trims its history often.
PAWN_MARCH = ["a3", "a6", "b3", "b6", "c3", "c6", "d3", "d6", "e3", "e6", "f3", "f6", "g3", "g6",
              "h3", "h6", "a4", "a5", "b4", "b5", "c4", "c5", "d4", "d5"]  # fmt: skip
SHUFFLE = ["Ne2", "Ne7", "Ng1", "Ng8"]  # back to the same position every 4 plies


def test_a_long_game_keeps_a_bounded_board_history() -> None:
    game = new_game()
    play(game, *PAWN_MARCH)
    assert len(game.moves) == len(PAWN_MARCH)  # the record keeps every move
    assert len(game.board.move_stack) <= game.board.halfmove_clock + 2 + SLACK


def test_repetitions_are_seen_after_trimming() -> None:
    game = new_game()
    play(game, *PAWN_MARCH)
    assert len(game.board.move_stack) < len(game.moves)  # trimmed
    play(game, *SHUFFLE, *SHUFFLE)  # the position after d5 now stood three times
    game.act(WHITE, "claim_draw", 0.0, True)
    assert (game.result, game.termination) == ("1/2-1/2", "threefold_repetition")

    game = new_game()
    play(game, *PAWN_MARCH, *SHUFFLE * 4)  # the fifth time: the game ends by itself
    assert game.termination == "fivefold_repetition"


def test_takebacks_reach_past_the_trimmed_history() -> None:
    game = new_game()
    play(game, *PAWN_MARCH)
    for _ in range(6):  # white takes back its move and black's reply, again and again
        game.act(WHITE, "takeback_offer", 0.0, True)
        game.act(BLACK, "takeback_accept", 0.0, True)
    expected = chess.Board()
    for san in PAWN_MARCH[:-12]:
        expected.push_san(san)
    assert game.board.fen() == expected.fen()
    assert [m.san for m in game.moves] == PAWN_MARCH[:-12]
    play(game, "e4")  # and the game goes on from there
    with pytest.raises(Problem) as refused:
        play(game, "e4")  # black cannot play a white pawn's move
    assert refused.value.code == "illegal_move"
