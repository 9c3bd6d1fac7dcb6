"""Tables of the files plugin.

``files_nodes`` holds files and folders of every user as one tree (``parent_id`` '' is the
owner's root). Names are unique per folder among live nodes (case-insensitively, through
``name_key``); trashed nodes keep their place and carry the id of the trash operation that
took them, so a folder and its contents come back together. Name search uses SQLite FTS5
(kept in step by triggers) or a PostgreSQL ``tsvector`` column, both on the same tokens.
"""

from __future__ import annotations

from syncstream.sdk import Migration, Queries

TABLES = """
CREATE TABLE files_nodes (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    mime TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL DEFAULT '{}',
    thumbs TEXT NOT NULL DEFAULT 'none',
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    modified_at DOUBLE PRECISION NOT NULL,
    trashed_at DOUBLE PRECISION,
    trash_id TEXT
);
CREATE UNIQUE INDEX files_nodes_name ON files_nodes (owner_id, parent_id, name_key)
    WHERE trashed_at IS NULL;
CREATE INDEX files_nodes_parent ON files_nodes (parent_id);
CREATE INDEX files_nodes_owner_created ON files_nodes (owner_id, created_at);
CREATE INDEX files_nodes_owner_size ON files_nodes (owner_id, size);
CREATE INDEX files_nodes_owner_mime ON files_nodes (owner_id, mime);
CREATE INDEX files_nodes_trash ON files_nodes (trash_id);
CREATE TABLE files_uploads (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    length BIGINT,
    upload_offset BIGINT NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '',
    node TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    file_id TEXT
);
CREATE INDEX files_uploads_owner ON files_uploads (owner_id);
CREATE INDEX files_uploads_expires ON files_uploads (expires_at);
CREATE TABLE files_shares (
    node_id TEXT NOT NULL REFERENCES files_nodes (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    permission TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (node_id, user_id)
);
CREATE INDEX files_shares_user ON files_shares (user_id);
CREATE TABLE files_links (
    token TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES files_nodes (id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    password_hash TEXT,
    max_downloads BIGINT,
    downloads BIGINT NOT NULL DEFAULT 0,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX files_links_node ON files_links (node_id)
"""

_SQLITE_SEARCH = (
    """CREATE VIRTUAL TABLE files_fts USING fts5(
        name, content='files_nodes', content_rowid='rowid',
        tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER files_fts_insert AFTER INSERT ON files_nodes BEGIN
        INSERT INTO files_fts (rowid, name) VALUES (new.rowid, new.name);
    END""",
    """CREATE TRIGGER files_fts_delete AFTER DELETE ON files_nodes BEGIN
        INSERT INTO files_fts (files_fts, rowid, name) VALUES ('delete', old.rowid, old.name);
    END""",
    """CREATE TRIGGER files_fts_rename AFTER UPDATE OF name ON files_nodes BEGIN
        INSERT INTO files_fts (files_fts, rowid, name) VALUES ('delete', old.rowid, old.name);
        INSERT INTO files_fts (rowid, name) VALUES (new.rowid, new.name);
    END""",
)


async def _sqlite_search(tx: Queries) -> None:
    for statement in _SQLITE_SEARCH:  # trigger bodies hold ';': not a splittable script
        await tx.execute(statement)


SEARCH: Migration = {
    "sqlite": _sqlite_search,
    "postgres": """
        ALTER TABLE files_nodes ADD COLUMN name_tsv tsvector GENERATED ALWAYS AS
            (to_tsvector('simple', regexp_replace(lower(name), '[^[:alnum:]]+', ' ', 'g'))) STORED;
        CREATE INDEX files_nodes_name_tsv ON files_nodes USING GIN (name_tsv)
    """,
}

# A client's Idempotency-Key for the upload it created, unique per user (never across users).
IDEMPOTENCY = """
ALTER TABLE files_uploads ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX files_uploads_idempotency ON files_uploads (created_by, idempotency_key)
"""

MIGRATIONS: list[Migration] = [TABLES, SEARCH, IDEMPOTENCY]
