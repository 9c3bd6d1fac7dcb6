"""The game logic without a server: a board without move history keeps every rule intact."""

from __future__ import annotations

import copy
import io
import random

import chess
import chess.pgn
import pytest

from plugins.chess.clock import Clock
from plugins.chess.game import Game, pgn_clock
from plugins.chess.position import Position
from syncstream.sdk import Problem

WHITE, BLACK = "u-white", "u-black"


def new_game() -> Game:
    return Game("g1", {"white": WHITE, "black": BLACK}, {"white": "w", "black": "b"}, False,
                Clock(600_000, 0, None))  # fmt: skip


def play(game: Game, *moves: str) -> None:
    for move in moves:
        game.play(WHITE if game.turn == "white" else BLACK, move, None, 0, 0.0)


# Pawn moves reset the halfmove clock: no position before one can stand again.
PAWN_MARCH = ["a3", "a6", "b3", "b6", "c3", "c6", "d3", "d6", "e3", "e6", "f3", "f6", "g3", "g6",
              "h3", "h6", "a4", "a5", "b4", "b5", "c4", "c5", "d4", "d5"]  # fmt: skip
SHUFFLE = ["Ne2", "Ne7", "Ng1", "Ng8"]  # back to the same position every 4 plies


def test_a_long_game_keeps_no_board_history() -> None:
    game = new_game()
    play(game, *PAWN_MARCH)
    assert len(game.moves) == len(PAWN_MARCH)  # the record keeps every move
    assert game.board.move_stack == []


def test_repetitions_are_seen_without_the_board_history() -> None:
    game = new_game()
    play(game, *PAWN_MARCH)
    play(game, *SHUFFLE, *SHUFFLE)  # the position after d5 now stood three times
    game.act(WHITE, "claim_draw", 0.0, True)
    assert (game.result, game.termination) == ("1/2-1/2", "threefold_repetition")

    game = new_game()
    play(game, *PAWN_MARCH, *SHUFFLE * 4)  # the fifth time: the game ends by itself
    assert game.termination == "fivefold_repetition"


def test_takebacks_replay_the_game() -> None:
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


EN_PASSANT_CHANCE = "4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 3"


def shuffling_line(rng: random.Random, fen: str, plies: int) -> list[chess.Move]:
    """Random legal moves that favour knight and king steps (positions come back often)
    over pawn moves and captures."""
    board = chess.Board(fen)
    line = []
    while len(line) < plies and not board.is_game_over(claim_draw=False):
        moves = list(board.legal_moves)
        quiet = [m for m in moves if not board.is_zeroing(m)]
        move = rng.choice(quiet if quiet and rng.random() < 0.9 else moves)
        board.push(move)
        line.append(move)
    return line


@pytest.mark.parametrize("seed", range(40))
def test_repetition_rules_match_python_chess_with_its_full_history(seed: int) -> None:
    """The position's bookkeeping agrees with python-chess's own rules (which walk the move
    stack) after every ply of random games full of repetitions, and so do its FEN and SAN."""
    fen = EN_PASSANT_CHANCE if seed % 4 == 0 else chess.STARTING_FEN
    reference, position = chess.Board(fen), Position(fen)
    for n, move in enumerate(shuffling_line(random.Random(seed), fen, 160)):
        san = reference.san(move)
        reference.push(move)
        if n % 2:
            assert position.play(move) == san
        else:
            position.push(move)
        assert position.fen() == position.board.fen() == reference.fen()
        assert (position.repetitions() >= 3) == reference.is_repetition(3)
        assert (position.repetitions() >= 5) == reference.is_fivefold_repetition()
        assert position.can_claim_threefold() == reference.can_claim_threefold_repetition()
        assert position.board.can_claim_fifty_moves() == reference.can_claim_fifty_moves()
    assert position.board.move_stack == []


def test_a_threefold_claim_may_come_with_the_move_that_makes_it() -> None:
    game = new_game()
    play(game, "Nf3", "Nf6", "Ng1", "Ng8", "Nf3", "Nf6", "Ng1")  # Ng8: the start, 3rd time
    assert game.position.repetitions() == 2  # the position after Ng1, not yet three
    game.act(BLACK, "claim_draw", 0.0, True)
    assert (game.result, game.termination) == ("1/2-1/2", "threefold_repetition")


def test_a_claim_without_a_repetition_is_refused_and_changes_nothing() -> None:
    game = new_game()
    play(game, "Nf3", "Nf6", "Ng1")
    with pytest.raises(Problem) as refused:
        game.act(BLACK, "claim_draw", 0.0, True)
    assert refused.value.code == "no_draw_claim"
    assert game.status == "started" and len(game.moves) == 3


@pytest.mark.parametrize(("remaining", "quota"), [(1000, 450), (60_000, 5000), (0, 0)])
def test_a_clock_says_when_its_flag_falls(remaining: int, quota: int) -> None:
    clock = Clock(remaining, 0, None)
    assert clock.flag_at() is None  # no clock runs
    clock.quota["black"] = quota
    clock.start("black", 100.0)
    flag_at = clock.flag_at()
    assert flag_at is not None
    assert clock.flagged(flag_at + 1e-6)
    assert not clock.flagged(flag_at - 0.002)


# White may castle both ways and promote on b8 or by taking on a8.
CASTLE_OR_PROMOTE = "r3k2r/pP4pp/8/8/8/8/6PP/R3K2R w KQkq - 0 1"
ACCEPTED = [
    ("e1g1", "e1g1"), ("e1h1", "e1g1"), ("O-O", "e1g1"), ("0-0", "e1g1"), ("O-O+", "e1g1"),
    ("e1c1", "e1c1"), ("e1a1", "e1c1"), ("O-O-O", "e1c1"), ("0-0-0", "e1c1"),
    ("b7b8q", "b7b8q"), ("b7b8n", "b7b8n"), ("b8=Q", "b7b8q"), ("b8Q", "b7b8q"),
    ("b8=N", "b7b8n"), ("bxa8=Q", "b7a8q"), ("bxa8R", "b7a8r"), ("b7a8b", "b7a8b"),
    ("b7b8Q", "b7b8q"), ("Kd1", "e1d1"), (" Rb1 ", "a1b1"), ("g2g4", "g2g4"), ("g4", "g2g4"),
]  # fmt: skip
REFUSED = [
    "--", "Z0", "@@@@", "0000", "P@e4", "p@e4", "N@d4", "Q@e4", "b7b8", "b8", "b7b8k",
    "b7b8p", "b8=K", "b8=P", "E1G1", "e1G1", "o-o", "O-O-O-O", "Kg1", "Kxh1", "e1e3",
    "B8=Q", "", "x" * 40, "e1g1e1g1",
]  # fmt: skip


@pytest.mark.parametrize(("text", "uci"), ACCEPTED)
def test_every_notation_of_a_legal_move_is_played_and_stored_as_uci(text: str, uci: str) -> None:
    game = Game("g1", {"white": WHITE, "black": BLACK}, {"white": "w", "black": "b"}, False,
                Clock(600_000, 0, None), initial_fen=CASTLE_OR_PROMOTE)  # fmt: skip
    record = game.play(WHITE, text, 0, 0, 0.0)
    assert record.uci == uci and [m.uci for m in game.moves] == [uci]
    assert game.turn == "black" and game.board.is_valid()


@pytest.mark.parametrize("text", REFUSED)
def test_null_moves_drops_and_other_non_moves_are_refused(text: str) -> None:
    game = Game("g1", {"white": WHITE, "black": BLACK}, {"white": "w", "black": "b"}, False,
                Clock(600_000, 0, None), initial_fen=CASTLE_OR_PROMOTE)  # fmt: skip
    with pytest.raises(Problem) as refused:
        game.play(WHITE, text, 0, 0, 0.0)
    assert refused.value.code == "illegal_move"
    assert len(game.moves) == 0 and game.turn == "white" and game.seq == 0


@pytest.mark.parametrize("text", ["--", "Z0", "@@@@", "0000"])
def test_a_null_move_cannot_pass_the_turn_out_of_check(text: str) -> None:
    game = Game("g1", {"white": WHITE, "black": BLACK}, {"white": "w", "black": "b"}, False,
                Clock(600_000, 0, None), initial_fen="4k3/8/8/8/8/8/4r3/4K3 w - - 0 1")  # fmt: skip
    with pytest.raises(Problem):
        game.play(WHITE, text, None, 0, 0.0)
    assert game.play(WHITE, "Kxe2", None, 0, 0.0).uci == "e1e2"
    assert "--" not in game.pgn()


def test_a_draw_offer_lapses_when_the_opponent_moves() -> None:
    game = new_game()
    game.act(WHITE, "draw_offer", 0.0, True)
    play(game, "e4")  # an offer made with one's own move stands for the opponent's answer
    assert game.draw_offer == "white"
    play(game, "e5")  # the opponent moved instead of accepting: declined (as on lichess)
    assert game.draw_offer is None and game.state(0.0)["draw_offer"] is None
    with pytest.raises(Problem) as refused:
        game.act(BLACK, "draw_accept", 0.0, True)
    assert refused.value.code == "no_offer"


def test_the_claimable_flag_says_when_the_claim_succeeds() -> None:
    game = new_game()
    play(game, "Nf3", "Nf6", "Ng1", "Ng8", "Nf3", "Nf6", "Ng1")  # Ng8 would claim threefold
    assert game.state(0.0)["claimable_draw"], "black may claim with the move Ng8"
    with pytest.raises(Problem):  # white has no such move: only the player to move may
        copy.deepcopy(game).act(WHITE, "claim_draw", 0.0, True)
    game.act(BLACK, "claim_draw", 0.0, True)
    assert game.termination == "threefold_repetition"


# Few pieces and no pawn moves: positions come back often and the 50 moves run out.
SHUFFLING_FENS = ["4k3/p1p5/P1P5/8/8/8/8/4K3 w - - 0 1", "r3k3/8/8/8/8/8/8/4K2R w - - 0 1"]


# (seeds whose lines offer claims)
@pytest.mark.parametrize("seed", [0, 2, 3, 4, 6, 8, 10, 11, 13, 14, 15, 16])
def test_the_claimable_flag_agrees_with_the_claim_after_every_ply(seed: int) -> None:
    fen = SHUFFLING_FENS[seed % 2]
    reference = chess.Board(fen)
    game = Game("g1", {"white": WHITE, "black": BLACK}, {"white": "w", "black": "b"}, False,
                Clock(600_000, 0, None), initial_fen=fen)  # fmt: skip
    claimable = 0
    for move in shuffling_line(random.Random(seed), fen, 130):
        reference.push(move)
        play(game, move.uci())
        if game.status != "started":
            break
        flag = game.state(0.0)["claimable_draw"]
        assert flag == reference.can_claim_draw()
        claimable += flag
        mover, other = (WHITE, BLACK) if game.turn == "white" else (BLACK, WHITE)
        other_may = reference.is_repetition(3) or reference.halfmove_clock >= 100
        for user, may in ((mover, flag), (other, other_may)):
            trial = copy.deepcopy(game)
            try:
                trial.act(user, "claim_draw", 0.0, True)
            except Problem as problem:
                assert not may and problem.code == "no_draw_claim"
            else:
                assert may and trial.result == "1/2-1/2"
    assert claimable > 0, "the line had claims to check"


@pytest.mark.parametrize(
    ("ms", "clk"),
    [
        (299_995, "0:05:00"),  # 5 ms spent: rounds back up, never "0:04:60.0"
        (299_499, "0:04:59"),
        (299_500, "0:05:00"),  # half up, as lichess (Centis.roundSeconds)
        (59_999, "0:01:00"),
        (59_499, "0:00:59"),
        (0, "0:00:00"),
        (-40, "0:00:00"),  # a flag fallen within the grace
        (3_600_000, "1:00:00"),
        (10_799_999, "3:00:00"),
    ],
)
def test_a_pgn_clock_is_whole_seconds_as_lichess_writes_it(ms: int, clk: str) -> None:
    assert pgn_clock(ms) == clk


def test_moves_charged_a_few_milliseconds_export_possible_clocks() -> None:
    game = Game("g1", {"white": WHITE, "black": BLACK}, {"white": "w", "black": "b"}, False,
                Clock(300_000, 0, None))  # fmt: skip
    for ply, (uci, now) in enumerate([("e2e4", 0.0), ("e7e5", 0.0), ("g1f3", 0.005),
                                      ("b8c6", 0.010)]):  # fmt: skip
        game.play(WHITE if ply % 2 == 0 else BLACK, uci, ply, 0, now)
    assert [m.white_ms for m in game.moves][-2:] == [299_995, 299_995]
    exported = chess.pgn.read_game(io.StringIO(game.pgn()))
    assert exported is not None
    nodes = list(exported.mainline())
    assert [n.comment for n in nodes] == ["[%clk 0:05:00]"] * 4
    assert [n.clock() for n in nodes] == [300.0] * 4
