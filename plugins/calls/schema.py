"""Tables of the calls plugin: every call and its participants, for call history."""

from __future__ import annotations

from syncstream.sdk import Migration

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE calls (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        host_id TEXT NOT NULL,
        status TEXT NOT NULL,
        end_reason TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        answered_at DOUBLE PRECISION,
        ended_at DOUBLE PRECISION
    );
    CREATE TABLE call_participants (
        call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        username TEXT NOT NULL,
        state TEXT NOT NULL,
        joined_at DOUBLE PRECISION,
        left_at DOUBLE PRECISION,
        PRIMARY KEY (call_id, user_id)
    );
    CREATE INDEX call_participants_user ON call_participants (user_id, call_id)
    """,
    "ALTER TABLE calls ADD COLUMN route TEXT NOT NULL DEFAULT 'p2p'",
]
