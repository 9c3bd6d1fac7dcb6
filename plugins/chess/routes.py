"""The chess API under ``/api/chess``: challenges and seeks, games, moves, PGN, streams."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

import chess
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from syncstream import Call, Problem, User
from syncstream.api import AuthLevel, ScopedApi
from syncstream.audit import Audit

from .glicko2 import PROVISIONAL_RD
from .service import ChessService

GAME = "/games/{game_id:[0-9a-f]{32}}"
CHALLENGE = "/challenges/{challenge_id:[0-9a-f]{32}}"
ACTIONS = (
    "resign", "abort", "draw_offer", "draw_accept", "draw_decline", "takeback_offer",
    "takeback_accept", "takeback_decline", "claim_draw", "claim_victory",
)  # fmt: skip


class ChallengeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str | None = Field(None, max_length=64, description="Whom; none: an open seek")
    base_seconds: float = Field(300, ge=0, le=3 * 3600)
    increment_seconds: float = Field(0, ge=0, le=180)
    rated: bool = False
    color: Literal["white", "black", "random"] = "random"
    fen: str | None = Field(None, max_length=100, description="Start from this position")
    days: int | None = Field(None, ge=1, le=14, description="Correspondence: days per move")


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_seconds: float = Field(300, ge=0, le=3 * 3600)
    increment_seconds: float = Field(0, ge=0, le=180)
    rated: bool = True
    rating_range: float = Field(300, ge=0, le=3000, description="How far from your rating")


class MoveQuery(BaseModel):
    ply: int | None = Field(None, ge=0, description="The ply this move is for (refuses replays)")
    lag_ms: int = Field(0, ge=0, le=10_000, description="Your measured network lag")


def register(
    api: ScopedApi, chess_service: ChessService, audit: Audit, *, public_reads: bool = True
) -> None:
    """The routes; with ``public_reads`` anyone may watch games and read ratings without a
    token (``plugins.chess.public_reads``)."""
    service, store = chess_service, chess_service.store
    reads: AuthLevel = "public" if public_reads else "user"

    @api.route("POST", "/challenges", body=ChallengeIn, status=201)
    async def challenge(call: Call[ChallengeIn]) -> dict[str, Any]:
        """Challenge a user, or post an open seek anyone may accept."""
        body = call.body
        target_id = None
        if body.username is not None:
            target = await service.auth.find_user(body.username)
            if target is None:
                raise Problem(404, "user_not_found", "no such user")
            if target.id == call.user.id:
                raise Problem(422, "challenge_self", "you cannot play yourself")
            target_id = target.id
        fen = body.fen or chess.STARTING_FEN
        try:
            board = chess.Board(fen)
        except ValueError:
            raise Problem(422, "invalid_fen", "that FEN is not a position") from None
        if not board.is_valid() or board.is_game_over():
            raise Problem(422, "invalid_fen", "the position is not legal or already over")
        if body.rated and board.fen() != chess.STARTING_FEN:
            raise Problem(
                422, "rated_custom_position", "games from a custom position cannot be rated"
            )
        if body.base_seconds == 0 and body.increment_seconds == 0 and not body.days:
            raise Problem(422, "invalid_clock", "a clock needs a base time or an increment")
        per_move = body.days * 86_400_000 if body.days else None
        row = {
            "id": secrets.token_hex(16),
            "challenger_id": call.user.id,
            "target_id": target_id,
            "base_ms": per_move or int(body.base_seconds * 1000),
            "increment_ms": 0 if per_move else int(body.increment_seconds * 1000),
            "rated": int(body.rated),
            "color": body.color,
            "initial_fen": board.fen(),
            "status": "pending",
            "game_id": None,
            "created_at": time.time(),
            "per_move_ms": per_move,
        }
        await store.execute(
            f"INSERT INTO chess_challenges ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            *row.values(),
        )
        if target_id is not None:
            await service.gateway.publish(
                f"user:{target_id}", {"type": "chess.challenge", "challenge": row}
            )
        await service.bus.fire("chess.challenge", {"challenge": row})
        return row

    @api.route("GET", "/challenges")
    async def challenges(call: Call[None]) -> dict[str, Any]:
        """Open seeks, and challenges to or from you."""
        rows = await store.fetchall(
            "SELECT * FROM chess_challenges WHERE status = 'pending' AND (target_id IS NULL"
            " OR target_id = ? OR challenger_id = ?) ORDER BY created_at DESC LIMIT 200",
            call.user.id,
            call.user.id,
        )
        return {"challenges": rows}

    async def pending(call: Call[None]) -> dict[str, Any]:
        row = await store.fetchone(
            "SELECT * FROM chess_challenges WHERE id = ?", call.param("challenge_id")
        )
        if row is None or (
            row["target_id"] not in (None, call.user.id) and row["challenger_id"] != call.user.id
        ):
            raise Problem(404, "challenge_not_found", "no such challenge")
        if row["status"] != "pending":
            raise Problem(409, "challenge_closed", f"the challenge was {row['status']}")
        return row

    @api.route("POST", CHALLENGE + "/accept", status=201)
    async def accept(call: Call[None]) -> dict[str, Any]:
        """Accept: the game starts; its id is in the answer and on both players' topics."""
        row = await pending(call)
        if row["challenger_id"] == call.user.id:
            raise Problem(422, "challenge_self", "you cannot accept your own challenge")
        return await start_from(row, call.user)

    async def start_from(row: dict[str, Any], user: User) -> dict[str, Any]:
        taken = await store.execute(
            "UPDATE chess_challenges SET status = 'accepted' WHERE id = ? AND status = 'pending'",
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
            per_move_ms=row["per_move_ms"],
        )  # fmt: skip
        await store.execute(
            "UPDATE chess_challenges SET game_id = ? WHERE id = ?", game.id, row["id"]
        )
        full = game.full(time.monotonic())
        for user_id in game.players.values():
            await service.gateway.publish(f"user:{user_id}", {"type": "chess.game", "game": full})
        return full

    @api.route("POST", "/pair", body=PairIn)
    async def pair(call: Call[PairIn]) -> dict[str, Any]:
        """Quick pairing: join the oldest open seek with this time control whose player is
        within ``rating_range`` of you (and you of theirs); else post such a seek and wait
        for the game on ``user:<your id>``."""
        body = call.body
        mine, _ = await service.rating(call.user.id)
        base_ms, increment_ms = int(body.base_seconds * 1000), int(body.increment_seconds * 1000)
        low, high = mine.rating - body.rating_range, mine.rating + body.rating_range
        match = await store.fetchone(
            "SELECT c.* FROM chess_challenges c LEFT JOIN chess_ratings r"
            " ON r.user_id = c.challenger_id WHERE c.status = 'pending' AND c.target_id IS NULL"
            " AND c.base_ms = ? AND c.increment_ms = ? AND c.rated = ? AND c.challenger_id <> ?"
            " AND c.initial_fen = ? AND c.per_move_ms IS NULL"
            " AND COALESCE(r.rating, 1500) BETWEEN ? AND ?"
            " AND (c.rating_min IS NULL OR c.rating_min <= ?)"
            " AND (c.rating_max IS NULL OR c.rating_max >= ?)"
            " ORDER BY c.created_at LIMIT 1",
            base_ms, increment_ms, int(body.rated), call.user.id, chess.STARTING_FEN,
            low, high, mine.rating, mine.rating,
        )  # fmt: skip
        if match is not None:
            return {"game": await start_from(match, call.user)}
        row = {
            "id": secrets.token_hex(16), "challenger_id": call.user.id, "target_id": None,
            "base_ms": base_ms, "increment_ms": increment_ms, "rated": int(body.rated),
            "color": "random", "initial_fen": chess.STARTING_FEN, "status": "pending",
            "game_id": None, "created_at": time.time(), "rating_min": low, "rating_max": high,
        }  # fmt: skip
        await store.execute(
            f"INSERT INTO chess_challenges ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            *row.values(),
        )
        return {"seek": row}

    for action, status in (("decline", "declined"), ("cancel", "canceled")):

        async def close(call: Call[None], status: str = status, action: str = action) -> None:
            row = await pending(call)
            mine = row["challenger_id"] == call.user.id
            if (action == "cancel") != mine:
                raise Problem(
                    403,
                    "forbidden",
                    f"only the {'challenger' if action == 'cancel' else 'challenged'} may {action}",
                )
            await store.execute(
                "UPDATE chess_challenges SET status = ? WHERE id = ?", status, row["id"]
            )

        api.route("POST", CHALLENGE + f"/{action}", summary=f"{action.title()} a challenge")(close)

    @api.route("GET", "/games")
    async def my_games(call: Call[None]) -> dict[str, Any]:
        """Your games, newest first."""
        rows = await store.fetchall(
            "SELECT id, white_id, black_id, status, result, termination, rated, created_at"
            " FROM chess_games WHERE white_id = ? OR black_id = ?"
            " ORDER BY created_at DESC LIMIT 100",
            call.user.id,
            call.user.id,
        )
        return {"games": rows}

    @api.route("GET", "/games/live", auth="admin")
    async def live_games(call: Call[None]) -> dict[str, Any]:
        """Games in progress on every node, newest first, with the players (admin)."""
        rows = await store.fetchall(
            "SELECT g.id, g.rated, g.created_at, w.username AS white, b.username AS black"
            " FROM chess_games g JOIN users w ON w.id = g.white_id"
            " JOIN users b ON b.id = g.black_id WHERE g.status = 'started'"
            " ORDER BY g.created_at DESC LIMIT 500"
        )
        return {"games": rows}

    @api.route("GET", "/leaderboard", auth=reads)
    async def leaderboard(call: Call[None]) -> dict[str, Any]:
        """The best established ratings (provisional ones, RD >= 110, are left out)."""
        rows = await store.fetchall(
            "SELECT u.username, r.rating, r.rd, r.games FROM chess_ratings r JOIN users u"
            " ON u.id = r.user_id WHERE r.rd < ? ORDER BY r.rating DESC LIMIT 100",
            PROVISIONAL_RD,
        )
        return {"players": [r | {"rating": round(r["rating"]), "rd": round(r["rd"])} for r in rows]}

    @api.route("GET", "/ratings/{username}", auth=reads)
    async def rating(call: Call[None]) -> dict[str, Any]:
        """A player's Glicko-2 rating (1500 and provisional before any rated game)."""
        user = await service.auth.find_user(call.param("username"))
        if user is None:
            raise Problem(404, "user_not_found", "no such user")
        value, games = await service.rating(user.id)
        return {
            "username": user.username, "rating": round(value.rating), "rd": round(value.rd),
            "volatility": value.vol, "games": games, "provisional": value.provisional,
        }  # fmt: skip

    @api.route("GET", GAME, auth=reads)
    async def get_game(call: Call[None]) -> dict[str, Any]:
        """The full state: players, clocks, position, moves (anyone may watch)."""
        game = await service.get(call.param("game_id"))
        return game.full(time.monotonic())

    @api.route("GET", GAME + "/pgn", auth=reads)
    async def pgn(call: Call[None]) -> web.Response:
        """The game as PGN with headers and clock comments."""
        game = await service.get(call.param("game_id"))
        return web.Response(text=game.pgn(), content_type="application/x-chess-pgn")

    @api.route("POST", GAME + "/move/{move}", query=MoveQuery)
    async def move(call: Call[None]) -> dict[str, Any]:
        """Play a move (UCI or SAN) for bots and HTTP clients."""
        q: MoveQuery = call.query
        return await service.move(
            call.user, call.param("game_id"), call.param("move"), q.ply, q.lag_ms
        )

    for name in ACTIONS:

        async def act(call: Call[None], name: str = name) -> dict[str, Any]:
            return await service.act(call.user, call.param("game_id"), name)

        api.route("POST", GAME + f"/{name}", summary=name.replace("_", " ").title())(act)

    @api.route("POST", GAME + "/stop", auth="admin")
    async def stop(call: Call[None]) -> dict[str, Any]:
        """End a game in progress without a result (admin; audited)."""
        state = await service.stop(call.user, call.param("game_id"))
        await audit.record(
            "chess.game_stopped", actor_id=call.user.id, target=call.param("game_id"), ip=call.ip
        )
        return state

    @api.route("GET", GAME + "/stream", auth=reads)
    async def stream(call: Call[None]) -> web.StreamResponse:
        """NDJSON: ``gameFull`` then a ``gameState`` per change (like lichess's Board API)."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(call.request)
        async for event in service.stream(call.param("game_id")):
            await response.write((json.dumps(event) + "\n").encode() if event else b"\n")
        await response.write_eof()
        return response
