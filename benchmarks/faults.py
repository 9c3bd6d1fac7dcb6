"""Faults: how long chat takes to recover when Redis restarts or a node is killed.

Runs the fault scenario of ``tests/faults_scenario.py`` ``--runs`` times: two nodes on
PostgreSQL and a Redis of its own, 20 WebSocket clients in 4 rooms sending over their sockets
and HTTP; Redis killed and restarted empty, then a node killed with SIGKILL and restarted.
Recovery after the Redis restart: from Redis answering again until every client has every
message acknowledged before that moment (live, or by sync after its ``resync``). After the
node kill: from the kill until the dead node's clients are subscribed on the other node and
every client has every message acknowledged by then. Also: messages acknowledged, and lost
(must be 0).

    python -m benchmarks.faults --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from tests.faults_scenario import run
from tests.redis_server import own_redis

from .harness import require, save, table, temp_dir


async def once(clients: int) -> dict[str, Any]:
    with temp_dir() as tmp:
        async with own_redis() as redis:
            report = await run(tmp, redis, clients, log=lambda line: None)
    if report.bad:
        raise SystemExit("the scenario failed:\n" + "\n".join(report.bad[:20]))
    return {
        "redis_recovery_s": report.redis_recovery_seconds,
        "node_recovery_s": report.node_recovery_seconds,
        "messages": report.messages,
        "lost": report.lost,
        "accepted_while_redis_down": report.accepted_while_redis_down,
        "answers": dict(report.answers),
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    require("redis-server", "apt-get install redis-server")
    runs = []
    for n in range(args.runs):
        result = await once(args.clients)
        print(f"run {n + 1}: {result}")
        runs.append(result)
    print(
        table(
            [
                ["runs", "recovery after Redis restart s", "after kill -9 of a node s",
                 "messages", "lost"],
                [
                    len(runs),
                    spread([r["redis_recovery_s"] for r in runs]),
                    spread([r["node_recovery_s"] for r in runs]),
                    sum(r["messages"] for r in runs),
                    sum(r["lost"] for r in runs),
                ],
            ]
        )
    )  # fmt: skip
    print("saved", save("faults", {"runs": runs}))


if __name__ == "__main__":
    asyncio.run(main())
