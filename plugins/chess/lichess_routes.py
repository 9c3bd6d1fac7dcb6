"""lichess's Board API (and the same calls under ``/api/bot``) at lichess's own paths, so
Board API bots and clients play here when pointed at this server's base URL.

lichess clients join absolute paths to their base URL (berserk: ``urljoin(base_url,
"/api/board/...")``), which drops any path prefix of that URL: the paths must be lichess's
(``/api/board``, ``/api/bot``, ``/api/stream/event``, ``/api/challenge``, ``/api/account``),
outside ``/api/chess``. ``plugins.chess.lichess_api: false`` leaves them out.

Bodies may be form-encoded (as lichess documents) or JSON (as berserk sends); answers to
actions are ``{"ok": true}``; failures are our problem documents (lichess clients only
look at the status).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syncstream.sdk import Call, Problem, ScopedApi, read_json, validation_problem

from . import board, lichess
from .lobby import Lobby
from .service import ChessService

GAME = "/game/{game_id:[0-9a-f]{32}}"
CHALLENGE = "/challenge/{challenge_id:[0-9a-f]{32}}"
OK = {"ok": True}
TAGS = ("chess (lichess Board API)",)
# Board API action -> our action.
ACTIONS = {"resign": "resign", "abort": "abort", "claim-victory": "claim_victory",
           "claim-draw": "claim_draw"}  # fmt: skip


class ChallengeForm(BaseModel):
    """``POST /api/challenge/{username}`` as lichess documents it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    rated: bool = False
    clock_limit: int | None = Field(None, alias="clock.limit", ge=0, le=10_800)
    clock_increment: int | None = Field(None, alias="clock.increment", ge=0, le=180)
    days: int | None = Field(None, ge=1, le=14)
    color: Literal["white", "black", "random"] | None = None
    variant: Literal["standard", "fromPosition"] | None = None
    fen: str | None = Field(None, max_length=100)


class ChatForm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    room: Literal["player", "spectator"] = "player"
    text: str = Field(min_length=1, max_length=140)


async def form(request: web.Request) -> dict[str, Any]:
    """The body as lichess clients send it: form-encoded, JSON, or nothing."""
    if request.content_type in ("application/json", "application/merge-patch+json"):
        raw = await read_json(request)
        if raw is not None and not isinstance(raw, dict):
            raise Problem(400, "invalid_json", "send a JSON object")
        return {k: v for k, v in (raw or {}).items() if v is not None}
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    return {}


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc, "body") from None


def register(root: ScopedApi, service: ChessService) -> None:
    """The routes, on ``root`` (an API scoped to ``/api``)."""
    lobby = Lobby(service)

    def base_url(call: Call[Any]) -> str:
        return f"{call.request.scheme}://{call.request.host}"

    @root.route("GET", "/account", tags=TAGS)
    async def account(call: Call[None]) -> dict[str, Any]:
        """Your account as lichess describes it (its id is your username in lower case)."""
        rating, games = await service.rating(call.user.id)
        return {
            "id": lichess.user_id(call.user.username),
            "username": call.user.username,
            "perfs": {"chess": {"games": games, "rating": round(rating.rating),
                                "rd": round(rating.rd), "prov": rating.provisional}},
        }  # fmt: skip

    @root.route("GET", "/stream/event", tags=TAGS)
    async def events(call: Call[None]) -> web.StreamResponse:
        """NDJSON: ``gameStart`` for your games in progress and ``challenge`` for those
        waiting for you, then ``gameStart`` / ``gameFinish`` / ``challenge`` /
        ``challengeCanceled`` / ``challengeDeclined`` as they happen."""
        stream = board.Events(service, call.user, base_url(call)).stream()
        return await board.respond(call.request, stream)

    for api in ("/board", "/bot"):

        @root.route("GET", api + "/game/stream/{game_id:[0-9a-f]{32}}", tags=TAGS)
        async def game_stream(call: Call[None]) -> web.StreamResponse:
            """NDJSON for a player: ``gameFull``, then ``gameState`` per change and
            ``chatLine``s, until the game ends."""
            game = await service.get(call.param("game_id"))
            game.player(call.user.id)  # 403 for spectators (they have /api/chess/.../stream)
            rooms = ("player", "spectator")
            items = board.game_stream(service, game.id, rooms, call.user)
            return await board.respond(call.request, items)

        @root.route("POST", api + GAME + "/move/{move}", tags=TAGS)
        async def move(call: Call[None]) -> dict[str, Any]:
            """Play a move (UCI)."""
            await service.move(call.user, call.param("game_id"), call.param("move"), None, 0)
            return OK

        for name, action in ACTIONS.items():

            async def act(call: Call[None], action: str = action) -> dict[str, Any]:
                await service.act(call.user, call.param("game_id"), action)
                return OK

            root.route("POST", api + GAME + f"/{name}", tags=TAGS, summary=name)(act)
            if name == "claim-victory":  # berserk calls it with a trailing slash: served,
                # but the document lists the route once, as lichess names it
                root.route("POST", api + GAME + f"/{name}/", documented=False)(act)

        @root.route("POST", api + GAME + "/draw/{accept:yes|no|true|false}", tags=TAGS)
        async def draw(call: Call[None]) -> dict[str, Any]:
            """``yes``: offer a draw, or accept your opponent's offer; ``no``: decline it."""
            yes = call.param("accept") in ("yes", "true")
            action = "draw_offer" if yes else "draw_decline"
            await service.act(call.user, call.param("game_id"), action)
            return OK

        @root.route("POST", api + GAME + "/takeback/{accept:yes|no|true|false}", tags=TAGS)
        async def takeback(call: Call[None]) -> dict[str, Any]:
            """``yes``: propose a takeback, or accept your opponent's; ``no``: decline it."""
            game_id = call.param("game_id")
            game = await service.get(game_id)
            side = game.player(call.user.id)
            offered = game.takeback_offer not in (None, side)
            if call.param("accept") in ("yes", "true"):
                action = "takeback_accept" if offered else "takeback_offer"
            else:
                action = "takeback_decline"
            await service.act(call.user, game_id, action)
            return OK

        @root.route("POST", api + GAME + "/chat", tags=TAGS)
        async def chat(call: Call[None]) -> dict[str, Any]:
            """Say something in the game's ``player`` or ``spectator`` room (not stored)."""
            line: ChatForm = parse(ChatForm, await form(call.request))
            await service.chat(call.user, call.param("game_id"), line.room, line.text)
            return OK

    @root.route("GET", "/challenge", tags=TAGS)
    async def challenges(call: Call[None]) -> dict[str, Any]:
        """Your pending challenges: ``in`` (to you) and ``out`` (yours)."""
        out: dict[str, list[dict[str, Any]]] = {"in": [], "out": []}
        for row in await lobby.mine(call.user):
            if row["target_id"] is None and row["challenger_id"] != call.user.id:
                continue  # someone's open seek
            direction = "out" if row["challenger_id"] == call.user.id else "in"
            out[direction].append(
                await board.challenge_json(service, row, call.user, base_url(call))
            )
        return out

    @root.route("POST", "/challenge/{username:[A-Za-z0-9_.-]{1,64}}", tags=TAGS)
    async def create(call: Call[None]) -> dict[str, Any]:
        """Challenge a user: ``rated``, ``clock.limit`` and ``clock.increment`` (seconds;
        either alone means the other is 0) or ``days``, ``color``, ``variant`` (standard or
        fromPosition), ``fen``."""
        body: ChallengeForm = parse(ChallengeForm, await form(call.request))
        if body.days is None and body.clock_limit is None and body.clock_increment is None:
            raise Problem(
                422, "invalid_clock", "give clock.limit (and clock.increment), or days"
            )  # unlimited games are not played here
        row = await lobby.challenge(
            call.user, call.param("username"), base_ms=(body.clock_limit or 0) * 1000,
            increment_ms=(body.clock_increment or 0) * 1000, rated=body.rated,
            color=body.color or "random", fen=body.fen, days=body.days,
        )  # fmt: skip
        return await board.challenge_json(service, row, call.user, base_url(call))

    @root.route("POST", CHALLENGE + "/accept", tags=TAGS)
    async def accept(call: Call[None]) -> dict[str, Any]:
        """Accept a challenge: the game (with the challenge's id) starts."""
        await lobby.accept(call.param("challenge_id"), call.user)
        return OK

    for action in ("decline", "cancel"):

        async def close(call: Call[None], action: str = action) -> dict[str, Any]:
            await lobby.close(call.param("challenge_id"), call.user, action)
            return OK

        root.route("POST", CHALLENGE + f"/{action}", tags=TAGS, summary=action)(close)
