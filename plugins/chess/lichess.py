"""Our games and challenges as lichess's Board API documents (its OpenAPI schemas
``GameFullEvent``, ``GameStateEvent``, ``ChatLineEvent``, ``OpponentGoneEvent``,
``GameEventInfo``, ``ChallengeJson``), so Board API bots and clients (berserk) can play here.

Pure functions of the dicts :class:`~plugins.chess.game.Game` builds (``full()`` /
``state()``) and of the challenge rows: times in milliseconds, moves as space-separated UCI,
lichess's status names, player ids as lowercase usernames (as lichess's are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import chess

STANDARD = {"key": "standard", "name": "Standard", "short": "Std"}
FROM_POSITION = {"key": "fromPosition", "name": "From Position", "short": "FEN"}
STATUS_IDS = {
    "created": 10, "started": 20, "aborted": 25, "mate": 30, "resign": 31, "stalemate": 32,
    "timeout": 33, "draw": 34, "outoftime": 35, "unknownFinish": 38,
}  # fmt: skip
# Our terminations -> lichess's status names. lichess calls a won claim against an opponent
# who left "timeout", a fallen flag "outoftime" (without a winner when the other side
# cannot mate), every kind of draw "draw".
TERMINATION_STATUS = {
    "checkmate": "mate", "resign": "resign", "stalemate": "stalemate",
    "timeout": "outoftime", "timeout_vs_insufficient_material": "outoftime",
    "abandoned": "timeout", "aborted": "aborted", "ended_by_admin": "aborted",
    "agreement": "draw", "threefold_repetition": "draw", "fifty_moves": "draw",
    "fivefold_repetition": "draw", "seventyfive_moves": "draw",
    "insufficient_material": "draw",
}  # fmt: skip
SPEEDS = ((30, "ultraBullet"), (180, "bullet"), (480, "blitz"), (1500, "rapid"))
PERF_NAMES = {
    "ultraBullet": "UltraBullet", "bullet": "Bullet", "blitz": "Blitz", "rapid": "Rapid",
    "classical": "Classical", "correspondence": "Correspondence",
}  # fmt: skip


def user_id(username: str) -> str:
    """A lichess user id: the username in lower case."""
    return username.lower()


def status_name(status: str, termination: str | None) -> str:
    if status == "started":
        return "started"
    return TERMINATION_STATUS.get(termination or "", "unknownFinish")


def winner(result: str) -> str | None:
    return {"1-0": "white", "0-1": "black"}.get(result)


def speed(base_ms: int, increment_ms: int, days: float | None) -> str:
    """lichess's speed: from the estimated duration, base + 40 increments, in seconds."""
    if days:
        return "correspondence"
    estimate = base_ms / 1000 + 40 * increment_ms / 1000
    return next((name for limit, name in SPEEDS if estimate < limit), "classical")


def variant(initial_fen: str) -> dict[str, str]:
    return STANDARD if initial_fen == chess.STARTING_FEN else FROM_POSITION


def player(username: str, rating: Mapping[str, Any] | None) -> dict[str, Any]:
    """A ``GameEventPlayer``; ``rating``: ``{"rating", "provisional"}`` if known."""
    out: dict[str, Any] = {"id": user_id(username), "name": username, "title": None}
    if rating is not None:
        out |= {"rating": round(rating["rating"]), "provisional": bool(rating["provisional"])}
    return out


def game_state(state: Mapping[str, Any], moves: Sequence[str], increment: int) -> dict[str, Any]:
    """A ``gameState`` from one of our states, the game's moves (UCI) and its increment."""
    clock = state["clocks"]
    out: dict[str, Any] = {
        "type": "gameState",
        "moves": " ".join(moves),
        "wtime": clock["white"],
        "btime": clock["black"],
        "winc": increment,
        "binc": increment,
        "status": status_name(state["status"], state["termination"]),
    }
    won = winner(state["result"])
    if won is not None:
        out["winner"] = won
    for side, letter in (("white", "w"), ("black", "b")):  # true when offering, else omitted
        if state["draw_offer"] == side:
            out[f"{letter}draw"] = True
        if state["takeback_offer"] == side:
            out[f"{letter}takeback"] = True
    return out


def game_full(full: Mapping[str, Any], ratings: Mapping[str, Any]) -> dict[str, Any]:
    """A ``gameFull`` from :meth:`Game.full`; ``ratings``: side -> rating (or None)."""
    clock = full["clock"]
    days = clock.get("days_per_move")
    kind = speed(clock["base_ms"], clock["increment_ms"], days)
    out: dict[str, Any] = {
        "type": "gameFull",
        "id": full["id"],
        "variant": variant(full["initial_fen"]),
        "speed": kind,
        "perf": {"name": PERF_NAMES[kind]},
        "rated": full["rated"],
        "createdAt": int(full["created_at"] * 1000),
        "white": player(full["white"]["username"], ratings.get("white")),
        "black": player(full["black"]["username"], ratings.get("black")),
        "initialFen": "startpos"
        if full["initial_fen"] == chess.STARTING_FEN
        else full["initial_fen"],
        "state": game_state(full, full["moves"], clock["increment_ms"]),
    }
    if days:
        out["daysPerTurn"] = int(days)
    else:
        out["clock"] = {"initial": clock["base_ms"], "increment": clock["increment_ms"]}
    return out


def game_info(
    full: Mapping[str, Any], side: str, ratings: Mapping[str, Any], rating_diff: int | None = None
) -> dict[str, Any]:
    """The ``game`` of a ``gameStart`` / ``gameFinish`` event, as ``side`` sees it."""
    other = "black" if side == "white" else "white"
    clock = full["clock"]
    kind = speed(clock["base_ms"], clock["increment_ms"], clock.get("days_per_move"))
    name = status_name(full["status"], full["termination"])
    opponent: dict[str, Any] = {
        "id": user_id(full[other]["username"]),
        "username": full[other]["username"],
    }
    if ratings.get(other) is not None:
        opponent["rating"] = round(ratings[other]["rating"])
    out: dict[str, Any] = {
        "fullId": full["id"],
        "gameId": full["id"],
        "id": full["id"],
        "fen": full["fen"],
        "color": side,
        "lastMove": full["last_move"]["uci"] if full["last_move"] else "",
        "source": "friend" if full["initial_fen"] == chess.STARTING_FEN else "position",
        "status": {"id": STATUS_IDS[name], "name": name},
        "variant": variant(full["initial_fen"]),
        "speed": kind,
        "perf": kind,
        "rated": full["rated"],
        "hasMoved": any(i % 2 == (0 if side == _first(full) else 1) for i in range(full["ply"])),
        "opponent": opponent,
        "isMyTurn": full["status"] == "started" and full["turn"] == side,
        "secondsLeft": full["clocks"][side] // 1000,
        "compat": {"bot": True, "board": True},
    }
    won = winner(full["result"])
    if won is not None:
        out["winner"] = won
    if rating_diff is not None:
        out["ratingDiff"] = rating_diff
    return out


def _first(full: Mapping[str, Any]) -> str:
    return "white" if full["initial_fen"].split()[1] == "w" else "black"


def challenge(
    row: Mapping[str, Any],
    challenger: Mapping[str, Any],
    dest: Mapping[str, Any] | None,
    base_url: str,
    direction: str | None = None,
) -> dict[str, Any]:
    """A ``ChallengeJson`` from a challenge row; ``challenger`` / ``dest``: ``{"username",
    "rating", "provisional"}`` (``dest`` None: an open challenge)."""
    days = row["per_move_ms"] // 86_400_000 if row["per_move_ms"] else None
    kind = speed(row["base_ms"], row["increment_ms"], days)
    control: dict[str, Any] = (
        {"type": "correspondence", "daysPerTurn": days}
        if days
        else {
            "type": "clock",
            "limit": row["base_ms"] // 1000,
            "increment": row["increment_ms"] // 1000,
            "show": f"{_minutes(row['base_ms'])}+{row['increment_ms'] // 1000}",
        }
    )
    status = {"pending": "created"}.get(row["status"], row["status"])
    out: dict[str, Any] = {
        "id": row["id"],
        "url": f"{base_url}/api/chess/games/{row['game_id'] or row['id']}",
        "status": status,
        "challenger": _challenge_user(challenger),
        "destUser": None if dest is None else _challenge_user(dest),
        "variant": variant(row["initial_fen"]),
        "rated": bool(row["rated"]),
        "speed": kind,
        "timeControl": control,
        "color": row["color"],
        "perf": {"icon": "", "name": PERF_NAMES[kind]},
    }
    if row["initial_fen"] != chess.STARTING_FEN:
        out["initialFen"] = row["initial_fen"]
    if direction is not None:
        out["direction"] = direction
    return out


def _challenge_user(user: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": user_id(user["username"]),
        "name": user["username"],
        "rating": round(user["rating"]),
        "provisional": bool(user["provisional"]),
    }


def _minutes(ms: int) -> str:
    minutes = ms / 60_000
    return (
        str(int(minutes))
        if minutes == int(minutes)
        else {0.25: "¼", 0.5: "½", 0.75: "¾"}.get(minutes, f"{minutes:g}")
    )
