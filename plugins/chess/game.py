"""One game: the position (python-chess), the clocks and the rules of how a game ends.

Pure logic, no I/O: the service persists each change before it is acknowledged. Moves are
UCI or SAN and carry the ply they are meant for, so a replayed or stale message is refused
instead of being played twice.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import chess
import chess.pgn

from syncstream.sdk import Problem

from .clock import Clock, TimeUp
from .position import Position

SIDES = ("white", "black")
MAX_MOVE_CHARS = 16  # the longest SAN is 7 characters (Qa1xb2+); longer text is no move
CLAIM_AFTER_SECONDS = 30.0  # an absent opponent's last action must be this old to claim


def opposite(side: str) -> str:
    return "black" if side == "white" else "white"


def parse_move(board: chess.Board, text: str) -> chess.Move:
    """The legal move ``text`` names on ``board``, in UCI (castling also as king takes rook,
    ``e1h1``, read as ``e1g1``) or SAN (``O-O`` or ``0-0``, promotions with or without
    ``=``). python-chess also reads null moves (``0000``, ``--``, ``Z0``, ``@@@@``) and drops
    (``P@e4``): they are no moves in chess and are refused like any illegal move."""
    text = text.strip()
    move = chess.Move.null()
    if len(text) <= MAX_MOVE_CHARS:
        try:
            move = board.parse_uci(text)  # legal or null; normalises e1h1 to e1g1
        except ValueError:
            with contextlib.suppress(ValueError):
                move = board.parse_san(text)
    if not move or move.drop is not None or not board.is_legal(move):
        raise Problem(422, "illegal_move", f"{text[:16]!r} is not a legal move here")
    return move


class Replayed(Exception):
    """A player's retry of a move they already played (same ply, same move): nothing to do."""


class Move(NamedTuple):
    uci: str
    san: str
    white_ms: int
    black_ms: int
    at: float  # wall clock


class MoveList:
    """A game's moves column by column: five lists of strings and numbers rather than an
    object per move, so long games add nothing for the garbage collector to walk (its
    pauses are the tail of the move round trip)."""

    __slots__ = ("_columns",)

    def __init__(self) -> None:
        self._columns: tuple[list[Any], ...] = ([], [], [], [], [])

    def __len__(self) -> int:
        return len(self._columns[0])

    def __getitem__(self, index: int) -> Move:
        uci, san, white_ms, black_ms, at = self._columns
        return Move(uci[index], san[index], white_ms[index], black_ms[index], at[index])

    def __iter__(self) -> Iterator[Move]:
        return map(Move, *self._columns)

    def append(self, move: Move) -> None:
        for column, value in zip(self._columns, move, strict=True):
            column.append(value)

    def truncate(self, length: int) -> None:
        for column in self._columns:
            del column[length:]

    def ucis(self) -> list[str]:
        return list(self._columns[0])


@dataclass
class Game:
    id: str
    players: dict[str, str]  # side -> user id
    names: dict[str, str]  # side -> username
    rated: bool
    clock: Clock
    initial_fen: str = chess.STARTING_FEN
    position: Position = field(init=False)
    moves: MoveList = field(default_factory=MoveList)
    status: str = "started"
    result: str = "*"
    termination: str | None = None
    seq: int = 0
    draw_offer: str | None = None
    takeback_offer: str | None = None
    created_at: float = field(default_factory=time.time)
    seen: dict[str, float] = field(default_factory=dict)  # side -> monotonic last activity

    def __post_init__(self) -> None:
        self.position = Position(self.initial_fen)

    @property
    def board(self) -> chess.Board:
        return self.position.board

    # -- who --------------------------------------------------------------------------------

    def side_of(self, user_id: str) -> str | None:
        for side in SIDES:
            if self.players[side] == user_id:
                return side
        return None

    def player(self, user_id: str) -> str:
        side = self.side_of(user_id)
        if side is None:
            raise Problem(403, "not_a_player", "spectators cannot act in a game")
        return side

    @property
    def turn(self) -> str:
        return "white" if self.board.turn == chess.WHITE else "black"

    def _live(self) -> None:
        if self.status != "started":
            raise Problem(409, "game_over", f"the game is over ({self.result}, {self.termination})")

    # -- moves ------------------------------------------------------------------------------

    def parse(self, text: str) -> chess.Move:
        return parse_move(self.board, text)

    def play(self, user_id: str, text: str, ply: int | None, lag_ms: int, now: float) -> Move:
        """Play a move for ``user_id``; raises a problem and changes nothing if it may not.

        ``ply`` is the player's idempotency key for the move: their retry of a move they
        played at that ply raises :class:`Replayed` (even after the game ended); the same
        ply from their opponent, or with another move, is refused as stale."""
        side = self.side_of(user_id)
        if side is not None and ply is not None and self._played(side, ply, text):
            raise Replayed
        self._live()
        side = self.player(user_id)
        self.seen[side] = now
        if ply is not None and ply != len(self.moves):  # before the turn: a retry is stale
            raise Problem(409, "stale_move", self._stale(side, ply))
        if side != self.turn:
            raise Problem(409, "not_your_turn", "it is not your turn")
        move = self.parse(text)
        if len(self.moves) >= 2:  # clocks run once both sides have moved (as on lichess)
            try:
                self.clock.charge(side, now, lag_ms)
            except TimeUp:
                self._flag(side)
                raise Problem(409, "game_over", "your time ran out before the move") from None
        san = self.position.play(move)
        clocks = self.clock.remaining
        record = Move(move.uci(), san, clocks["white"], clocks["black"], time.time())
        self.moves.append(record)
        if self.draw_offer == opposite(side):  # the opponent's move declines it (as lichess)
            self.draw_offer = None
        self.takeback_offer = None
        if len(self.moves) >= 2:
            self.clock.start(self.turn, now)
        self._automatic_end(mate=san.endswith("#"))
        self.seq += 1
        return record

    def _played(self, side: str, ply: int, text: str) -> bool:
        """Whether ``side`` played the move ``text`` names at ``ply`` (read on the board as
        it stood then, so any notation of the same move counts)."""
        if not 0 <= ply < len(self.moves) or self._mover(ply) != side:
            return False
        before = Position(self.initial_fen, self.moves.ucis()[:ply])
        try:
            return parse_move(before.board, text).uci() == self.moves[ply].uci
        except Problem:
            return False

    def _stale(self, side: str, ply: int) -> str:
        """Why a move meant for ``ply`` comes too late or too early."""
        if not 0 <= ply < len(self.moves):
            return f"the game is at ply {len(self.moves)}, not {ply}"
        played = self.moves[ply].uci
        if self._mover(ply) != side:
            return f"ply {ply} was your opponent's move ({played})"
        return f"ply {ply} was already played with another move ({played})"

    def _mover(self, ply: int) -> str:
        first = "white" if chess.Board(self.initial_fen).turn == chess.WHITE else "black"
        return first if ply % 2 == 0 else opposite(first)

    def _automatic_end(self, mate: bool) -> None:
        """End the game if the move just played ended it (``mate``: its SAN says so)."""
        board = self.board
        if mate:
            self.end("1-0" if board.turn == chess.BLACK else "0-1", "checkmate")
        elif board.is_stalemate():
            self.end("1/2-1/2", "stalemate")
        elif board.is_insufficient_material():
            self.end("1/2-1/2", "insufficient_material")
        elif self.position.repetitions() >= 5:
            self.end("1/2-1/2", "fivefold_repetition")
        elif board.is_seventyfive_moves():
            self.end("1/2-1/2", "seventyfive_moves")

    def stop(self, termination: str) -> None:
        """End the game without a result (an operator's order); no rating changes."""
        self._live()
        self.end("*", termination)
        self.seq += 1

    def end(self, result: str, termination: str) -> None:
        self.status, self.result, self.termination = "ended", result, termination
        self.clock.running = None
        self.draw_offer = self.takeback_offer = None

    # -- time -------------------------------------------------------------------------------

    def check_flag(self, now: float) -> bool:
        """End the game if the running clock fell; True if it did."""
        if self.status == "started" and self.clock.flagged(now) and self.clock.running:
            self.clock.remaining[self.clock.running] = 0
            self._flag(self.clock.running)
            self.seq += 1
            return True
        return False

    def _flag(self, side: str) -> None:
        winner = opposite(side)
        color = chess.WHITE if winner == "white" else chess.BLACK
        if self.board.has_insufficient_material(color):
            self.end("1/2-1/2", "timeout_vs_insufficient_material")
        else:
            self.end("1-0" if winner == "white" else "0-1", "timeout")

    # -- other actions ----------------------------------------------------------------------

    def act(self, user_id: str, action: str, now: float, opponent_present: bool) -> None:
        """resign, abort, draw_offer / draw_accept / draw_decline, takeback_offer /
        takeback_accept / takeback_decline, claim_draw, claim_victory."""
        self._live()
        side = self.player(user_id)
        self.seen[side] = now
        other = opposite(side)
        if action == "resign":
            self.end("0-1" if side == "white" else "1-0", "resign")
        elif action == "abort":
            if len(self.moves) >= 2:
                raise Problem(
                    409, "too_late_to_abort", "a game can be aborted before both sides moved"
                )
            self.end("*", "aborted")
        elif action == "draw_offer":
            if self.draw_offer == other:
                self.end("1/2-1/2", "agreement")
            else:
                self.draw_offer = side
        elif action == "draw_accept":
            if self.draw_offer != other:
                raise Problem(409, "no_offer", "there is no draw offer to accept")
            self.end("1/2-1/2", "agreement")
        elif action == "draw_decline":
            if self.draw_offer != other:
                raise Problem(409, "no_offer", "there is no draw offer to decline")
            self.draw_offer = None
        elif action == "takeback_offer":
            if not self._own_moves(side):
                raise Problem(409, "nothing_to_take_back", "you have made no move yet")
            self.takeback_offer = side
        elif action in ("takeback_accept", "takeback_decline"):
            if self.takeback_offer != other:
                raise Problem(409, "no_offer", "there is no takeback offer")
            if action == "takeback_accept":
                self._take_back(other, now)
            self.takeback_offer = None
        elif action == "claim_draw":
            termination = self._draw_claim(side)
            if termination is None:
                raise Problem(409, "no_draw_claim", "neither threefold repetition nor 50 moves")
            self.end("1/2-1/2", termination)
        elif action == "claim_victory":
            if opponent_present:
                raise Problem(409, "opponent_present", "your opponent is still connected")
            waited = now - self.seen.get(other, float("-inf"))
            if waited < CLAIM_AFTER_SECONDS:
                raise Problem(
                    409,
                    "too_early_to_claim",
                    f"your opponent was active {waited:.0f} s ago;"
                    f" claim after {CLAIM_AFTER_SECONDS:.0f} s",
                )
            self.end("1-0" if side == "white" else "0-1", "abandoned")
        else:
            raise Problem(422, "unknown_action", f"unknown action {action[:32]!r}")
        self.seq += 1

    def _draw_claim(self, side: str) -> str | None:
        """How a draw claim by ``side`` would end the game (None: it would be refused).

        Either player may claim when the position stood three times or 50 moves passed; the
        player to move also when a move of theirs makes it so (FIDE 9.2 and 9.3: the claim
        is announced with that move, which is then not played)."""
        if self.position.repetitions() >= 3:
            return "threefold_repetition"
        if self.board.halfmove_clock >= 100:
            return "fifty_moves"
        if side != self.turn:
            return None
        if self.position.can_claim_threefold():
            return "threefold_repetition"
        if self.board.can_claim_fifty_moves():
            return "fifty_moves"
        return None

    def _own_moves(self, side: str) -> int:
        """How many moves ``side`` made (moves alternate from the initial side to move)."""
        return sum(1 for ply in range(len(self.moves)) if self._mover(ply) == side)

    def _take_back(self, side: str, now: float) -> None:
        """Undo ``side``'s last move (and the reply to it, if there was one)."""
        undo = 1 if self.turn != side else 2
        undo = min(undo, len(self.moves))
        self.position = Position(self.initial_fen, self.moves.ucis()[: len(self.moves) - undo])
        self.moves.truncate(len(self.moves) - undo)
        before = self.moves[-1] if self.moves else None
        self.clock.remaining = (
            {"white": before.white_ms, "black": before.black_ms}
            if before
            else {"white": self.clock.base_ms, "black": self.clock.base_ms}
        )
        self.clock.running = None
        if len(self.moves) >= 2:
            self.clock.start(self.turn, now)

    # -- views ------------------------------------------------------------------------------

    def state(self, now: float) -> dict[str, Any]:
        last = self.moves[-1] if self.moves else None
        return {
            "id": self.id,
            "seq": self.seq,
            "status": self.status,
            "result": self.result,
            "termination": self.termination,
            "fen": self.position.fen(),
            "turn": self.turn,
            "ply": len(self.moves),
            "last_move": None if last is None else {"uci": last.uci, "san": last.san},
            "check": self.board.is_check(),
            "clocks": self.clock.state(now),
            "clock_running": self.clock.running,
            "draw_offer": self.draw_offer,
            "takeback_offer": self.takeback_offer,
            # Exactly when claim_draw succeeds for the player to move (their opponent may
            # claim only on the position as it stands; see _draw_claim).
            "claimable_draw": self.status == "started" and self._draw_claim(self.turn) is not None,
        }

    def full(self, now: float) -> dict[str, Any]:
        return self.state(now) | {
            "white": {"id": self.players["white"], "username": self.names["white"]},
            "black": {"id": self.players["black"], "username": self.names["black"]},
            "rated": self.rated,
            "clock": {"base_ms": self.clock.base_ms, "increment_ms": self.clock.increment_ms}
            | (
                {"days_per_move": self.clock.per_move_ms / 86_400_000}
                if self.clock.per_move_ms
                else {}
            ),
            "initial_fen": self.initial_fen,
            "moves": self.moves.ucis(),
            "created_at": self.created_at,
        }

    def pgn(self) -> str:
        game = chess.pgn.Game()
        board = chess.Board(self.initial_fen)
        if self.initial_fen != chess.STARTING_FEN:
            game.setup(board)
        game.headers.update(
            {
                "Event": "Rated game" if self.rated else "Casual game",
                "Site": "SyncStream",
                "Date": time.strftime("%Y.%m.%d", time.gmtime(self.created_at)),
                "White": self.names["white"],
                "Black": self.names["black"],
                "Result": self.result,
                "TimeControl": f"1/{self.clock.per_move_ms // 1000}"
                if self.clock.per_move_ms
                else f"{self.clock.base_ms // 1000}+{self.clock.increment_ms // 1000}",
                "Termination": self.termination or "unterminated",
            }
        )
        node: chess.pgn.GameNode = game
        for record in self.moves:
            move = chess.Move.from_uci(record.uci)
            mover = "white" if board.turn == chess.WHITE else "black"
            board.push(move)
            node = node.add_variation(move)
            left = record.white_ms if mover == "white" else record.black_ms
            node.comment = f"[%clk {pgn_clock(left)}]"
        out = io.StringIO()
        print(game, file=out, end="\n")
        return out.getvalue()


def pgn_clock(ms: int) -> str:
    """A ``[%clk]`` value as lichess writes it: whole seconds, rounded to the nearest
    (half up), as ``H:MM:SS`` -- 299,995 ms is ``0:05:00``, never a 60th second."""
    seconds = (max(0, ms) + 500) // 1000
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
