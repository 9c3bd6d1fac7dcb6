"""Tables of the admin plugin: notifications (and what each admin has read) and the figures
history (one row per node a minute for a day, one per 15 minutes for a week)."""

from __future__ import annotations

from syncstream.sdk import Migration

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE admin_notifications (
        id TEXT PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        data TEXT NOT NULL,
        node TEXT NOT NULL
    );
    CREATE INDEX admin_notifications_time ON admin_notifications (time);
    CREATE TABLE admin_reads (
        admin_id TEXT PRIMARY KEY,
        read_until DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE admin_samples (
        node TEXT NOT NULL,
        span BIGINT NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (span, time, node)
    )
    """,
]
