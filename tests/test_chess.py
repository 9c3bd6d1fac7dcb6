"""Chess end to end: challenges, rules in tricky positions, clocks, actions, restarts."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import chess
import pytest

from plugins.chess.glicko2 import Rating, rate

from .support import Client, cluster_yaml, pg_schema, running, spawn_node


async def start_game(
    c: Client, white: str, black_name: str, black: str, **body: Any
) -> dict[str, Any]:
    status, challenge, _ = await c.call(
        "POST", "/api/chess/challenges", white,
        json={"username": black_name, "color": "white", **body},
    )  # fmt: skip
    assert status == 201, challenge
    status, game, _ = await c.call("POST", f"/api/chess/challenges/{challenge['id']}/accept", black)
    assert status == 201, game
    return dict(game)


async def move(c: Client, token: str, game_id: str, uci: str, **query: Any) -> tuple[int, Any]:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    status, body, _ = await c.call(
        "POST", f"/api/chess/games/{game_id}/move/{uci}" + (f"?{params}" if params else ""), token
    )
    return status, body


async def act(c: Client, token: str, game_id: str, action: str) -> tuple[int, Any]:
    status, body, _ = await c.call("POST", f"/api/chess/games/{game_id}/{action}", token)
    return status, body


async def test_a_game_over_websocket_and_http_with_spectators(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob, carol = [await c.register(n) for n in ("alice", "bob", "carol")]
        game = await start_game(c, alice, "bob", bob)
        gid = game["id"]
        assert game["white"]["username"] == "alice" and game["fen"].startswith("rnbqkbnr")
        watcher = await c.ws(carol)
        assert (await watcher.request("subscribe", f"chess:{gid}"))["op"] == "reply"
        white = await c.ws(alice)
        reply = await white.request("publish", f"chess:{gid}", {"move": "e2e4", "ply": 0})
        assert reply["op"] == "reply" and reply["data"]["state"]["ply"] == 1
        (event,) = [f["data"] for f in await watcher.events(1)]
        assert event["last_move"] == {"uci": "e2e4", "san": "e4"} and event["seq"] == 1
        assert event["fen"].startswith("rnbqkbnr/pppppppp/8/8/4P3")
        # Refusals leave the game untouched.
        assert (await white.request("publish", f"chess:{gid}", {"move": "d2d4", "ply": 1}))[
            "code"
        ] == "not_your_turn"
        status, problem = await move(c, bob, gid, "e7e4")
        assert status == 422 and problem["code"] == "illegal_move"
        status, problem = await move(c, bob, gid, "e7e5", ply=0)
        assert status == 409 and problem["code"] == "stale_move", "a replayed message is refused"
        status, problem = await move(c, carol, gid, "e7e5")
        assert status == 403 and problem["code"] == "not_a_player"
        status, problem = await move(c, bob, gid, "xyz")
        assert status == 422
        for null in ("--", "Z0", "@@@@", "0000", "P@e4"):  # python-chess reads them; no moves
            status, problem = await move(c, bob, gid, null)
            assert status == 422 and problem["code"] == "illegal_move", null
        # Scholar's mate, in SAN and UCI.
        for token, mv in (
            (bob, "e5"),
            (alice, "Bc4"),
            (bob, "b8c6"),
            (alice, "Qh5"),
            (bob, "Nf6"),
            (alice, "Qxf7#"),
        ):
            status, state = await move(c, token, gid, mv)
            assert status == 200, state
        assert (
            state["status"] == "ended"
            and state["result"] == "1-0"
            and state["termination"] == "checkmate"
        )
        status, problem = await move(c, bob, gid, "a7a6")
        assert status == 409 and problem["code"] == "game_over"
        seqs = [f["data"]["seq"] for f in await watcher.events(6)]
        assert seqs == [2, 3, 4, 5, 6, 7]
        status, pgn, _ = await c.call("GET", f"/api/chess/games/{gid}/pgn", carol)
        assert '[White "alice"]' in pgn and '[Result "1-0"]' in pgn and "[%clk" in pgn
        assert "Qxf7#" in pgn and pgn.rstrip().endswith("1-0")
        clocks = re.findall(r"\[%clk ([^\]]*)\]", pgn)  # lichess's H:MM:SS, whole seconds
        assert len(clocks) == 7 and all(re.fullmatch(r"\d+:[0-5]\d:[0-5]\d", k) for k in clocks)
        _, mine, _ = await c.call("GET", "/api/chess/games", alice)
        assert [g["id"] for g in mine["games"]] == [gid]
        await watcher.ws.close()
        await white.ws.close()


async def test_the_ply_is_each_players_own_idempotency_key(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob)
        gid = g["id"]
        watcher = await c.ws(bob)
        await watcher.request("subscribe", f"chess:{gid}")
        status, first = await move(c, alice, gid, "e2e4", ply=0)
        assert status == 200 and first["ply"] == 1 and "replayed" not in first
        # Alice's retry (the answer was lost): the same answer, nothing played again.
        for text in ("e2e4", "e4"):
            status, again = await move(c, alice, gid, text, ply=0)
            assert status == 200 and again["replayed"], again
            assert (again["ply"], again["seq"], again["fen"]) == (1, 1, first["fen"])
        # Bob chooses the same key (and even the same move): not his, so it is stale.
        status, problem = await move(c, bob, gid, "e2e4", ply=0)
        assert status == 409 and problem["code"] == "stale_move"
        assert problem["detail"] == "ply 0 was your opponent's move (e2e4)"
        # Alice's retry with another move: stale (not "not your turn"), and it says why.
        for text in ("d2d4", "d4"):
            status, problem = await move(c, alice, gid, text, ply=0)
            assert status == 409 and problem["code"] == "stale_move", problem
            assert problem["detail"] == "ply 0 was already played with another move (e2e4)"
        white = await c.ws(alice)
        reply = await white.request("publish", f"chess:{gid}", {"move": "d2d4", "ply": 0})
        assert reply["code"] == "stale_move", reply
        reply = await white.request("publish", f"chess:{gid}", {"move": "e2e4", "ply": 0})
        assert reply["data"]["state"]["replayed"] and reply["data"]["state"]["ply"] == 1
        status, state = await move(c, bob, gid, "e7e5", ply=1)
        assert status == 200 and state["seq"] == 2
        assert [f["data"]["seq"] for f in await watcher.events(2)] == [1, 2], "no re-publish"
        # Scholar's mate; the mating move's retry after the end is still a replay.
        for token, uci, ply in (
            (alice, "Bc4", 2), (bob, "Nc6", 3), (alice, "Qh5", 4), (bob, "Nf6", 5),
        ):  # fmt: skip
            assert (await move(c, token, gid, uci, ply=ply))[0] == 200
        status, state = await move(c, alice, gid, "Qxf7#", ply=6)
        assert status == 200 and state["termination"] == "checkmate"
        status, again = await move(c, alice, gid, "h5f7", ply=6)
        assert status == 200 and again["replayed"] and again["result"] == "1-0"
        status, problem = await move(c, bob, gid, "h5f7", ply=6)
        assert status == 409 and problem["code"] == "game_over"
        await watcher.ws.close()
        await white.ws.close()


async def test_anyone_may_watch_unless_the_operator_requires_sign_in(tmp_path: Path) -> None:
    reads = ["", "/pgn"]
    async with running(tmp_path / "public") as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob, rated=True)
        await move(c, alice, g["id"], "e2e4")
        for tail in reads:
            status, body, _ = await c.call("GET", f"/api/chess/games/{g['id']}{tail}")
            assert status == 200, (tail, body)
        _, state, _ = await c.call("GET", f"/api/chess/games/{g['id']}")
        assert state["moves"] == ["e2e4"]
        for path in ("/api/chess/ratings/alice", "/api/chess/leaderboard"):
            assert (await c.call("GET", path))[0] == 200, path
        async with c.session.get(c.url(f"/api/chess/games/{g['id']}/stream")) as resp:
            assert resp.status == 200
            first = json.loads(await resp.content.readline())
            assert first["type"] == "gameFull" and first["id"] == g["id"]
        status, problem, _ = await c.call("GET", "/api/chess/games")  # yours: needs a token
        assert status == 401
    async with running(tmp_path / "private", **{"plugins.chess.public_reads": False}) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob)
        for tail in [*reads, "/stream"]:
            status, problem, _ = await c.call("GET", f"/api/chess/games/{g['id']}{tail}")
            assert status == 401 and problem["code"] == "unauthorized", tail
        for tail in reads:
            assert (await c.call("GET", f"/api/chess/games/{g['id']}{tail}", bob))[0] == 200
        assert (await c.call("GET", "/api/chess/leaderboard"))[0] == 401


async def test_tricky_positions_from_fen(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        # En passant that would expose the king on the fifth rank is illegal.
        g = await start_game(c, alice, "bob", bob, fen="8/8/8/KPp4r/8/8/8/7k w - c6 0 2")
        status, problem = await move(c, alice, g["id"], "b5c6")
        assert status == 422 and problem["code"] == "illegal_move"
        # Castling through an attacked square is illegal; castling when clear is fine.
        g = await start_game(c, alice, "bob", bob, fen="r3k2r/8/8/8/8/7q/8/R3K2R w KQkq - 0 1")
        assert (await move(c, alice, g["id"], "e1g1"))[0] == 422, "f1 is attacked"
        status, state = await move(c, alice, g["id"], "e1c1")
        assert status == 200 and state["last_move"]["san"] == "O-O-O"
        # Underpromotion.
        g = await start_game(c, alice, "bob", bob, fen="8/4P3/8/8/8/8/k7/7K w - - 0 1")
        status, state = await move(c, alice, g["id"], "e8=N")
        assert status == 200 and state["last_move"] == {"uci": "e7e8n", "san": "e8=N"}
        # A stalemate trap ends the game at once, drawn.
        g = await start_game(c, alice, "bob", bob, fen="k7/8/1Q6/8/8/8/8/7K w - - 0 1")
        status, state = await move(c, alice, g["id"], "b6c7")
        assert state["status"] == "ended" and state["termination"] == "stalemate"
        assert state["result"] == "1/2-1/2"
        status, problem, _ = await c.call(
            "POST", "/api/chess/challenges", alice, json={"username": "bob", "fen": "not a fen"}
        )
        assert status == 422 and problem["code"] == "invalid_fen"


async def test_challenge_defaults_and_rated_custom_positions(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob, base_seconds=60)  # asked for "1+0"
        assert g["clock"] == {"base_ms": 60_000, "increment_ms": 0}
        _, seek, _ = await c.call("POST", "/api/chess/pair", alice, json={"base_seconds": 60})
        assert seek["seek"]["increment_ms"] == 0
        custom = "4k3/8/8/8/8/8/4P3/4K3 w - - 0 1"
        status, problem, _ = await c.call(
            "POST", "/api/chess/challenges", alice,
            json={"username": "bob", "rated": True, "fen": custom},
        )  # fmt: skip
        assert status == 422 and problem["code"] == "rated_custom_position", problem
        assert "rated" in problem["detail"]
        g = await start_game(c, alice, "bob", bob, rated=True, fen=chess.STARTING_FEN)
        assert g["rated"], "the standard start is no custom position"
        g = await start_game(c, alice, "bob", bob, fen=custom)
        assert not g["rated"] and g["initial_fen"] == custom


async def test_clocks_flag_increment_and_insufficient_material(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob, base_seconds=1, increment_seconds=2)
        await move(c, alice, g["id"], "e2e4")
        _, state = await move(c, bob, g["id"], "e7e5")
        assert state["clock_running"] == "white"
        _, state = await move(c, alice, g["id"], "g1f3")
        assert state["clocks"]["white"] > 2000, "the increment was added"
        for _ in range(60):  # black's 1 s + grace runs out; the ticker ends the game
            _, state, _ = await c.call("GET", f"/api/chess/games/{g['id']}", alice)
            if state["status"] == "ended":
                break
            await asyncio.sleep(0.1)
        assert state["result"] == "1-0" and state["termination"] == "timeout"
        assert state["clocks"]["black"] == 0
        # Timeout against a lone king: a draw, the opponent cannot mate.
        g = await start_game(
            c, alice, "bob", bob, base_seconds=1, increment_seconds=0,
            fen="4k3/8/8/8/8/8/4P3/4K3 w - - 0 1",
        )  # fmt: skip
        await move(c, alice, g["id"], "e2e3")
        await move(c, bob, g["id"], "e8d8")
        for _ in range(60):
            _, state, _ = await c.call("GET", f"/api/chess/games/{g['id']}", alice)
            if state["status"] == "ended":
                break
            await asyncio.sleep(0.1)
        assert state["termination"] == "timeout_vs_insufficient_material"
        assert state["result"] == "1/2-1/2"


async def test_draws_resign_abort_takeback_and_claims(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")

        g = await start_game(c, alice, "bob", bob)
        assert (await act(c, bob, g["id"], "abort"))[1]["termination"] == "aborted"
        g = await start_game(c, alice, "bob", bob)
        await move(c, alice, g["id"], "e2e4")
        await move(c, bob, g["id"], "e7e5")
        status, problem = await act(c, alice, g["id"], "abort")
        assert status == 409 and problem["code"] == "too_late_to_abort"
        assert (await act(c, alice, g["id"], "draw_offer"))[1]["draw_offer"] == "white"
        status, state = await act(c, bob, g["id"], "draw_decline")
        assert state["draw_offer"] is None
        status, problem = await act(c, bob, g["id"], "draw_accept")
        assert status == 409 and problem["code"] == "no_offer"
        await move(c, alice, g["id"], "d2d4")
        assert (await act(c, alice, g["id"], "takeback_offer"))[1]["takeback_offer"] == "white"
        status, state = await act(c, bob, g["id"], "takeback_accept")
        assert state["ply"] == 2 and state["turn"] == "white"
        status, problem = await act(c, alice, g["id"], "claim_draw")
        assert status == 409 and problem["code"] == "no_draw_claim"
        # Threefold repetition: knights out and back twice.
        for uci in ("g1f3", "g8f6", "f3g1", "f6g8", "g1f3", "g8f6", "f3g1", "f6g8"):
            token = alice if uci[0] in "gf" and uci in ("g1f3", "f3g1") else bob
            assert (await move(c, token, g["id"], uci))[0] == 200
        status, state = await act(c, alice, g["id"], "claim_draw")
        assert state["termination"] == "threefold_repetition" and state["result"] == "1/2-1/2"

        g = await start_game(c, alice, "bob", bob)
        await move(c, bob, g["id"], "e7e5")  # not bob's turn: refused, but bob was active
        await move(c, alice, g["id"], "e2e4")
        status, problem = await act(c, alice, g["id"], "claim_victory")
        assert status == 409 and problem["code"] == "too_early_to_claim", problem
        g = await start_game(c, alice, "bob", bob)
        await move(c, alice, g["id"], "e2e4")
        status, problem = await act(c, alice, g["id"], "claim_victory")
        assert status == 200 and problem["termination"] == "abandoned", "bob never showed up"
        g = await start_game(c, alice, "bob", bob)
        sock = await c.ws(bob)
        await sock.request("subscribe", f"chess:{g['id']}")
        status, problem = await act(c, alice, g["id"], "claim_victory")
        assert status == 409 and problem["code"] == "opponent_present"
        assert (await act(c, bob, g["id"], "resign"))[1]["result"] == "1-0"
        await sock.ws.close()


async def test_no_accepted_move_is_lost_across_a_restart(tmp_path: Path) -> None:
    # A move's save writes the move row only (it carries the game's seq and clocks); an
    # action rewrites the game's row. Each kind, last before the restart, must come back.
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob, base_seconds=600, increment_seconds=5)
        for token, uci in ((alice, "d2d4"), (bob, "d7d5"), (alice, "c2c4")):
            status, before = await move(c, token, g["id"], uci)
            assert status == 200
    async with running(tmp_path) as c:
        alice, bob = await c.login("alice"), await c.login("bob")
        _, state, _ = await c.call("GET", f"/api/chess/games/{g['id']}", bob)
        assert state["moves"] == ["d2d4", "d7d5", "c2c4"] and state["turn"] == "black"
        assert state["seq"] == before["seq"] == 3
        assert state["clock_running"] == "black" and state["clocks"]["black"] < 600_000
        assert state["clocks"]["white"] == before["clocks"]["white"] > 600_000  # + increment
        assert (await act(c, bob, g["id"], "draw_offer"))[1]["draw_offer"] == "black"  # seq 4
        status, before = await move(c, bob, g["id"], "e7e6", ply=3)  # seq 5: the offer stays
        assert status == 200 and before["ply"] == 4 and before["draw_offer"] == "black"
    async with running(tmp_path) as c:
        alice, bob = await c.login("alice"), await c.login("bob")
        _, state, _ = await c.call("GET", f"/api/chess/games/{g['id']}", bob)
        assert state["seq"] == 5 and state["ply"] == 4 and state["draw_offer"] == "black"
        assert (
            state["clock_running"] == "white"
            and state["clocks"]["black"] == (before["clocks"]["black"])
        )
        for token, action in ((alice, "draw_decline"), (alice, "takeback_offer")):
            assert (await act(c, token, g["id"], action))[0] == 200
        status, before = await act(c, bob, g["id"], "takeback_accept")  # alice's c2c4 + e7e6 go
        assert status == 200 and before["ply"] == 2 and before["seq"] == 8
    async with running(tmp_path) as c:
        alice = await c.login("alice")
        _, state, _ = await c.call("GET", f"/api/chess/games/{g['id']}", alice)
        assert state["moves"] == ["d2d4", "d7d5"] and state["seq"] == 8
        assert state["draw_offer"] is None and state["takeback_offer"] is None
        assert state["clock_running"] == "white" and state["turn"] == "white"
        status, state = await move(c, alice, g["id"], "e2e4", ply=2)
        assert status == 200 and state["seq"] == 9


async def test_a_resume_replays_a_short_absence_only(tmp_path: Path) -> None:
    # Every state is a full snapshot: a game topic keeps its last 16 events for resumes;
    # a client away for longer is told it was not recovered and reads the game instead.
    line = [
        "e2e4", "e7e5", "g1f3", "b8c6", "f1b5", "a7a6", "b5a4", "g8f6", "e1g1", "f8e7",
        "f1e1", "b7b5", "a4b3", "d7d6", "c2c3", "e8g8", "h2h3", "c6a5", "b3c2", "c7c5",
    ]  # fmt: skip
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob, base_seconds=600)
        sock = await c.ws(bob)
        for ply, uci in enumerate(line[:19]):
            status, state = await move(c, (alice, bob)[ply % 2], g["id"], uci)
            assert status == 200, state
            if ply == 0:  # bob saw the first move, then went away
                joined = await sock.request("subscribe", f"chess:{g['id']}")
                epoch = joined["data"]["epoch"]
                await sock.request("unsubscribe", f"chess:{g['id']}")
        short = await sock.request(
            "subscribe", f"chess:{g['id']}", {"since": state["seq"] - 3, "epoch": epoch}
        )
        assert short["data"]["recovered"] and short["data"]["seq"] == state["seq"]
        assert [f["data"]["ply"] for f in await sock.events(3)] == [17, 18, 19]
        await sock.request("unsubscribe", f"chess:{g['id']}")
        long = await sock.request("subscribe", f"chess:{g['id']}", {"since": 1, "epoch": epoch})
        assert not long["data"]["recovered"]  # 18 missed: read the game
        assert (await move(c, bob, g["id"], line[19]))[0] == 200
        assert [f["data"]["ply"] for f in await sock.events(1)] == [20]  # live again
        await sock.ws.close()


async def test_ndjson_stream_for_bots(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob)
        async with c.session.get(
            c.url(f"/api/chess/games/{g['id']}/stream"), headers={"Authorization": f"Bearer {bob}"}
        ) as resp:
            assert resp.content_type == "application/x-ndjson"
            first = json.loads(await resp.content.readline())  # lichess's Board API documents
            assert first["type"] == "gameFull" and first["white"]["name"] == "alice"
            await move(c, alice, g["id"], "e2e4")
            second = json.loads(await resp.content.readline())
            assert second["type"] == "gameState" and second["moves"] == "e2e4"
            await c.call("POST", f"/api/chess/games/{g['id']}/resign", bob)
            last = json.loads(await resp.content.readline())
            assert last["status"] == "resign" and last["winner"] == "white"
            assert await resp.content.read() == b"", "the stream ends with the game"


def test_glicko2_matches_glickmans_worked_example() -> None:
    player = Rating(1500, 200, 0.06)
    games = [(Rating(1400, 30), 1.0), (Rating(1550, 100), 0.0), (Rating(1700, 300), 0.0)]
    after = rate(player, games, tau=0.5)
    assert round(after.rating, 2) == 1464.05 and round(after.rd, 2) == 151.52
    assert abs(after.vol - 0.05999) < 1e-5
    assert Rating().provisional and not Rating(1500, 100).provisional
    assert rate(Rating(1500, 46), [(Rating(1500, 46), 0.5)] * 1).rd >= 45, "RD floor"


async def test_rated_games_update_ratings_and_the_leaderboard(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob, rated=True)
        sock = await c.ws(alice)
        await sock.request("subscribe", f"chess:{g['id']}")
        await c.call("POST", f"/api/chess/games/{g['id']}/resign", bob)
        frames = [f["data"] for f in await sock.events(2)]
        ratings = frames[-1]
        assert ratings["type"] == "ratings" and ratings["white"]["diff"] > 0
        assert ratings["black"]["diff"] == -ratings["white"]["diff"]
        _, info, _ = await c.call("GET", "/api/chess/ratings/alice", bob)
        assert info["rating"] > 1500 and info["games"] == 1 and info["provisional"]
        _, board, _ = await c.call("GET", "/api/chess/leaderboard", bob)
        assert board["players"] == [], "provisional ratings stay off the leaderboard"
        casual = await start_game(c, alice, "bob", bob)
        await c.call("POST", f"/api/chess/games/{casual['id']}/resign", bob)
        _, again, _ = await c.call("GET", "/api/chess/ratings/alice", bob)
        assert again["games"] == 1, "casual games are not rated"
        await sock.ws.close()


async def test_quick_pairing_by_time_control_and_rating(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob, carol = [await c.register(n) for n in ("alice", "bob", "carol")]
        blitz = {"base_seconds": 180, "increment_seconds": 2, "rating_range": 100}
        status, first, _ = await c.call("POST", "/api/chess/pair", alice, json=blitz)
        assert status == 200 and "seek" in first
        _, again, _ = await c.call("POST", "/api/chess/pair", alice, json=blitz)
        assert "seek" in again, "you are never paired with yourself"
        _, other, _ = await c.call(
            "POST", "/api/chess/pair", carol, json={**blitz, "base_seconds": 600}
        )
        assert "seek" in other, "another time control does not match"
        sock = await c.ws(alice)
        await sock.request("subscribe", f"user:{sock.hello['user']['id']}")
        _, paired, _ = await c.call("POST", "/api/chess/pair", bob, json=blitz)
        game = paired["game"]
        assert {game["white"]["username"], game["black"]["username"]} == {"alice", "bob"}
        assert game["clock"] == {"base_ms": 180_000, "increment_ms": 2000} and game["rated"]
        (event,) = [f["data"] for f in await sock.events(1)]
        assert event["type"] == "chess.game" and event["game"]["id"] == game["id"]
        await sock.ws.close()


async def test_correspondence_games_have_days_per_move(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        g = await start_game(c, alice, "bob", bob, days=2)
        assert g["clock"]["days_per_move"] == 2
        for token, uci in ((alice, "e2e4"), (bob, "e7e5"), (alice, "g1f3"), (bob, "b8c6")):
            _, state = await move(c, token, g["id"], uci)
        day2 = 2 * 86_400_000
        assert state["clocks"]["black"] == day2, "each move has the full days afresh"
        assert day2 - 5000 < state["clocks"]["white"] <= day2
        _, pgn, _ = await c.call("GET", f"/api/chess/games/{g['id']}/pgn", alice)
        assert '[TimeControl "1/172800"]' in pgn


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_nodes_one_owner_forwarding_and_takeover(tmp_path: Path) -> None:
    async with pg_schema() as schema:
        config = tmp_path / "cluster.yaml"
        config.write_text(
            cluster_yaml(
                schema,
                f"data_dir: {tmp_path / 'data'}\nplugins: {{chess: {{lease_seconds: 2}}}}\n",
            )
        )
        nodes = [spawn_node(config, {"SYNCSTREAM_CLUSTER__NODE_ID": name}) for name in ("a", "b")]
        try:
            for node in nodes:
                await node.wait_ready()
            async with aiohttp.ClientSession() as session:
                a, b = (Client(node.base, session) for node in nodes)
                alice, bob = await a.register("alice"), await b.register("bob")
                g = await start_game(a, alice, "bob", bob)  # node a owns it
                watcher = await b.ws(bob)
                await watcher.request("subscribe", f"chess:{g['id']}")
                assert (await move(a, alice, g["id"], "e2e4"))[0] == 200
                status, state = await move(b, bob, g["id"], "e7e5")  # forwarded to a
                assert status == 200 and state["ply"] == 2, state
                status, problem = await move(b, bob, g["id"], "d7d5")
                assert status == 409 and problem["code"] == "not_your_turn", "errors come back"
                plies = [f["data"]["ply"] for f in await watcher.events(2)]
                assert plies == [1, 2], "both nodes' moves reach a watcher on node b"
                nodes[0].proc.kill()  # the owner dies
                nodes[0].proc.wait()
                await watcher.ws.close()
                for _ in range(100):  # node b takes over once a's lease has run out
                    status, state = await move(b, alice, g["id"], "g1f3")
                    if status == 200:
                        break
                    await asyncio.sleep(0.2)
                assert status == 200 and state["ply"] == 3, state
                _, full, _ = await b.call("GET", f"/api/chess/games/{g['id']}", bob)
                assert full["moves"] == ["e2e4", "e7e5", "g1f3"]
        finally:
            for node in nodes:
                node.stop()
