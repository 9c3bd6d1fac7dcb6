"""Live games on this node: moves and actions are persisted before they are acknowledged,
then published on ``chess:<game id>`` (every event carries the full position, the clocks and
a sequence number) and fired on the bus. A ticker ends games whose flag fell. On start, games
in progress are rebuilt from their stored moves, so a crash loses no accepted move.

In a cluster one node owns a game at a time: its id and a lease (``owner_node``,
``lease_until``, renewed every third of the lease) are in the game's row.
Another node that gets a move forwards it to the owner over the realtime engine's
node-addressed control channel (service ``chess.command``); when the owner's lease has run
out (it died), the first node to need the game — or a node sweeping for orphans, so clocks
keep falling — takes it over from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import chess
import structlog

from syncstream.sdk import (
    Auth,
    EventBus,
    Gateway,
    GroupCommit,
    NodeTimeout,
    NodeUnavailable,
    Problem,
    Row,
    Store,
    User,
    WriteInterrupted,
    new_id,
)

from .clock import Clock
from .game import Game, Move, Replayed
from .glicko2 import Rating, rate

log = structlog.get_logger(__name__)
TICK_SECONDS = 0.1
GAME_COLUMNS = (
    "id, white_id, black_id, rated, base_ms, increment_ms, initial_fen, status, result,"
    " termination, seq, draw_offer, takeback_offer, white_ms, black_ms, running, running_since,"
    " created_at, ended_at, per_move_ms, owner_node, lease_until"
)
FIXED_COLUMNS = frozenset(  # set when a game is created, never changed
    ("id", "white_id", "black_id", "rated", "base_ms", "increment_ms", "initial_fen",
     "created_at", "per_move_ms")
)  # fmt: skip
LEASE_COLUMNS = frozenset(("owner_node", "lease_until"))  # written by hold() and _renew()
# A stored move carries the game's seq after it and both clocks; when the game is rebuilt,
# the newest of the row and its last move wins, and the clock of the side to move runs
# from that move. A save with moves leaves these columns of the game's row alone.
MOVE_IMPLIED = frozenset(("seq", "white_ms", "black_ms", "running", "running_since"))
FORWARD_TIMEOUT = 5.0
KEEPALIVE_SECONDS = 6.0  # an empty line on an idle NDJSON stream (lichess sends one every 6 s)


@dataclass
class _Write:
    """One game's pending save: its row and its new moves."""

    game_id: str
    row: dict[str, Any]
    moves: list[tuple[int, Move]]
    truncate_at: int | None


class Remote(Exception):
    """The game is held by another live node."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


class ChessService:
    def __init__(
        self,
        store: Store,
        auth: Auth,
        bus: EventBus,
        gateway: Gateway,
        *,
        clustered: bool = False,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store, self.auth, self.bus, self.gateway = store, auth, bus, gateway
        self.node_id, self.clustered, self.lease_seconds = bus.node_id, clustered, lease_seconds
        self._unlisten: list[Any] = []
        self.games: dict[str, Game] = {}
        self._stored: dict[str, dict[str, Any]] = {}  # held games' rows as last written
        self._commits = GroupCommit(store)
        self.locks: dict[str, asyncio.Lock] = {}
        self._flag_at: dict[str, float] = {}  # held games whose clock runs -> when it falls
        self.streams: dict[str, set[asyncio.Queue[tuple[str, dict[str, Any]]]]] = {}
        # Every open NDJSON stream's queue (game streams and event streams): on shutdown
        # each gets a ("closed", {}) so its response ends instead of holding the drain.
        self.open_streams: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()  # kept: each call is a getpid() system call
        self._unlisten = [
            self.gateway.control.serve("chess.command", self._on_command),
            self.bus.listen("chess.state", self._on_state),
            self.bus.listen("chess.chat", self._on_chat),
        ]
        if not self.clustered:  # a single node holds every game (its id changed on restart)
            for row in await self.store.fetchall(
                f"SELECT {GAME_COLUMNS} FROM chess_games WHERE status = 'started'"
            ):
                self._keep(await self._rebuild(row), row)
            await self._renew()
        self._ticker = asyncio.create_task(self._tick())

    async def end_streams(self) -> None:
        """The server shuts down: end every open stream (it is waited for otherwise)."""
        for queue in self.open_streams:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(("closed", {}))

    async def close(self) -> None:
        for unlisten in self._unlisten:
            unlisten()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    # -- games ------------------------------------------------------------------------------

    async def create(
        self,
        white: User,
        black: User,
        *,
        rated: bool,
        base_ms: int,
        increment_ms: int,
        fen: str,
        per_move_ms: int | None = None,
        game_id: str | None = None,
    ) -> Game:
        game = Game(
            id=game_id or new_id(),
            players={"white": white.id, "black": black.id},
            names={"white": white.username, "black": black.username},
            rated=rated,
            clock=Clock(base_ms, increment_ms, per_move_ms),
            initial_fen=fen,
        )
        row = self._row(game)
        await self.store.execute(
            f"INSERT INTO chess_games ({GAME_COLUMNS}) VALUES ({', '.join('?' * 22)})",
            *row.values(),
        )
        self._keep(game, row)
        await self.bus.fire("chess.game_started", {"game": game.full(time.monotonic())})
        return game

    async def get(self, game_id: str) -> Game:
        """A game to look at: the live one held here, else as the store has it."""
        game = self.games.get(game_id)
        if game is not None:
            return game
        return await self._rebuild(await self._row_of(game_id))

    async def _row_of(self, game_id: str) -> Row:
        row = await self.store.fetchone(
            f"SELECT {GAME_COLUMNS} FROM chess_games WHERE id = ?", game_id[:64]
        )
        if row is None:
            raise Problem(404, "game_not_found", f"no game {game_id[:64]}")
        return row

    async def hold(self, game_id: str) -> Game:
        """The game to change, held by this node: taken over if its owner's lease ran out,
        :class:`Remote` if another node holds it."""
        game = self.games.get(game_id)
        if game is not None:
            return game
        row = await self._row_of(game_id)
        if row["status"] != "started":
            return await self._rebuild(row)
        now = time.time()
        taken = await self.store.execute(
            "UPDATE chess_games SET owner_node = ?, lease_until = ? WHERE id = ?"
            " AND status = 'started' AND (owner_node = ? OR owner_node IS NULL"
            " OR lease_until IS NULL OR lease_until < ?)",
            self.node_id,
            now + self.lease_seconds,
            row["id"],
            self.node_id,
            now if self.clustered else float("inf"),
        )
        if not taken:
            raise Remote(row["owner_node"])
        row = await self._row_of(game_id)
        game = self._keep(await self._rebuild(row), row)
        log.info("chess.game_taken_over", game=game.id, previous=row["owner_node"])
        return game

    def _keep(self, game: Game, row: Row) -> Game:
        """Hold ``game`` here; ``row`` is how the store has it."""
        self.games[game.id] = game
        self._stored[game.id] = dict(row)
        self._watch_clock(game)
        return game

    def _watch_clock(self, game: Game) -> None:
        flag_at = game.clock.flag_at() if game.status == "started" else None
        if flag_at is None:
            self._flag_at.pop(game.id, None)
        else:
            self._flag_at[game.id] = flag_at

    def _forget(self, game_id: str) -> None:
        self.games.pop(game_id, None)
        self._flag_at.pop(game_id, None)
        self.locks.pop(game_id, None)
        self._stored.pop(game_id, None)

    async def _rebuild(self, row: Row) -> Game:
        names = {}
        for side in ("white", "black"):
            user = await self.auth.get_user(row[f"{side}_id"])
            names[side] = user.username
        game = Game(
            id=row["id"],
            players={"white": row["white_id"], "black": row["black_id"]},
            names=names,
            rated=bool(row["rated"]),
            clock=Clock(row["base_ms"], row["increment_ms"], row["per_move_ms"]),
            initial_fen=row["initial_fen"],
            created_at=row["created_at"],
        )
        move: Row | None = None
        for move in await self.store.fetchall(
            "SELECT uci, san, white_ms, black_ms, created_at, seq FROM chess_moves"
            " WHERE game_id = ? ORDER BY ply",
            row["id"],
        ):
            game.position.push(chess.Move.from_uci(move["uci"]))
            game.moves.append(
                Move(
                    move["uci"], move["san"], move["white_ms"], move["black_ms"], move["created_at"]
                )
            )
        game.status, game.result, game.termination = (
            row["status"],
            row["result"],
            row["termination"],
        )
        game.draw_offer, game.takeback_offer = row["draw_offer"], row["takeback_offer"]
        if move is not None and (move["seq"] or 0) > row["seq"]:  # the move is newer
            game.seq = move["seq"]
            white_ms, black_ms, running, since = (
                move["white_ms"], move["black_ms"],
                game.turn if len(game.moves) >= 2 else None, move["created_at"],
            )  # fmt: skip
        else:
            game.seq = row["seq"]
            white_ms, black_ms, running, since = (
                row["white_ms"], row["black_ms"], row["running"], row["running_since"]
            )  # fmt: skip
        game.clock.remaining = {"white": white_ms, "black": black_ms}
        if running and game.status == "started":
            elapsed = max(0.0, time.time() - since)
            game.clock.start(running, time.monotonic() - elapsed)
        return game

    def _row(self, game: Game) -> dict[str, Any]:
        now = time.monotonic()
        running = game.clock.running
        since = time.time() - (now - game.clock.since) if running else None
        return {
            "id": game.id,
            "white_id": game.players["white"],
            "black_id": game.players["black"],
            "rated": int(game.rated),
            "base_ms": game.clock.base_ms,
            "increment_ms": game.clock.increment_ms,
            "initial_fen": game.initial_fen,
            "status": game.status,
            "result": game.result,
            "termination": game.termination,
            "seq": game.seq,
            "draw_offer": game.draw_offer,
            "takeback_offer": game.takeback_offer,
            "white_ms": game.clock.remaining["white"],
            "black_ms": game.clock.remaining["black"],
            "running": running,
            "running_since": since,
            "created_at": game.created_at,
            "ended_at": time.time() if game.status == "ended" else None,
            "per_move_ms": game.clock.per_move_ms,
            "owner_node": self.node_id,
            "lease_until": time.time() + self.lease_seconds,
        }

    async def _save(self, game: Game, plies_before: int) -> None:
        """Store the game as it is now (its row and its move list) and return once committed.
        Saves share transactions (group commit): a burst of moves costs one commit. The
        statements are made when the batch is formed: they hold only what changed since the
        game's previous write (if a commit fails, _change drops the game, to be reloaded)."""
        write = _Write(
            game.id,
            self._row(game),
            [(ply, game.moves[ply]) for ply in range(plies_before, len(game.moves))],
            len(game.moves) if len(game.moves) < plies_before else None,
        )
        try:
            await self._commits.write(lambda: self._statements(write))
        except WriteInterrupted:
            raise Problem(503, "write_interrupted", "retry: the game reloads") from None

    def _statements(self, write: _Write) -> list[tuple[str, tuple[Any, ...]]]:
        out: list[tuple[str, tuple[Any, ...]]] = []
        if write.truncate_at is not None:  # a takeback
            out.append(
                (
                    "DELETE FROM chess_moves WHERE game_id = ? AND ply >= ?",
                    (write.game_id, write.truncate_at),
                )
            )
        for ply, m in write.moves:
            out.append(
                (
                    "INSERT INTO chess_moves (game_id, ply, uci, san, white_ms, black_ms,"
                    " created_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        write.game_id,
                        ply,
                        m.uci,
                        m.san,
                        m.white_ms,
                        m.black_ms,
                        m.at,
                        write.row["seq"],
                    ),
                )
            )
        # Only the columns that changed since the last write, and none a new move carries:
        # most moves then leave the game's row alone (fewer pages per commit, less WAL).
        stored = self._stored.setdefault(write.game_id, {})
        skip = MOVE_IMPLIED if write.moves else frozenset()
        changed = {
            k: v
            for k, v in write.row.items()
            if k not in FIXED_COLUMNS and k not in LEASE_COLUMNS and k not in skip
            and (k not in stored or stored[k] != v)
        }  # fmt: skip
        if changed:
            out.append(
                (
                    f"UPDATE chess_games SET {', '.join(f'{k} = ?' for k in changed)} WHERE id = ?",
                    (*changed.values(), write.game_id),
                )
            )
            stored.update(changed)
        return out

    async def _change(self, game: Game, apply: Any) -> dict[str, Any]:
        """Apply a change under the game's lock; persist, then publish. A failed change or
        store write leaves the game as it was (rebuilt from the store)."""
        lock = self.locks.setdefault(game.id, asyncio.Lock())
        async with lock:
            game = self.games.get(game.id, game)
            before = len(game.moves)
            try:
                apply(game)
            except Problem:
                if game.status == "ended":  # a flag fell while trying: that is a change
                    await self._save(game, before)
                    await self._publish(game)
                raise
            try:
                await self._save(game, before)
            except Exception:
                self._forget(game.id)  # memory went ahead of the store: reload
                raise
            return await self._publish(game)

    async def _publish(self, game: Game) -> dict[str, Any]:
        self._watch_clock(game)
        state = game.state(time.monotonic())
        await self.gateway.publish(f"chess:{game.id}", {"type": "state", **state})
        await self.bus.fire("chess.state", {"game_id": game.id, "state": state})
        if game.status == "ended":
            self._forget(game.id)
            ratings = await self._rate(game) if game.rated and game.result != "*" else None
            if ratings:
                await self.gateway.publish(f"chess:{game.id}", {"type": "ratings", **ratings})
            await self.bus.fire(
                "chess.game_ended",
                {"game_id": game.id, "result": game.result, "termination": game.termination,
                 "players": game.players, "rated": game.rated, "ratings": ratings},
            )  # fmt: skip
        return state

    async def stop(self, admin: User, game_id: str) -> dict[str, Any]:
        """An admin ends a game in progress without a result."""
        if not admin.is_admin:
            raise Problem(403, "admin_only", "only an admin ends other people's games")
        return await self.command(admin, game_id, "stop", {})

    async def figures(self) -> dict[str, float]:
        return {"games_active": sum(g.status == "started" for g in self.games.values())}

    async def user_facts(self, user_id: str) -> dict[str, Any]:
        games = await self.store.fetchval(
            "SELECT COUNT(*) FROM chess_games WHERE white_id = ? OR black_id = ?", user_id, user_id
        )
        playing = [g.id for g in self.games.values()
                   if g.status == "started" and user_id in g.players.values()]  # fmt: skip
        rating, rated_games = await self.rating(user_id)
        return {"games": int(games), "playing_now": playing, "rating": round(rating.rating),
                "rated_games": rated_games}  # fmt: skip

    async def rating(self, user_id: str) -> tuple[Rating, int]:
        row = await self.store.fetchone(
            "SELECT rating, rd, vol, games FROM chess_ratings WHERE user_id = ?", user_id
        )
        if row is None:
            return Rating(), 0
        return Rating(row["rating"], row["rd"], row["vol"]), int(row["games"])

    async def _rate(self, game: Game) -> dict[str, Any]:
        """Glicko-2 for both players of a rated game, stored together."""
        white_score = {"1-0": 1.0, "0-1": 0.0}.get(game.result, 0.5)
        (white, w_games), (black, b_games) = [
            await self.rating(game.players[side]) for side in ("white", "black")
        ]
        new = {
            "white": rate(white, [(black, white_score)]),
            "black": rate(black, [(white, 1 - white_score)]),
        }
        old = {"white": white, "black": black}
        async with self.store.transaction() as tx:
            for side, games in (("white", w_games), ("black", b_games)):
                r = new[side]
                await tx.execute(
                    "INSERT INTO chess_ratings (user_id, rating, rd, vol, games, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                    " rating = excluded.rating, rd = excluded.rd, vol = excluded.vol,"
                    " games = excluded.games, updated_at = excluded.updated_at",
                    game.players[side], r.rating, r.rd, r.vol, games + 1, time.time(),
                )  # fmt: skip
        return {
            side: {
                "user_id": game.players[side],
                "rating": round(new[side].rating),
                "diff": round(new[side].rating) - round(old[side].rating),
                "provisional": new[side].provisional,
            }
            for side in ("white", "black")
        }

    async def move(
        self, user: User, game_id: str, text: str, ply: int | None, lag_ms: int
    ) -> dict[str, Any]:
        return await self.command(user, game_id, "move", {"move": text, "ply": ply, "lag": lag_ms})

    async def act(self, user: User, game_id: str, action: str) -> dict[str, Any]:
        return await self.command(user, game_id, "act", {"action": action})

    async def command(
        self, user: User, game_id: str, kind: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Run a move or action here if this node holds the game, else on its owner."""
        try:
            game = await self.hold(game_id)
        except Remote as remote:
            return await self._forward(remote.node, user, game_id, kind, args)
        if kind == "stop":  # an admin ends the game (checked by the node that took the call)
            return await self._change(game, lambda g: g.stop("ended_by_admin"))
        if kind == "move":
            try:
                return await self._change(
                    game,
                    lambda g: g.play(
                        user.id, args["move"], args["ply"], args["lag"], time.monotonic()
                    ),
                )
            except Replayed:  # the player's retry: the game as it is, nothing played again
                game = self.games.get(game.id, game)
                return game.state(time.monotonic()) | {"replayed": True}
        present = True
        if args["action"] == "claim_victory":
            present = await self._opponent_present(game, user.id)
        return await self._change(
            game, lambda g: g.act(user.id, args["action"], time.monotonic(), present)
        )

    async def _forward(
        self, node: str, user: User, game_id: str, kind: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            state = await self.gateway.control.request(
                node, "chess.command",
                {"game_id": game_id, "user_id": user.id, "kind": kind, "args": args},
                FORWARD_TIMEOUT,
            )  # fmt: skip
        except (NodeUnavailable, NodeTimeout):
            raise Problem(
                503, "game_unavailable", "the node holding this game does not answer; retry soon",
                headers={"Retry-After": str(int(self.lease_seconds))},
            ) from None  # fmt: skip
        return dict(state)

    async def _on_command(self, data: dict[str, Any]) -> dict[str, Any]:
        """A move or action another node forwarded (its problems go back to it)."""
        user = await self.auth.get_user(data["user_id"])
        return await self.command(user, data["game_id"], data["kind"], data["args"])

    def _on_state(self, event: Any) -> None:
        self._to_streams(event.data, ("state", event.data["state"]))

    def _on_chat(self, event: Any) -> None:
        self._to_streams(event.data, ("chat", event.data["line"]))

    def _to_streams(self, data: dict[str, Any], item: tuple[str, dict[str, Any]]) -> None:
        for queue in self.streams.get(data.get("game_id", ""), ()):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled reader misses lines
                queue.put_nowait(item)

    async def chat(self, user: User, game_id: str, room: str, text: str) -> None:
        """A chat line in a game's ``player`` room (its players only) or ``spectator`` room;
        delivered to the game's streams on every node, not stored."""
        game = await self.get(game_id)
        if room == "player":
            game.player(user.id)
        line = {"room": room, "username": user.username, "text": text}
        await self.bus.fire("chess.chat", {"game_id": game.id, "line": line})

    async def _renew(self) -> None:
        if self.games:
            ids = list(self.games)
            marks = ", ".join("?" * len(ids))
            await self.store.execute(
                f"UPDATE chess_games SET owner_node = ?, lease_until = ? WHERE id IN ({marks})",
                self.node_id,
                time.time() + self.lease_seconds,
                *ids,
            )

    async def _adopt_orphans(self) -> None:
        """Take over started games whose owner's lease ran out, so their clocks still fall."""
        rows = await self.store.fetchall(
            "SELECT id FROM chess_games WHERE status = 'started' AND lease_until < ? LIMIT 100",
            time.time(),
        )
        for row in rows:
            with contextlib.suppress(Remote):
                await self.hold(row["id"])

    async def _opponent_present(self, game: Game, user_id: str) -> bool:
        side = game.side_of(user_id)
        if side is None:
            return True
        opponent = game.players["black" if side == "white" else "white"]
        online = {p["user_id"] for p in await self.gateway.presence_of(f"chess:{game.id}")}
        return opponent in online

    async def _tick(self) -> None:
        last_lease = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            if now - last_lease > self.lease_seconds / 3:
                last_lease = now
                try:
                    await self._renew()
                    if self.clustered:
                        await self._adopt_orphans()
                except Exception:
                    log.exception("chess.lease_failed")
            # Every move updates its game's entry; a scan of the games themselves took
            # ~1.7 ms of every 100 with 1,000 games (a move arriving then waited for it).
            if not self._flag_at or min(self._flag_at.values()) > now:
                continue
            for game_id in [g for g, at in self._flag_at.items() if at <= now]:
                game = self.games.get(game_id)
                if game is None or not game.clock.flagged(now):
                    continue
                try:
                    await self._change(game, lambda g: g.check_flag(time.monotonic()))
                except Exception:
                    log.exception("chess.flag_failed", game=game.id)

    # -- NDJSON streams ---------------------------------------------------------------------

    async def stream(self, game_id: str) -> AsyncIterator[tuple[str, dict[str, Any]] | None]:
        """``("full", game)`` then ``("state", state)`` per change and ``("chat", line)`` per
        chat line until the game ends, from whichever node holds the game (changes arrive
        as bus events); None every few seconds when nothing happened (a keep-alive)."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(1000)
        self.streams.setdefault(game_id, set()).add(queue)  # before the read: miss nothing
        self.open_streams.add(queue)
        try:
            game = await self.get(game_id)
            yield "full", game.full(time.monotonic())
            if game.status == "ended":
                return
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield None
                    continue
                if item[0] == "closed":
                    return
                yield item
                if item[0] == "state" and item[1]["status"] == "ended":
                    return
        finally:
            self.open_streams.discard(queue)
            self.streams.get(game_id, set()).discard(queue)
            if not self.streams.get(game_id, True):
                self.streams.pop(game_id, None)
