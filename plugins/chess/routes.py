"""The chess API under ``/api/chess``: challenges and seeks, games, moves, PGN, streams."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

import chess
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Audit, AuthLevel, Call, Problem, ScopedApi

from . import board
from .glicko2 import PROVISIONAL_RD
from .lobby import CLOSED, Lobby
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
    lobby = Lobby(service)
    reads: AuthLevel = "public" if public_reads else "user"

    @api.route("POST", "/challenges", body=ChallengeIn, status=201)
    async def challenge(call: Call[ChallengeIn]) -> dict[str, Any]:
        """Challenge a user, or post an open seek anyone may accept."""
        body = call.body
        return await lobby.challenge(
            call.user, body.username, base_ms=int(body.base_seconds * 1000),
            increment_ms=int(body.increment_seconds * 1000), rated=body.rated,
            color=body.color, fen=body.fen, days=body.days,
        )  # fmt: skip

    @api.route("GET", "/challenges")
    async def challenges(call: Call[None]) -> dict[str, Any]:
        """Open seeks, and challenges to or from you."""
        return {"challenges": await lobby.mine(call.user)}

    @api.route("POST", CHALLENGE + "/accept", status=201)
    async def accept(call: Call[None]) -> dict[str, Any]:
        """Accept: the game starts (its id is the challenge's); it is in the answer and on
        both players' topics."""
        return await lobby.accept(call.param("challenge_id"), call.user)

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
            return {"game": await lobby.start_from(match, call.user)}
        row = {
            "id": secrets.token_hex(16), "challenger_id": call.user.id, "target_id": None,
            "base_ms": base_ms, "increment_ms": increment_ms, "rated": int(body.rated),
            "color": "random", "initial_fen": chess.STARTING_FEN, "status": "pending",
            "game_id": None, "created_at": time.time(), "rating_min": low, "rating_max": high,
        }  # fmt: skip
        await lobby.insert(row)
        return {"seek": row}

    for action in CLOSED:

        async def close(call: Call[None], action: str = action) -> None:
            await lobby.close(call.param("challenge_id"), call.user, action)

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
        """NDJSON in lichess's Board API documents: ``gameFull``, then ``gameState`` per
        change and the spectator room's ``chatLine``s, until the game ends."""
        items = board.game_stream(service, call.param("game_id"), ("spectator",))
        return await board.respond(call.request, items)
