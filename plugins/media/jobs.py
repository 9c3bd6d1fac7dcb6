"""The persistent job queue in the store: create, claim with a lease, finish, cancel, retry.

Any node may claim a queued job (highest priority first, then oldest; a user's jobs wait while
they have ``per_user_running`` running). A running job holds a lease its node renews; a job
whose lease ran out (its node died) is queued again while it has attempts left, else failed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from syncstream.sdk import (
    IntegrityError,
    Problem,
    Row,
    Store,
    idempotency_reused,
    iso,
    iso_or_none,
    new_id,
)

MIGRATIONS = [
    """
    CREATE TABLE media_jobs (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        input_id TEXT NOT NULL,
        input_name TEXT NOT NULL,
        op TEXT NOT NULL,
        params TEXT NOT NULL,
        priority BIGINT NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        progress DOUBLE PRECISION NOT NULL DEFAULT 0,
        speed DOUBLE PRECISION,
        eta DOUBLE PRECISION,
        error_code TEXT,
        error TEXT,
        result TEXT NOT NULL DEFAULT '{}',
        node TEXT,
        lease_until DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION
    );
    CREATE INDEX media_jobs_queue ON media_jobs (status, priority, created_at);
    CREATE INDEX media_jobs_user ON media_jobs (user_id, created_at)
    """,
    # A client's Idempotency-Key, unique per user (never across users).
    """
    ALTER TABLE media_jobs ADD COLUMN idempotency_key TEXT;
    CREATE UNIQUE INDEX media_jobs_idempotency ON media_jobs (user_id, idempotency_key)
    """,
]
UNFINISHED = ("queued", "running")
COLUMNS = (
    "id, user_id, input_id, input_name, op, params, priority, status, attempts, progress, speed,"
    " eta, error_code, error, result, node, lease_until, created_at, started_at, finished_at,"
    " idempotency_key"
)


def public(row: Row) -> dict[str, Any]:
    """A job as the API and the realtime topic show it."""
    return {
        "id": row["id"],
        "status": row["status"],
        "operation": json.loads(row["params"]),
        "input": {"id": row["input_id"], "name": row["input_name"]},
        "priority": row["priority"],
        "progress": round(row["progress"], 1),
        "speed": None if row["speed"] is None else round(row["speed"], 2),
        "eta_seconds": None if row["eta"] is None else round(row["eta"], 1),
        "attempts": row["attempts"],
        "error": None
        if row["error_code"] is None
        else {"code": row["error_code"], "detail": row["error"]},
        "result": json.loads(row["result"]),
        "node": row["node"],
        "created_at": iso(row["created_at"]),
        "started_at": iso_or_none(row["started_at"]),
        "finished_at": iso_or_none(row["finished_at"]),
    }


class Jobs:
    def __init__(self, store: Store, node_id: str) -> None:
        self.store = store
        self.node_id = node_id

    async def create(
        self,
        *,
        user_id: str,
        input_id: str,
        input_name: str,
        params: dict[str, Any],
        priority: int,
        per_user_queued: int,
        idempotency_key: str | None = None,
    ) -> tuple[Row, bool]:
        """(a queued job, True); with ``idempotency_key``, (the user's job made with that key,
        False) if there is one (the same request again), 422 if a different request made it."""
        if idempotency_key is not None:
            existing = await self._by_key(user_id, idempotency_key)
            if existing is not None:
                return self._replayed(existing, input_id, params, priority), False
        unfinished = await self.store.fetchval(
            "SELECT COUNT(*) FROM media_jobs WHERE user_id = ? AND status IN ('queued', 'running')",
            user_id,
        )
        if int(unfinished) >= per_user_queued:
            raise Problem(
                429,
                "too_many_jobs",
                f"you have {unfinished} unfinished jobs (limit {per_user_queued})",
            )
        row: Row = {
            "id": new_id(),
            "user_id": user_id,
            "input_id": input_id,
            "input_name": input_name,
            "op": params["op"],
            "params": json.dumps(params),
            "priority": priority,
            "status": "queued",
            "created_at": time.time(),
            "idempotency_key": idempotency_key,
        }
        try:
            await self.store.execute(
                f"INSERT INTO media_jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                *row.values(),
            )
        except IntegrityError:  # the same key, sent at the same time: the first one won
            existing = await self._by_key(user_id, idempotency_key or "")
            if existing is None:
                raise
            return self._replayed(existing, input_id, params, priority), False
        return await self.get(row["id"]), True

    async def _by_key(self, user_id: str, key: str) -> Row | None:
        return await self.store.fetchone(
            f"SELECT {COLUMNS} FROM media_jobs WHERE user_id = ? AND idempotency_key = ?",
            user_id,
            key,
        )

    @staticmethod
    def _replayed(row: Row, input_id: str, params: dict[str, Any], priority: int) -> Row:
        same = (row["input_id"], json.loads(row["params"]), row["priority"])
        if same != (input_id, params, priority):
            raise idempotency_reused()
        return row

    async def counts(self, user_id: str | None = None) -> dict[str, float]:
        """One user's jobs by status; without a user, the queue now (queued and running,
        counted on the queue's index: the dashboard asks every few seconds)."""
        where, args = (
            ("WHERE user_id = ?", [user_id]) if user_id
            else ("WHERE status IN ('queued', 'running')", [])
        )  # fmt: skip
        rows = await self.store.fetchall(
            f"SELECT status, COUNT(*) AS n FROM media_jobs {where} GROUP BY status", *args
        )
        return {row["status"]: float(row["n"]) for row in rows}

    async def get(self, job_id: str) -> Row:
        row = await self.store.fetchone(
            f"SELECT {COLUMNS} FROM media_jobs WHERE id = ?", job_id[:64]
        )
        if row is None:
            raise Problem(404, "job_not_found", f"no job {job_id[:64]}")
        return row

    async def owned(self, job_id: str, user_id: str, admin: bool = False) -> Row:
        row = await self.get(job_id)
        if row["user_id"] != user_id and not admin:
            raise Problem(404, "job_not_found", f"no job {job_id[:64]}")
        return row

    async def page(
        self, user_id: str, status: str | None, limit: int, before: str | None
    ) -> list[Row]:
        where, args = ["user_id = ?"], [user_id]
        if status:
            where.append("status = ?")
            args.append(status)
        if before:
            where.append("id < ?")
            args.append(before)
        return await self.store.fetchall(
            f"SELECT {COLUMNS} FROM media_jobs WHERE {' AND '.join(where)}"
            " ORDER BY id DESC LIMIT ?",
            *args,
            limit,
        )

    async def claim(self, per_user_running: int, lease_seconds: float) -> Row | None:
        """Take the next runnable job for this node, or None."""
        lock = " FOR UPDATE SKIP LOCKED" if self.store.dialect == "postgres" else ""
        now = time.time()
        async with self.store.transaction() as tx:
            row = await tx.fetchone(
                "SELECT j.id FROM media_jobs j WHERE j.status = 'queued' AND (SELECT COUNT(*)"
                " FROM media_jobs r WHERE r.user_id = j.user_id AND r.status = 'running') < ?"
                f" ORDER BY j.priority DESC, j.created_at, j.id LIMIT 1{lock}",
                per_user_running,
            )
            if row is None:
                return None
            await tx.execute(
                "UPDATE media_jobs SET status = 'running', node = ?, lease_until = ?,"
                " attempts = attempts + 1, started_at = ?, progress = 0, speed = NULL, eta = NULL"
                " WHERE id = ? AND status = 'queued'",
                self.node_id,
                now + lease_seconds,
                now,
                row["id"],
            )
        return await self.get(row["id"])

    async def renew(self, job_ids: list[str], lease_seconds: float) -> set[str]:
        """Extend this node's leases; returns the ids no longer running here (cancelled)."""
        if not job_ids:
            return set()
        marks = ", ".join("?" * len(job_ids))
        await self.store.execute(
            f"UPDATE media_jobs SET lease_until = ? WHERE id IN ({marks}) AND status = 'running'"
            " AND node = ?",
            time.time() + lease_seconds,
            *job_ids,
            self.node_id,
        )
        rows = await self.store.fetchall(
            f"SELECT id FROM media_jobs WHERE id IN ({marks}) AND status = 'running' AND node = ?",
            *job_ids,
            self.node_id,
        )
        return set(job_ids) - {r["id"] for r in rows}

    async def running_elsewhere(self, job_id: str) -> bool:
        """Whether another node runs this job now."""
        node = await self.store.fetchval(
            "SELECT node FROM media_jobs WHERE id = ? AND status = 'running'", job_id
        )
        return node is not None and node != self.node_id

    async def progress(
        self, job_id: str, percent: float, speed: float | None, eta: float | None
    ) -> None:
        await self.store.execute(
            "UPDATE media_jobs SET progress = ?, speed = ?, eta = ?"
            " WHERE id = ? AND status = 'running'",
            percent,
            speed,
            eta,
            job_id,
        )

    async def finish(
        self,
        job_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        code: str | None = None,
        error: str | None = None,
    ) -> Row:
        """Mark a running job done, failed or canceled (a job cancelled meanwhile stays so)."""
        await self.store.execute(
            "UPDATE media_jobs SET status = ?, result = ?, error_code = ?, error = ?,"
            " finished_at = ?, lease_until = NULL, eta = NULL,"
            " progress = CASE WHEN ? = 'done' THEN 100 ELSE progress END"
            " WHERE id = ? AND status = 'running'",
            status,
            json.dumps(result or {}),
            code,
            error,
            time.time(),
            status,
            job_id,
        )
        return await self.get(job_id)

    async def cancel(self, row: Row) -> Row:
        if row["status"] not in UNFINISHED:
            raise Problem(409, "job_finished", f"the job is already {row['status']}")
        await self.store.execute(
            "UPDATE media_jobs SET status = 'canceled', finished_at = ?, error_code = 'canceled',"
            " error = 'cancelled by the user', lease_until = NULL WHERE id = ? AND status IN"
            " ('queued', 'running')",
            time.time(),
            row["id"],
        )
        return await self.get(row["id"])

    async def retry(self, row: Row) -> Row:
        if row["status"] not in ("failed", "canceled"):
            raise Problem(409, "job_not_retryable", f"a {row['status']} job cannot be retried")
        await self.store.execute(
            "UPDATE media_jobs SET status = 'queued', attempts = 0, progress = 0,"
            " error_code = NULL, error = NULL, result = '{}', node = NULL, started_at = NULL,"
            " finished_at = NULL"
            " WHERE id = ?",
            row["id"],
        )
        return await self.get(row["id"])

    async def delete(self, job_id: str) -> None:
        await self.store.execute("DELETE FROM media_jobs WHERE id = ?", job_id)

    async def recover(self, max_attempts: int, everyone: bool = False) -> list[Row]:
        """Jobs whose node died (lease expired; with ``everyone``, every running job: a single
        node that restarts): queued again while attempts remain, else failed."""
        now = time.time()
        if everyone:
            rows = await self.store.fetchall(
                f"SELECT {COLUMNS} FROM media_jobs WHERE status = 'running'"
            )
        else:
            rows = await self.store.fetchall(
                f"SELECT {COLUMNS} FROM media_jobs WHERE status = 'running' AND lease_until < ?",
                now,
            )
        changed = []
        for row in rows:
            if row["attempts"] < max_attempts:
                await self.store.execute(
                    "UPDATE media_jobs SET status = 'queued', node = NULL, lease_until = NULL,"
                    " progress = 0 WHERE id = ? AND status = 'running'",
                    row["id"],
                )
            else:
                await self.store.execute(
                    "UPDATE media_jobs SET status = 'failed', error_code = 'node_lost', error = ?,"
                    " finished_at = ?, lease_until = NULL WHERE id = ? AND status = 'running'",
                    f"the node running it stopped {row['attempts']} times",
                    now,
                    row["id"],
                )
            changed.append(await self.get(row["id"]))
        return changed
