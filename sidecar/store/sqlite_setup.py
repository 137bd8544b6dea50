"""A new SQLite connection made ready on the thread that opens it: its pragmas, WAL mode and
the whole schema of a new file, with no trip back to the event loop per statement.

Knows SQLite's pragmas and the migration scripts it is given; nothing of the tables.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

BACKSTOP_CHECKPOINT_PAGES = 32768  # 128 MiB of 4 KiB pages: twice the checkpointer's limit
_ANY_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1"


def prepare(
    connection: sqlite3.Connection,
    *,
    busy_timeout_ms: int,
    synchronous: str,
    cache_kib: int,
    migrations: Sequence[str],
) -> tuple[int, bool]:
    """Set the connection up; return the schema version the file had and whether it is now
    current. An empty file is migrated here, in one transaction with the version bump; one
    at an older version, or unversioned with tables in it (rows a crashed creator left), is
    left as found: its rows need the caller's work too."""
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    # Before the switch to WAL, which on a new file writes its first page through a rollback
    # journal: at the default (FULL) its fsyncs were most of a new file's start-up.
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    _enter_wal_mode(connection, busy_timeout_ms)
    # A batch's pages stay in the cache until its commit instead of spilling into the WAL
    # midway (the default is 2 MiB); the checkpoints run on their own thread.
    connection.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
    # The checkpoints run on their own thread (sqlite_checkpoint); SQLite's own, inside
    # COMMIT, stays only as a backstop for a WAL that grows by writes they are not told of.
    connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
    version = _user_version(connection)
    if version != 0:  # versions only rise: no lock needed to see this one is not new
        return version, version >= len(migrations)
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(connection)  # another process may have created it meanwhile
        empty = version == 0 and connection.execute(_ANY_TABLE).fetchone() is None
        if empty:
            for script in migrations:
                for statement in statements(script):
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {len(migrations)}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return version, empty or version >= len(migrations)


def statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def _user_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _enter_wal_mode(connection: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch to WAL, waiting up to the lock timeout. SQLite answers a journal-mode change
    "database is locked" at once, without its busy handler, while another connection is
    creating or converting the same file: two daemons started together on a new file would
    otherwise see one of them exit 3. Sleeping blocks only this connection's own thread."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = 0.001
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
