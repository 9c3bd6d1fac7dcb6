"""Tables of the chess plugin: games with their clocks, every accepted move, challenges,
Glicko-2 ratings."""

from __future__ import annotations

from syncstream.sdk import Migration

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE chess_games (
        id TEXT PRIMARY KEY,
        white_id TEXT NOT NULL,
        black_id TEXT NOT NULL,
        rated BIGINT NOT NULL,
        base_ms BIGINT NOT NULL,
        increment_ms BIGINT NOT NULL,
        initial_fen TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT NOT NULL DEFAULT '*',
        termination TEXT,
        seq BIGINT NOT NULL DEFAULT 0,
        draw_offer TEXT,
        takeback_offer TEXT,
        white_ms BIGINT NOT NULL,
        black_ms BIGINT NOT NULL,
        running TEXT,
        running_since DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        ended_at DOUBLE PRECISION
    );
    CREATE INDEX chess_games_white ON chess_games (white_id, created_at);
    CREATE INDEX chess_games_black ON chess_games (black_id, created_at);
    CREATE INDEX chess_games_status ON chess_games (status);
    CREATE TABLE chess_moves (
        game_id TEXT NOT NULL REFERENCES chess_games (id) ON DELETE CASCADE,
        ply BIGINT NOT NULL,
        uci TEXT NOT NULL,
        san TEXT NOT NULL,
        white_ms BIGINT NOT NULL,
        black_ms BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (game_id, ply)
    );
    CREATE TABLE chess_challenges (
        id TEXT PRIMARY KEY,
        challenger_id TEXT NOT NULL,
        target_id TEXT,
        base_ms BIGINT NOT NULL,
        increment_ms BIGINT NOT NULL,
        rated BIGINT NOT NULL,
        color TEXT NOT NULL,
        initial_fen TEXT NOT NULL,
        status TEXT NOT NULL,
        game_id TEXT,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX chess_challenges_open ON chess_challenges (status, created_at)
    """,
    """
    CREATE TABLE chess_ratings (
        user_id TEXT PRIMARY KEY,
        rating DOUBLE PRECISION NOT NULL,
        rd DOUBLE PRECISION NOT NULL,
        vol DOUBLE PRECISION NOT NULL,
        games BIGINT NOT NULL DEFAULT 0,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX chess_ratings_rating ON chess_ratings (rating)
    """,
    """
    ALTER TABLE chess_challenges ADD COLUMN rating_min DOUBLE PRECISION;
    ALTER TABLE chess_challenges ADD COLUMN rating_max DOUBLE PRECISION
    """,
    """
    ALTER TABLE chess_challenges ADD COLUMN per_move_ms BIGINT;
    ALTER TABLE chess_games ADD COLUMN per_move_ms BIGINT
    """,
    """
    ALTER TABLE chess_games ADD COLUMN owner_node TEXT;
    ALTER TABLE chess_games ADD COLUMN lease_until DOUBLE PRECISION
    """,
    {
        # One B-tree instead of a table plus its key's index: a stored move dirties one page
        # instead of two. PostgreSQL has no rowid to drop.
        "sqlite": """
        CREATE TABLE chess_moves_keyed (
            game_id TEXT NOT NULL REFERENCES chess_games (id) ON DELETE CASCADE,
            ply BIGINT NOT NULL,
            uci TEXT NOT NULL,
            san TEXT NOT NULL,
            white_ms BIGINT NOT NULL,
            black_ms BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (game_id, ply)
        ) WITHOUT ROWID;
        INSERT INTO chess_moves_keyed
            SELECT game_id, ply, uci, san, white_ms, black_ms, created_at FROM chess_moves;
        DROP TABLE chess_moves;
        ALTER TABLE chess_moves_keyed RENAME TO chess_moves
        """,
        "postgres": "",
    },
    # The game's seq after each move: a move's save no longer updates the game's row (see
    # service.MOVE_IMPLIED); NULL for moves stored before.
    "ALTER TABLE chess_moves ADD COLUMN seq BIGINT",
]
