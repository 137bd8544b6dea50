"""What microagents-storage 0.1.0 does to a SQLite file, statement for statement.

The crate cannot be built here (no crates.io), so its SQL is replayed with the stdlib
sqlite3 module: its open sequence, its INSERT naming three columns, its read query.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

OPEN = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
"""
CREATE = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_events_session_id ON events(session_id);
PRAGMA user_version = 1;
"""
INSERT = "INSERT INTO events (session_id, payload, created_at) VALUES (?1, ?2, ?3)"
GET = "SELECT id, payload FROM events WHERE session_id = ?1 ORDER BY id ASC"


def open_like_the_crate(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(OPEN)
    if db.execute("PRAGMA user_version").fetchone()[0] < 1:
        db.executescript(CREATE)
    return db


def insert(db: sqlite3.Connection, event: dict[str, Any]) -> None:
    """The crate's create_session/update_session: compact serde_json text, no checks."""
    payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    db.execute(INSERT, (event["params"]["session_id"], payload, int(time.time() * 1000)))


def get_session(db: sqlite3.Connection, session_id: str) -> list[dict[str, Any]]:
    """The crate's get_session: rows by id, each parsed, then a stable sort by timestamp
    (here by the text, which orders these fixed-width UTC examples the same way)."""
    events = [json.loads(payload) for _, payload in db.execute(GET, (session_id,))]
    for event in events:
        assert set(event) == {"jsonrpc", "method", "params"}
    return sorted(events, key=lambda e: e["params"]["timestamp"])
