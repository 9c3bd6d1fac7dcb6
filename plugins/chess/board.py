"""lichess Board API streams over our games: a game's NDJSON (``gameFull``, then
``gameState`` per change, ``chatLine``) and a player's event stream (``gameStart``,
``gameFinish``, ``challenge``, ``challengeCanceled``, ``challengeDeclined``).

The documents are built by :mod:`.lichess`; this module follows the service's streams and
the bus and looks up what the documents need (usernames, ratings)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from syncstream.sdk import User, dumps, new_id

from . import lichess
from .game import CLAIM_AFTER_SECONDS
from .lobby import CLOSED
from .service import KEEPALIVE_SECONDS, ChessService

EVENT_QUEUE = 200  # events waiting for a slow reader; more are dropped


async def ratings(service: ChessService, user_ids: dict[str, str]) -> dict[str, Any]:
    """side (or any key) -> ``{"rating", "provisional"}``."""
    out = {}
    for key, user_id in user_ids.items():
        rating, _ = await service.rating(user_id)
        out[key] = {"rating": rating.rating, "provisional": rating.provisional}
    return out


async def game_stream(
    service: ChessService, game_id: str, rooms: tuple[str, ...], player: User | None = None
) -> AsyncGenerator[dict[str, Any] | None, None]:
    """A game as lichess streams it; chat lines of ``rooms`` only; None: a keep-alive.
    With ``player``, the stream is that player's: it makes them present on the game's topic
    (as a subscribed socket does, so no claim_victory against a Board API player who is
    connected) and it says when their opponent is gone or back (``opponentGone``)."""
    moves: list[str] = []
    increment = seq = 0
    watch = None if player is None else Watch(service, game_id, player)
    try:
        async for item in service.stream(game_id):
            if watch is not None:
                gone = await watch.check()
                if gone is not None:
                    yield gone
            if item is None:
                yield None
                continue
            kind, data = item
            if kind == "full":
                moves, increment = list(data["moves"]), data["clock"]["increment_ms"]
                seq = data["seq"]
                players = {side: data[side]["id"] for side in ("white", "black")}
                yield lichess.game_full(data, await ratings(service, players))
                if watch is not None and data["status"] == "started":
                    watch.see(data)
                    gone = await watch.check()
                    if gone is not None:
                        yield gone
            elif kind == "state":
                if data["seq"] <= seq:  # came while the game was read: already in it
                    continue
                seq, ply, last = data["seq"], data["ply"], data["last_move"]
                if ply == len(moves) + 1 and last is not None:
                    moves.append(last["uci"])
                elif ply <= len(moves):  # a takeback (or the same position)
                    del moves[ply:]
                else:  # missed changes: read the moves again
                    moves = (await service.get(game_id)).moves.ucis()
                yield lichess.game_state(data, moves, increment)
            elif kind == "chat" and data["room"] in rooms:
                yield {"type": "chatLine", **data}
    finally:
        if watch is not None:
            await watch.leave()


class Watch:
    """A player's Board API stream on a game's topic: their presence there (refreshed
    within the gateway's presence TTL) and their opponent's, as ``opponentGone``."""

    def __init__(self, service: ChessService, game_id: str, player: User) -> None:
        self.service, self.topic, self.player = service, f"chess:{game_id}", player
        self.client = f"board:{new_id()}"
        self.opponent: str | None = None  # known once the game is read
        self.present = True  # as far as the stream told: lichess says only when gone
        self.joined = self.checked = float("-inf")
        self.refresh = service.gateway.settings.presence_ttl_seconds / 3

    def see(self, full: dict[str, Any]) -> None:
        """Learn the opponent from the game."""
        sides = {full[side]["id"]: side for side in ("white", "black")}
        mine = sides[self.player.id]
        self.opponent = full["black" if mine == "white" else "white"]["id"]

    async def check(self) -> dict[str, Any] | None:
        """Refresh our presence if due; an ``opponentGone`` if the opponent left or came
        back since the last check (at most one check a second)."""
        now = time.monotonic()
        presence = self.service.gateway.presence
        if now - self.joined >= self.refresh:
            info = {"user_id": self.player.id, "username": self.player.username,
                    "client_id": self.client}  # fmt: skip
            await presence.add(self.topic, self.client, info)
            self.joined = now
        if self.opponent is None or now - self.checked < 1.0:
            return None
        self.checked = now
        online = {p["user_id"] for p in await self.service.gateway.presence_of(self.topic)}
        present = self.opponent in online
        if present == self.present:
            return None
        self.present = present
        if present:
            return {"type": "opponentGone", "gone": False}
        # The claim needs the opponent inactive this long; counted from now (their last
        # action may be older: a claim is then possible sooner, never later).
        return {"type": "opponentGone", "gone": True, "claimWinInSeconds": int(CLAIM_AFTER_SECONDS)}

    async def leave(self) -> None:
        with contextlib.suppress(Exception):  # the presence store may be gone at shutdown
            await self.service.gateway.presence.remove(self.topic, self.client)


class Events:
    """A player's lichess event stream: what is going on now, then what happens."""

    def __init__(self, service: ChessService, user: User, base_url: str) -> None:
        self.service, self.user, self.base_url = service, user, base_url
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(EVENT_QUEUE)

    def _push(self, kind: str, data: Any) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((kind, data))

    def _on_event(self, event: Any) -> None:
        data, me = event.data, self.user.id
        if event.type == "chess.game_started" and me in (
            data["game"]["white"]["id"], data["game"]["black"]["id"],
        ):  # fmt: skip
            self._push("gameStart", data["game"])
        elif event.type == "chess.game_ended" and me in data["players"].values():
            self._push("gameFinish", data)
        elif event.type in ("chess.challenge", "chess.challenge_closed"):
            row = data["challenge"]
            if me in (row["challenger_id"], row["target_id"]):
                self._push(event.type, row)

    async def stream(self) -> AsyncGenerator[dict[str, Any] | None, None]:
        service = self.service
        unlisten = [
            service.bus.listen(pattern, self._on_event)
            for pattern in ("chess.game_started", "chess.game_ended", "chess.challenge",
                            "chess.challenge_closed")
        ]  # fmt: skip
        service.open_streams.add(self.queue)
        try:
            for row in await service.store.fetchall(
                "SELECT id FROM chess_games WHERE status = 'started' AND (white_id = ?"
                " OR black_id = ?) ORDER BY created_at LIMIT 100",
                self.user.id,
                self.user.id,
            ):
                game = await service.get(row["id"])
                yield await self._game_event("gameStart", game.full(time.monotonic()))
            for row in await service.store.fetchall(
                "SELECT * FROM chess_challenges WHERE status = 'pending' AND target_id = ?"
                " ORDER BY created_at LIMIT 100",
                self.user.id,
            ):
                yield await self._challenge_event("chess.challenge", row)
            while True:
                try:
                    kind, data = await asyncio.wait_for(self.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield None
                    continue
                if kind == "closed":
                    return
                if kind == "gameStart":
                    yield await self._game_event(kind, data)
                elif kind == "gameFinish":
                    game = await service.get(data["game_id"])
                    side = game.side_of(self.user.id) or "white"
                    diff = (data.get("ratings") or {}).get(side, {}).get("diff")
                    yield await self._game_event(kind, game.full(time.monotonic()), diff)
                else:
                    yield await self._challenge_event(kind, data)
        finally:
            service.open_streams.discard(self.queue)
            for stop in unlisten:
                stop()

    async def _game_event(
        self, kind: str, full: dict[str, Any], diff: int | None = None
    ) -> dict[str, Any]:
        side = "white" if full["white"]["id"] == self.user.id else "black"
        players = {s: full[s]["id"] for s in ("white", "black")}
        info = lichess.game_info(full, side, await ratings(self.service, players), diff)
        return {"type": kind, "game": info}

    async def _challenge_event(self, kind: str, row: dict[str, Any]) -> dict[str, Any]:
        body = await challenge_json(self.service, row, self.user, self.base_url)
        if kind == "chess.challenge":
            return {"type": "challenge", "challenge": body}
        name = "challengeCanceled" if row["status"] == CLOSED["cancel"] else "challengeDeclined"
        return {"type": name, "challenge": body}


async def challenge_json(
    service: ChessService, row: dict[str, Any], viewer: User, base_url: str
) -> dict[str, Any]:
    """A challenge row as lichess shows it to ``viewer`` (``direction`` in or out)."""
    people = {"challenger": row["challenger_id"]}
    if row["target_id"] is not None:
        people["dest"] = row["target_id"]
    rated = await ratings(service, people)
    users = {k: {"username": (await service.auth.get_user(v)).username, **rated[k]}
             for k, v in people.items()}  # fmt: skip
    direction = "out" if row["challenger_id"] == viewer.id else "in"
    return lichess.challenge(row, users["challenger"], users.get("dest"), base_url, direction)


async def respond(
    request: web.Request, items: AsyncGenerator[dict[str, Any] | None, None]
) -> web.StreamResponse:
    """Write ``items`` as NDJSON (None: an empty keep-alive line). The first item is read
    before the response starts, so a missing game is still a problem (404), not a stream."""
    first = await anext(items)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        item = first
        while True:
            await response.write(b"\n" if item is None else dumps(item).encode() + b"\n")
            try:
                item = await anext(items)
            except StopAsyncIteration:
                break
        await response.write_eof()
    finally:
        await items.aclose()
    return response
