"""A game's position without python-chess's move stack: the board and what the repetition
rules need.

``Board.push`` keeps a ``Move`` and a ``_BoardState`` per ply for ``pop`` and the repetition
checks. A live game holds them for minutes, so they outlive the young generation and every
middle collection walks them again (1,000 games: ~19k of the ~43k objects a middle
collection walked — its pauses were the move round trip's tail). Here the stack is cleared
after every push; the positions since the last capture or pawn move are kept as
transposition keys (tuples of ints, which the collector stops tracking), which is all a
repetition can be made of: those moves cannot be undone. A takeback replays the game.

The FEN sent with every move is built from the piece bitboards (~9 µs) rather than by
python-chess's square-by-square ``board_fen`` (~26 µs, 4 % of a move's CPU time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable

import chess

EMPTY_RUNS = [("1" * n, str(n)) for n in range(8, 1, -1)]  # "11" -> "2" after longer runs
CASTLING = (("K", chess.BB_H1), ("Q", chess.BB_A1), ("k", chess.BB_H8), ("q", chess.BB_A8))
SYMBOLS = [[chess.Piece(t, color).symbol() for t in chess.PIECE_TYPES] for color in chess.COLORS]


class Position:
    __slots__ = ("_keys", "board")

    def __init__(self, fen: str = chess.STARTING_FEN, ucis: Iterable[str] = ()) -> None:
        self.board = chess.Board(fen)
        self._keys: list[Hashable] = [self.board._transposition_key()]
        for uci in ucis:
            self.push(chess.Move.from_uci(uci))

    def push(self, move: chess.Move) -> None:
        """Play a legal ``move``."""
        self.board.push(move)
        self._moved()

    def play(self, move: chess.Move) -> str:
        """Play a legal ``move``; returns its SAN (one push for both)."""
        san = self.board.san_and_push(move)
        self._moved()
        return san

    def _moved(self) -> None:
        board = self.board
        board.clear_stack()
        if board.halfmove_clock == 0:  # a capture or pawn move: no earlier position returns
            self._keys.clear()
        self._keys.append(board._transposition_key())

    def repetitions(self) -> int:
        """How often the current position has stood (this time included)."""
        return self._keys.count(self._keys[-1])

    def can_claim_threefold(self) -> bool:
        """The position stands for the third time, or the side to move can make it so with
        a move (FIDE 9.2: the claim is announced with that move)."""
        if self.repetitions() >= 3:
            return True
        if len(self._keys) < 5:  # a position's third time needs four reversible plies more
            return False
        # One move reaches a position with the other side to move: every second key back
        # from the last but one. Unless one of those stood twice, no move makes a third time
        # (this keeps the check cheap enough for every move's state).
        seen = Counter(self._keys[-2::-2])
        if max(seen.values()) < 2:
            return False
        board = self.board
        for move in board.generate_legal_moves():
            if board.is_zeroing(move):
                continue  # the position after it is new
            board.push(move)
            try:
                if seen[board._transposition_key()] >= 2:
                    return True
            finally:
                board.pop()
        return False

    def fen(self) -> str:
        """``board.fen()`` (en passant square shown only when the capture is legal)."""
        board = self.board
        ep = board.ep_square if board.has_legal_en_passant() else None
        return (
            f"{self.board_fen()} {'w' if board.turn else 'b'} {self._castling()}"
            f" {chess.SQUARE_NAMES[ep] if ep is not None else '-'}"
            f" {board.halfmove_clock} {board.fullmove_number}"
        )

    def _castling(self) -> str:
        board = self.board
        if board.chess960:
            return board.castling_xfen()
        rights = board.clean_castling_rights()  # standard chess: rooks in the corners only
        return "".join(letter for letter, rook in CASTLING if rights & rook) or "-"

    def board_fen(self) -> str:
        board = self.board
        cells = ["1"] * 64  # FEN order: a8 first, so square s goes to s ^ 56
        kinds = (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings)
        for color, symbols in zip(chess.COLORS, SYMBOLS, strict=True):
            occupied = board.occupied_co[color]
            for symbol, pieces in zip(symbols, kinds, strict=True):
                mask = pieces & occupied
                while mask:
                    low = mask & -mask
                    cells[(low.bit_length() - 1) ^ 56] = symbol
                    mask ^= low
        text = "/".join(["".join(cells[rank : rank + 8]) for rank in range(0, 64, 8)])
        for run, count in EMPTY_RUNS:
            text = text.replace(run, count)
        return text
