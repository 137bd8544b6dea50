"""The store backends as the conformance suite sees them: how to start a daemon on one,
and where what it stored can be looked at from outside. A new backend is one more class."""

from __future__ import annotations

import base64
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from daemon import Daemon
from pg_server import fetch


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a SQLite file, text as bytes, read by a connection of our own as another process
    would read the file."""
    with closing(sqlite3.connect(db)) as connection:
        connection.text_factory = bytes
        return list(connection.execute(sql))


def payloads(db: Path) -> list[bytes]:
    """The payload of every event in a SQLite file, in the order they were inserted."""
    return [row[0] for row in query(db, "SELECT payload FROM events ORDER BY id")]


class Backend:
    name: str
    persistent = True  # a restarted daemon sees what an earlier one stored

    def __init__(self, root: Path) -> None:
        self.root = root

    def args(self) -> list[str]:
        raise NotImplementedError

    def daemon(self, *extra: str) -> Daemon:
        return Daemon(None, *self.args(), *extra)

    def quarantined(self) -> list[bytes]:
        """Raw lines the store holds in quarantine, read without the daemon."""
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"

    @property
    def path(self) -> Path:
        return self.root / "sessions.db"

    def args(self) -> list[str]:
        return ["--db", str(self.path)]

    def quarantined(self) -> list[bytes]:
        return [row[0] for row in query(self.path, "SELECT line FROM quarantine ORDER BY id")]


class JsonlBackend(Backend):
    name = "jsonl"

    @property
    def directory(self) -> Path:
        return self.root / "sessions"

    def args(self) -> list[str]:
        return ["--backend", "jsonl", "--jsonl-dir", str(self.directory)]

    def quarantined(self) -> list[bytes]:
        path = self.directory / ".quarantine.jsonl"
        records = [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []
        return [
            record["line"].encode() if "line" in record else base64.b64decode(record["line_base64"])
            for record in records
        ]


class MemoryBackend(Backend):
    name = "memory"
    persistent = False

    def args(self) -> list[str]:
        return ["--backend", "memory"]

    def quarantined(self) -> list[bytes]:
        raise AssertionError("the memory backend's quarantine is visible only through storage.stats")


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, root: Path, dsn: str) -> None:
        super().__init__(root)
        self.dsn = dsn  # a fresh database of its own (conftest's postgres_dsn)

    def args(self) -> list[str]:
        return ["--backend", "postgres", "--dsn", self.dsn]

    def quarantined(self) -> list[bytes]:
        return [row[0] for row in fetch(self.dsn, "SELECT line FROM quarantine ORDER BY id")]


BACKENDS: dict[str, type[Backend]] = {
    kind.name: kind for kind in (SqliteBackend, JsonlBackend, MemoryBackend, PostgresBackend)
}
