"""lichess's Board API: two berserk clients (the Python lichess client, from PyPI) pointed at
our base URL challenge each other, follow their event streams and play a game; the NDJSON
documents are checked against lichess's schemas (GameFullEvent, GameStateEvent, ...)."""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import berserk
import pytest
from berserk.exceptions import ResponseError

from plugins.chess import lichess

from .support import Client, cluster_yaml, pg_schema, running, spawn_node

END = object()
# Required fields of lichess's documents (doc/specs/schemas/*.yaml of lichess-org/api).
GAME_FULL = {"type", "id", "variant", "speed", "perf", "rated", "createdAt", "white", "black",
             "initialFen", "state"}  # fmt: skip
GAME_STATE = {"type", "moves", "wtime", "btime", "winc", "binc", "status"}
CHALLENGE = {"id", "url", "status", "challenger", "destUser", "variant", "rated", "speed",
             "timeControl", "color", "perf"}  # fmt: skip
STATUS_NAMES = {"created", "started", "aborted", "mate", "resign", "stalemate", "timeout",
                "draw", "outoftime", "cheat", "noStart", "unknownFinish",
                "insufficientMaterialClaim", "variantEnd"}  # fmt: skip


def follow(lines: Callable[[], Iterator[Any]]) -> queue.Queue[Any]:
    """Read a berserk stream in a thread (berserk blocks); its items arrive in the queue."""
    items: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            for item in lines():
                items.put(item)
        except Exception as exc:  # the server went away at the end of the test
            items.put(exc)
        items.put(END)

    threading.Thread(target=run, daemon=True).start()
    return items


async def next_item(
    items: queue.Queue[Any], match: Callable[[Any], bool] = lambda _: True, wait: float = 30.0
) -> Any:
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "nothing came"
        try:
            item = await asyncio.to_thread(items.get, True, min(left, 1.0))
        except queue.Empty:
            continue
        assert item is not END and not isinstance(item, Exception), item
        if match(item):
            return item


async def ended(items: queue.Queue[Any], wait: float = 30.0) -> list[Any]:
    """The rest of a stream, which must end by itself."""
    rest, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            item = await asyncio.to_thread(items.get, True, 1.0)
        except queue.Empty:
            continue
        if item is END:
            return rest
        assert not isinstance(item, Exception), item
        rest.append(item)
    raise AssertionError("the stream did not end")


def lichess_client(c: Client, token: str) -> berserk.Client:
    return berserk.Client(berserk.TokenSession(token), base_url=c.base)


async def test_two_berserk_clients_play_a_game_through_the_board_api(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = lichess_client(c, await c.register("Alice"))
        bob = lichess_client(c, await c.register("bob"))
        me = await asyncio.to_thread(alice.account.get)
        assert me["id"] == "alice" and me["username"] == "Alice"
        alice_events = follow(alice.board.stream_incoming_events)
        bob_events = follow(bob.board.stream_incoming_events)

        challenge = await asyncio.to_thread(
            alice.challenges.create, "bob", False, clock_limit=60, clock_increment=0,
            color="white",
        )  # fmt: skip
        assert challenge.keys() >= CHALLENGE and challenge["status"] == "created"
        assert challenge["destUser"]["id"] == "bob" and challenge["challenger"]["name"] == "Alice"
        assert challenge["timeControl"] == {"type": "clock", "limit": 60, "increment": 0,
                                            "show": "1+0"}  # fmt: skip
        assert challenge["speed"] == "bullet" and challenge["direction"] == "out"
        event = await next_item(bob_events, lambda e: e["type"] == "challenge")
        assert event["challenge"]["id"] == challenge["id"]
        assert event["challenge"]["direction"] == "in"
        mine = await asyncio.to_thread(bob.challenges.get_mine)
        assert [x["id"] for x in mine["in"]] == [challenge["id"]] and mine["out"] == []
        await asyncio.to_thread(bob.challenges.accept, challenge["id"])

        game_id = challenge["id"]  # as on lichess, the game has the challenge's id
        for events, color in ((alice_events, "white"), (bob_events, "black")):
            start = await next_item(events, lambda e: e["type"] == "gameStart")
            game = start["game"]
            assert game["gameId"] == game["id"] == game_id and game["color"] == color
            assert game["isMyTurn"] == (color == "white") and game["status"]["name"] == "started"
            assert game["opponent"]["rating"] == 1500 and game["secondsLeft"] == 60

        white = follow(lambda: alice.board.stream_game_state(game_id))
        black = follow(lambda: bob.board.stream_game_state(game_id))
        for stream in (white, black):
            full = await next_item(stream)
            assert full["type"] == "gameFull" and full.keys() >= GAME_FULL
            assert full["white"]["id"] == "alice" and full["black"]["name"] == "bob"
            assert full["white"]["rating"] == 1500 and full["white"]["provisional"]
            assert full["clock"] == {"initial": 60_000, "increment": 0}
            assert full["initialFen"] == "startpos" and full["variant"]["key"] == "standard"
            assert full["state"].keys() >= GAME_STATE and full["state"]["moves"] == ""
            assert full["state"]["wtime"] == 60_000 and full["state"]["status"] == "started"

        await asyncio.to_thread(alice.board.post_message, game_id, "good luck")
        line = await next_item(black)
        assert line == {"type": "chatLine", "room": "player", "username": "Alice",
                        "text": "good luck"}  # fmt: skip
        await asyncio.to_thread(bob.board.offer_draw, game_id)
        for stream in (white, black):
            state = await next_item(stream, lambda e: e["type"] == "gameState")
            assert state["bdraw"] is True and "wdraw" not in state and state["moves"] == ""
        await asyncio.to_thread(alice.board.decline_draw, game_id)
        for stream in (white, black):
            state = await next_item(stream, lambda e: e["type"] == "gameState")
            assert "bdraw" not in state

        with pytest.raises(ResponseError):  # not bob's turn
            await asyncio.to_thread(bob.board.make_move, game_id, "e7e5")
        with pytest.raises(ResponseError):  # a null move is no move
            await asyncio.to_thread(alice.board.make_move, game_id, "0000")

        line_ = ["e2e4", "e7e5", "f1c4", "b8c6", "d1h5", "g8f6", "h5f7"]  # scholar's mate
        for ply, uci in enumerate(line_):
            player = (alice, bob)[ply % 2]
            await asyncio.to_thread(player.board.make_move, game_id, uci)
            for stream in (white, black):
                state = await next_item(stream, lambda e: e["type"] == "gameState")
                assert state.keys() >= GAME_STATE and state["status"] in STATUS_NAMES
                assert state["moves"] == " ".join(line_[: ply + 1])
                assert state["winc"].total_seconds() == 0  # berserk reads ms as timedelta
                assert 0 < state["wtime"].total_seconds() <= 60
        assert state["status"] == "mate" and state["winner"] == "white"
        for stream in (white, black):
            rest = await ended(stream)
            assert all(e["type"] == "gameState" for e in rest), "the stream ends with the game"

        for events in (alice_events, bob_events):
            finish = await next_item(events, lambda e: e["type"] == "gameFinish")
            assert finish["game"]["id"] == game_id and finish["game"]["winner"] == "white"
            assert finish["game"]["status"] == {"id": 30, "name": "mate"}
        exported, _, _ = await c.call("GET", f"/api/chess/games/{game_id}")
        assert exported == 200


async def test_challenges_declined_canceled_and_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = lichess_client(c, await c.register("alice"))
        bob = lichess_client(c, await c.register("bob"))
        alice_events = follow(alice.board.stream_incoming_events)
        first = await asyncio.to_thread(
            alice.challenges.create, "bob", False, clock_limit=180, clock_increment=2
        )
        await asyncio.to_thread(bob.challenges.decline, first["id"])
        event = await next_item(alice_events, lambda e: e["type"] == "challengeDeclined")
        assert event["challenge"]["id"] == first["id"]
        assert event["challenge"]["status"] == "declined"
        second = await asyncio.to_thread(alice.challenges.create, "bob", False, days=3)
        assert second["timeControl"] == {"type": "correspondence", "daysPerTurn": 3}
        assert second["speed"] == "correspondence"
        await asyncio.to_thread(alice.challenges.cancel, second["id"])
        event = await next_item(alice_events, lambda e: e["type"] == "challengeCanceled")
        assert event["challenge"]["id"] == second["id"]
        with pytest.raises(ResponseError) as refused:  # rated from a custom position
            await asyncio.to_thread(
                alice.challenges.create, "bob", True, clock_limit=60, clock_increment=0,
                position="4k3/8/8/8/8/8/4P3/4K3 w - - 0 1",
            )  # fmt: skip
        problem = json.loads(refused.value.response.text)  # type: ignore[attr-defined]
        assert problem["code"] == "rated_custom_position"
        # Form-encoded, as lichess documents it: a from-position casual game.
        status, body, _ = await c.call(
            "POST", "/api/challenge/bob", c.tokens["alice"],
            data={"clock.limit": "300", "clock.increment": "0",
                  "fen": "4k3/8/8/8/8/8/4P3/4K3 w - - 0 1"},
        )  # fmt: skip
        assert status == 200 and body["variant"]["key"] == "fromPosition", body
        assert body["initialFen"] == "4k3/8/8/8/8/8/4P3/4K3 w - - 0 1"
        # The limit alone (berserk sends the increment as null): no increment, as 5+0.
        only_limit = await asyncio.to_thread(alice.challenges.create, "bob", False, clock_limit=300)
        assert only_limit["timeControl"] == {"type": "clock", "limit": 300, "increment": 0,
                                             "show": "5+0"}  # fmt: skip
        status, body, _ = await c.call(
            "POST", "/api/challenge/bob", c.tokens["alice"], data={"clock.limit": "600"}
        )
        assert status == 200 and body["timeControl"]["increment"] == 0, body
        status, body, _ = await c.call(
            "POST", "/api/challenge/bob", c.tokens["alice"], data={"clock.increment": "2"}
        )
        assert status == 200 and body["timeControl"]["limit"] == 0, body
        with pytest.raises(ResponseError) as refused:  # no clock and no days: unlimited
            await asyncio.to_thread(alice.challenges.create, "bob", False)
        problem = json.loads(refused.value.response.text)  # type: ignore[attr-defined]
        assert problem["code"] == "invalid_clock"


async def test_the_spectator_stream_is_lichess_shaped_and_anonymous(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice, bob = await c.register("alice"), await c.register("bob")
        _, challenge, _ = await c.call(
            "POST", "/api/chess/challenges", alice,
            json={"username": "bob", "color": "white", "base_seconds": 60,
                  "increment_seconds": 1},
        )  # fmt: skip
        _, game, _ = await c.call("POST", f"/api/chess/challenges/{challenge['id']}/accept", bob)
        gid = game["id"]
        async with c.session.get(c.url(f"/api/chess/games/{gid}/stream")) as resp:
            full = json.loads(await resp.content.readline())
            assert full["type"] == "gameFull" and full.keys() >= GAME_FULL
            assert full["clock"] == {"initial": 60_000, "increment": 1000}
            await c.call("POST", f"/api/chess/games/{gid}/move/e4", alice)
            state = json.loads(await resp.content.readline())
            assert state.keys() >= GAME_STATE and state["moves"] == "e2e4"
            assert (state["winc"], state["binc"]) == (1000, 1000)
            await c.call("POST", f"/api/chess/games/{gid}/draw_offer", bob)
            assert json.loads(await resp.content.readline())["bdraw"] is True
            await c.call("POST", f"/api/chess/games/{gid}/move/e5", bob)
            await c.call("POST", f"/api/chess/games/{gid}/move/Nf3", alice)  # lapses bob's offer
            await c.call("POST", f"/api/chess/games/{gid}/takeback_offer", alice)
            await c.call("POST", f"/api/chess/games/{gid}/takeback_accept", bob)
            await c.call("POST", f"/api/chess/games/{gid}/resign", bob)
            states = [json.loads(line) for line in (await resp.content.read()).splitlines()]
        moves = [s["moves"] for s in states]
        assert moves == ["e2e4 e7e5", "e2e4 e7e5 g1f3", "e2e4 e7e5 g1f3", "e2e4 e7e5",
                         "e2e4 e7e5"], moves  # fmt: skip
        assert states[2]["wtakeback"] is True and "bdraw" not in states[1]
        assert states[-1]["status"] == "resign" and states[-1]["winner"] == "white"
        status, _, _ = await c.call("GET", f"/api/board/game/stream/{gid}")
        assert status == 401, "the players' stream needs their token"


async def test_a_board_api_player_is_present_and_sees_the_opponent_go(tmp_path: Path) -> None:
    async with running(tmp_path) as c:
        alice = lichess_client(c, await c.register("alice"))
        bob_token = await c.register("bob")
        challenge = await asyncio.to_thread(
            alice.challenges.create, "bob", False, clock_limit=600, clock_increment=0,
            color="white",
        )  # fmt: skip
        game_id = challenge["id"]
        await c.call("POST", f"/api/challenge/{game_id}/accept", bob_token)
        white = follow(lambda: alice.board.stream_game_state(game_id))
        assert (await next_item(white))["type"] == "gameFull"
        gone = await next_item(white)
        assert gone == {"type": "opponentGone", "gone": True, "claimWinInSeconds": 30}
        url = c.url(f"/api/board/game/stream/{game_id}")
        async with c.session.get(url, headers={"Authorization": f"Bearer {bob_token}"}) as resp:
            assert json.loads(await resp.content.readline())["type"] == "gameFull"
            back = await next_item(white, lambda e: e["type"] == "opponentGone")
            assert back == {"type": "opponentGone", "gone": False}
            # Bob never acted, but his stream is open: he is there, no win to claim.
            with pytest.raises(ResponseError) as refused:
                await asyncio.to_thread(alice.board.claim_victory, game_id)
            problem = json.loads(refused.value.response.text)  # type: ignore[attr-defined]
            assert problem["code"] == "opponent_present"
        again = await next_item(white, lambda e: e["type"] == "opponentGone", wait=60)
        assert again["gone"] is True, "bob's stream closed: gone again"
        await asyncio.to_thread(alice.board.claim_victory, game_id)
        state = await next_item(white, lambda e: e["type"] == "gameState")
        assert state["status"] == "timeout" and state["winner"] == "white"


def test_every_way_a_game_ends_has_a_lichess_status() -> None:
    """Each termination the game logic writes (game.py, service.py) maps to one of
    lichess's status names; a finished game never shows as unknownFinish."""
    source = "".join(
        (Path(__file__).parents[1] / "plugins" / "chess" / name).read_text()
        for name in ("game.py", "service.py")
    )
    written = set(re.findall(r'(?:self\.end|_flag|\.stop)\([^)]*?"([a-z_]+)"\)', source))
    written |= set(re.findall(r'return "([a-z_]+)"\n', source))  # draw claims
    assert {"checkmate", "timeout", "threefold_repetition", "ended_by_admin"} <= written
    for termination in written:
        name = lichess.status_name("ended", termination)
        assert name in STATUS_NAMES and name != "unknownFinish", termination
    assert lichess.status_name("started", None) == "started"


@pytest.mark.postgres
@pytest.mark.redis
async def test_board_api_players_on_two_nodes(tmp_path: Path) -> None:
    """Alice plays on node a (which owns the game), bob on node b: challenges, events,
    moves, chat and presence cross between the nodes over Redis."""
    async with pg_schema() as schema:
        config = tmp_path / "cluster.yaml"
        config.write_text(cluster_yaml(schema, f"data_dir: {tmp_path / 'data'}\n"))
        nodes = [spawn_node(config, {"SYNCSTREAM_CLUSTER__NODE_ID": name}) for name in "ab"]
        try:
            for node in nodes:
                await node.wait_ready()
            async with aiohttp.ClientSession() as session:
                a, b = (Client(node.base, session) for node in nodes)
                alice = lichess_client(a, await a.register("alice"))
                bob = lichess_client(b, await b.register("bob"))
                bob_events = follow(bob.board.stream_incoming_events)
                challenge = await asyncio.to_thread(
                    alice.challenges.create, "bob", False, clock_limit=300, clock_increment=3,
                    color="white",
                )  # fmt: skip
                event = await next_item(bob_events, lambda e: e["type"] == "challenge")
                assert event["challenge"]["id"] == challenge["id"]
                await asyncio.to_thread(bob.challenges.accept, challenge["id"])
                start = await next_item(bob_events, lambda e: e["type"] == "gameStart")
                game_id = start["game"]["id"]
                white = follow(lambda: alice.board.stream_game_state(game_id))
                assert (await next_item(white))["type"] == "gameFull"
                gone = await next_item(white)
                assert gone["type"] == "opponentGone" and gone["gone"] is True
                black = follow(lambda: bob.board.stream_game_state(game_id))
                assert (await next_item(black))["type"] == "gameFull"
                back = await next_item(white, lambda e: e["type"] == "opponentGone")
                assert back["gone"] is False, "bob's stream on node b is presence for node a"
                await asyncio.to_thread(bob.board.post_message, game_id, "hi from b")
                line = await next_item(white, lambda e: e["type"] == "chatLine")
                assert line["text"] == "hi from b" and line["username"] == "bob"
                for ply, uci in enumerate(["d2d4", "d7d5", "c2c4"]):
                    await asyncio.to_thread((alice, bob)[ply % 2].board.make_move, game_id, uci)
                    for stream in (white, black):
                        state = await next_item(stream, lambda e: e["type"] == "gameState")
                        assert state["moves"].split()[-1] == uci
                await asyncio.to_thread(bob.board.resign_game, game_id)
                finish = await next_item(bob_events, lambda e: e["type"] == "gameFinish")
                assert finish["game"]["status"]["name"] == "resign"
                assert finish["game"]["winner"] == "white"
        finally:
            for node in nodes:
                node.stop()
