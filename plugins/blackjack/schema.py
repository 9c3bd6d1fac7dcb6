"""Tables of the blackjack plugin: wallets and their ledger, tables, shoes, rounds, hands."""

from __future__ import annotations

from syncstream.sdk import Migration

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE blackjack_wallets (
        user_id TEXT PRIMARY KEY,
        balance BIGINT NOT NULL CHECK (balance >= 0),
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE blackjack_ledger (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        amount BIGINT NOT NULL,
        kind TEXT NOT NULL,
        table_id TEXT,
        round_id TEXT,
        request_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        UNIQUE (user_id, request_id)
    );
    CREATE INDEX blackjack_ledger_user ON blackjack_ledger (user_id, created_at);
    CREATE INDEX blackjack_ledger_round ON blackjack_ledger (round_id);
    CREATE TABLE blackjack_tables (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        rules TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        closed_at DOUBLE PRECISION
    );
    CREATE TABLE blackjack_shoes (
        id TEXT PRIMARY KEY,
        table_id TEXT NOT NULL,
        commitment TEXT NOT NULL,
        seed TEXT NOT NULL,
        decks BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        retired_at DOUBLE PRECISION
    );
    CREATE INDEX blackjack_shoes_table ON blackjack_shoes (table_id, created_at);
    CREATE TABLE blackjack_rounds (
        id TEXT PRIMARY KEY,
        table_id TEXT NOT NULL,
        shoe_id TEXT NOT NULL,
        status TEXT NOT NULL,
        dealer TEXT,
        seats TEXT,
        actions TEXT,
        started_at DOUBLE PRECISION NOT NULL,
        ended_at DOUBLE PRECISION
    );
    CREATE INDEX blackjack_rounds_table ON blackjack_rounds (table_id, started_at);
    CREATE INDEX blackjack_rounds_status ON blackjack_rounds (status);
    CREATE TABLE blackjack_hands (
        round_id TEXT NOT NULL,
        seat BIGINT NOT NULL,
        hand BIGINT NOT NULL,
        user_id TEXT NOT NULL,
        cards TEXT NOT NULL,
        bet BIGINT NOT NULL,
        net BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (round_id, seat, hand)
    );
    CREATE INDEX blackjack_hands_user ON blackjack_hands (user_id, created_at)
    """,
    # The players' client seed mixed into the shoe's shuffle (set at its first deal).
    "ALTER TABLE blackjack_shoes ADD COLUMN client_seed TEXT",
    # Cards the shoe dealt in its settled rounds, revealed with its seed for verifiers
    # (null: a shoe retired before it was recorded).
    "ALTER TABLE blackjack_shoes ADD COLUMN dealt BIGINT",
]
