"""Tables of the chat plugin.

Every change in a room (a message, an edit, a delete, a reaction) takes the room's next
``seq``; a message keeps the ``seq`` it was sent with (its place in the history) and the
``version`` of its last change, so a client that saw everything up to version N asks for
``version > N`` and gets each change once, in order, whatever node or restart came between.
``chat_outbox`` holds each change's event until it is published (see ``outbox.py``).
"""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE chat_rooms (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        topic TEXT NOT NULL DEFAULT '',
        visibility TEXT NOT NULL DEFAULT 'public',
        direct_key TEXT UNIQUE,
        stream TEXT UNIQUE,
        created_by TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        last_seq BIGINT NOT NULL DEFAULT 0,
        slow_mode_seconds DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    CREATE TABLE chat_members (
        room_id TEXT NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL DEFAULT 'member',
        joined_at DOUBLE PRECISION NOT NULL,
        last_read_seq BIGINT NOT NULL DEFAULT 0,
        muted_until DOUBLE PRECISION,
        last_sent_at DOUBLE PRECISION,
        PRIMARY KEY (room_id, user_id)
    );
    CREATE INDEX chat_members_user ON chat_members (user_id);
    CREATE TABLE chat_bans (
        room_id TEXT NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        until DOUBLE PRECISION,
        banned_by TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (room_id, user_id)
    );
    CREATE TABLE chat_messages (
        id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        version BIGINT NOT NULL,
        user_id TEXT NOT NULL,
        client_key TEXT,
        text TEXT NOT NULL,
        reply_to TEXT,
        mentions TEXT NOT NULL DEFAULT '[]',
        attachments TEXT NOT NULL DEFAULT '[]',
        reactions TEXT NOT NULL DEFAULT '{}',
        created_at DOUBLE PRECISION NOT NULL,
        edited_at DOUBLE PRECISION,
        deleted_at DOUBLE PRECISION,
        UNIQUE (room_id, seq),
        UNIQUE (room_id, user_id, client_key)
    );
    CREATE INDEX chat_messages_version ON chat_messages (room_id, version);
    CREATE TABLE chat_blocks (
        user_id TEXT NOT NULL,
        blocked_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (user_id, blocked_id)
    )
    """,
    """
    CREATE TABLE chat_status (
        user_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        last_seen_at DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE chat_outbox (
        room_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        event TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (room_id, version)
    )
    """,
]
