"""A game's position without python-chess's move stack: the board and what the repetition
rules need.

``Board.push`` keeps a ``Move`` and a ``_BoardState`` per ply for ``pop`` and the repetition
checks. A live game holds them for minutes, so they outlive the young generation and every
middle collection walks them again (1,000 games: ~19k of the ~43k objects a middle
collection walked — its pauses were the move round trip's tail). Here the stack is cleared
after every push; the positions since the last capture or pawn move are kept as
transposition keys (tuples of ints, which the collector stops tracking), which is all a
repetition can be made of: those moves cannot be undone. A takeback replays the game.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable

import chess


class Position:
    __slots__ = ("_keys", "board")

    def __init__(self, fen: str = chess.STARTING_FEN, ucis: Iterable[str] = ()) -> None:
        self.board = chess.Board(fen)
        self._keys: list[Hashable] = [self.board._transposition_key()]
        for uci in ucis:
            self.push(chess.Move.from_uci(uci))

    def push(self, move: chess.Move) -> None:
        """Play a legal ``move``."""
        board = self.board
        board.push(move)
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
        seen = Counter(self._keys)
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
