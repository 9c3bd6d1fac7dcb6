"""Challenges and seeks: create, accept (the game starts, with the challenge's id as lichess
does), decline, cancel. Shared by our API and the lichess-compatible one.

Bus events: ``chess.challenge`` (a new challenge), ``chess.challenge_closed`` (declined or
canceled); a game's start is the service's ``chess.game_started``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import chess

from syncstream.sdk import Problem, User

from .service import ChessService

CLOSED = {"decline": "declined", "cancel": "canceled"}


class Lobby:
    def __init__(self, service: ChessService) -> None:
        self.service, self.store = service, service.store

    async def challenge(
        self,
        user: User,
        username: str | None,
        *,
        base_ms: int,
        increment_ms: int,
        rated: bool,
        color: str,
        fen: str | None,
        days: int | None,
    ) -> dict[str, Any]:
        """Challenge ``username``, or post an open seek (``username`` None)."""
        target_id = None
        if username is not None:
            target = await self.service.auth.find_user(username)
            if target is None:
                raise Problem(404, "user_not_found", "no such user")
            if target.id == user.id:
                raise Problem(422, "challenge_self", "you cannot play yourself")
            target_id = target.id
        try:
            board = chess.Board(fen or chess.STARTING_FEN)
        except ValueError:
            raise Problem(422, "invalid_fen", "that FEN is not a position") from None
        if not board.is_valid() or board.is_game_over():
            raise Problem(422, "invalid_fen", "the position is not legal or already over")
        if rated and board.fen() != chess.STARTING_FEN:
            raise Problem(
                422, "rated_custom_position", "games from a custom position cannot be rated"
            )
        if base_ms == 0 and increment_ms == 0 and not days:
            raise Problem(422, "invalid_clock", "a clock needs a base time or an increment")
        per_move = days * 86_400_000 if days else None
        row = {
            "id": secrets.token_hex(16),
            "challenger_id": user.id,
            "target_id": target_id,
            "base_ms": per_move or base_ms,
            "increment_ms": 0 if per_move else increment_ms,
            "rated": int(rated),
            "color": color,
            "initial_fen": board.fen(),
            "status": "pending",
            "game_id": None,
            "created_at": time.time(),
            "per_move_ms": per_move,
        }
        await self.insert(row)
        if target_id is not None:
            await self.service.gateway.publish(
                f"user:{target_id}", {"type": "chess.challenge", "challenge": row}
            )
        await self.service.bus.fire("chess.challenge", {"challenge": row})
        return row

    async def insert(self, row: dict[str, Any]) -> None:
        await self.store.execute(
            f"INSERT INTO chess_challenges ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            *row.values(),
        )

    async def mine(self, user: User) -> list[dict[str, Any]]:
        """Open seeks, and pending challenges to or from ``user``."""
        return await self.store.fetchall(
            "SELECT * FROM chess_challenges WHERE status = 'pending' AND (target_id IS NULL"
            " OR target_id = ? OR challenger_id = ?) ORDER BY created_at DESC LIMIT 200",
            user.id,
            user.id,
        )

    async def pending(self, challenge_id: str, user: User) -> dict[str, Any]:
        """A pending challenge ``user`` may see (404 otherwise, 409 once closed)."""
        row = await self.store.fetchone(
            "SELECT * FROM chess_challenges WHERE id = ?", challenge_id[:64]
        )
        if row is None or (
            row["target_id"] not in (None, user.id) and row["challenger_id"] != user.id
        ):
            raise Problem(404, "challenge_not_found", "no such challenge")
        if row["status"] != "pending":
            raise Problem(409, "challenge_closed", f"the challenge was {row['status']}")
        return row

    async def accept(self, challenge_id: str, user: User) -> dict[str, Any]:
        row = await self.pending(challenge_id, user)
        if row["challenger_id"] == user.id:
            raise Problem(422, "challenge_self", "you cannot accept your own challenge")
        return await self.start_from(row, user)

    async def start_from(self, row: dict[str, Any], user: User) -> dict[str, Any]:
        """Start the game of a pending challenge or seek that ``user`` accepts."""
        service = self.service
        taken = await self.store.execute(
            "UPDATE chess_challenges SET status = 'accepted', game_id = ? WHERE id = ?"
            " AND status = 'pending'",
            row["id"],
            row["id"],
        )
        if not taken:
            raise Problem(409, "challenge_closed", "someone else accepted it first")
        challenger = await service.auth.get_user(row["challenger_id"])
        color = row["color"] if row["color"] != "random" else secrets.choice(("white", "black"))
        white, black = (challenger, user) if color == "white" else (user, challenger)
        game = await service.create(
            white, black, rated=bool(row["rated"]), base_ms=row["base_ms"],
            increment_ms=row["increment_ms"], fen=row["initial_fen"],
            per_move_ms=row["per_move_ms"], game_id=row["id"],
        )  # fmt: skip
        full = game.full(time.monotonic())
        for user_id in game.players.values():
            await service.gateway.publish(f"user:{user_id}", {"type": "chess.game", "game": full})
        return full

    async def close(self, challenge_id: str, user: User, action: str) -> dict[str, Any]:
        """``decline`` (the challenged) or ``cancel`` (the challenger) a pending challenge."""
        row = await self.pending(challenge_id, user)
        mine = row["challenger_id"] == user.id
        if (action == "cancel") != mine:
            raise Problem(
                403,
                "forbidden",
                f"only the {'challenger' if action == 'cancel' else 'challenged'} may {action}",
            )
        status = CLOSED[action]
        closed = await self.store.execute(
            "UPDATE chess_challenges SET status = ? WHERE id = ? AND status = 'pending'",
            status,
            row["id"],
        )
        if not closed:
            raise Problem(409, "challenge_closed", "the challenge was closed meanwhile")
        row = row | {"status": status}
        await self.service.bus.fire("chess.challenge_closed", {"challenge": row})
        return row
