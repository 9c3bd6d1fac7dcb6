"""The outbox: a room's changes are published after they commit, in version order, each once.

Every change of a room (a message, an edit, a delete, a reaction) writes its event into
``chat_outbox`` in the same transaction that gives it the room's next version. After commit,
the sender hands the room's pending events to the realtime engine; if the broker is away they
stay, and every node's sweeper retries until they are out. So an acknowledged message is
always delivered — live, or (after a broker restart told the client to resync) by sync.

Order: versions commit in order (taking one locks the room row until commit), and a hand-over
deletes the events it publishes inside one transaction, which a concurrent hand-over on
another node (picking the same rows) waits for; the engine's ``publish_ordered`` drops a
version already published (a retry after a lost reply). So subscribers see a room's changes
in version order.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import structlog

from syncstream.sdk import BrokerUnavailable, Gateway, Queries, Store

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 0.5  # how often each node retries what waits in the outbox
SWEEP_ROOMS = 200  # rooms retried per sweep
GRACE_SECONDS = 0.2  # events younger than this are their sender's to hand over
BATCH = 200  # versions published in one step (one Redis script call)


@dataclass
class _Run:
    """A hand-over of one room running on this node; senders meanwhile ask it to go again."""

    done: asyncio.Future[bool]
    again: bool = False


class Outbox:
    def __init__(self, store: Store, gateway: Gateway) -> None:
        self.store, self.gateway = store, gateway
        self._running: dict[str, _Run] = {}

    async def add(self, tx: Queries, room_id: str, version: int, event: dict[str, Any]) -> None:
        """Queue ``event`` (published on ``chat:<room id>``) within the change's transaction."""
        await tx.execute(
            "INSERT INTO chat_outbox (room_id, version, event, created_at) VALUES (?, ?, ?, ?)",
            room_id,
            version,
            json.dumps(event, separators=(",", ":")),
            time.time(),
        )

    async def deliver(self, room_id: str) -> bool:
        """Publish the room's pending events (the caller's committed change among them);
        False if the broker is away (they wait for the sweeper). Concurrent callers for one
        room share one hand-over, which goes once more for those who came while it ran."""
        run = self._running.get(room_id)
        if run is not None:
            run.again = True  # its next pass starts after our commit: it takes our change
            return await asyncio.shield(run.done)
        run = self._running[room_id] = _Run(asyncio.get_running_loop().create_future())
        ok = False
        try:
            ok = await self._drain(room_id, run)
        finally:
            del self._running[room_id]
            run.done.set_result(ok)
        return ok

    async def _drain(self, room_id: str, run: _Run) -> bool:
        try:
            while True:
                run.again = False
                while await self._hand_over(room_id) == BATCH:
                    pass  # a long outage left more: the next versions
                if not run.again:
                    return True
        except BrokerUnavailable:
            return False  # rolled back: the events wait for the next attempt
        except Exception:  # the store, say: the change is committed, the sweeper retries
            log.exception("chat.outbox_deliver_failed", room=room_id)
            return False

    async def _hand_over(self, room_id: str) -> int:
        """Publish the room's next ``BATCH`` versions (a range, so that two nodes at once
        pick the same rows and one waits for the other); returns how many there were."""
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "DELETE FROM chat_outbox WHERE room_id = ? AND version < ("
                " SELECT MIN(version) FROM chat_outbox WHERE room_id = ?) + ?"
                " RETURNING version, event",
                room_id,
                room_id,
                BATCH,
            )
            if rows:
                items = sorted((int(r["version"]), json.loads(r["event"])) for r in rows)
                await self.gateway.publish_ordered(f"chat:{room_id}", items)
        return len(rows)

    async def sweep(self) -> int:
        """Hand over what waits longer than its sender should take; returns rooms done."""
        rows = await self.store.fetchall(
            "SELECT DISTINCT room_id FROM chat_outbox WHERE created_at < ? LIMIT ?",
            time.time() - GRACE_SECONDS,
            SWEEP_ROOMS,
        )
        done = 0
        for row in rows:
            if not await self.deliver(row["room_id"]):
                break  # the broker is away: try again at the next sweep
            done += 1
        return done

    async def run(self) -> None:
        """Sweep until cancelled (a background task of every node)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep()
            except Exception:
                log.exception("chat.outbox_sweep_failed")
