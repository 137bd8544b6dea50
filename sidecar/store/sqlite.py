"""SQLite backend through aiosqlite, compatible both ways with microagents-storage 0.1.0.

The Rust crate's table is kept as is (user_version 1); version 2 adds the ordering key
and method as columns and the quarantine, 3 the per-session summaries and the search
index, 4 widens the crate's session index to (session_id, timestamp_ns) for reads in
answer order. Rows the Rust crate inserts later (naming only its three columns) get their
keys filled in before a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, cast

import aiosqlite
import msgspec
from msgspec.structs import astuple

from sidecar.events import stored_keys
from sidecar.store.base import (
    Event,
    EventRefused,
    ListQuery,
    Page,
    Rejected,
    SearchHit,
    SearchQuery,
    SessionQuery,
    SessionSummary,
    Store,
    StoreFailure,
    time_ordered,
)
from sidecar.store.files import create_private_file
from sidecar.store.search import searchable
from sidecar.store.sqlite_checkpoint import Checkpointer
from sidecar.store.sqlite_search import SearchIndexer
from sidecar.store.sqlite_search import search as search_index
from sidecar.store.sqlite_setup import prepare, statements
from sidecar.store.summary import DETAIL_METHODS, Tally
from sidecar.timestamps import MAX_NS, MIN_NS, clamp

log = logging.getLogger("sidecar")

SCHEMA_VERSION = 4

# Each step takes the database from version i to i + 1, in one transaction with the bump.
_RUST_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_events_session_id ON events(session_id);
"""
# The ordering key (the instant, clamped to int64) and the method as columns, for reads
# (schema 4 indexes the instant). Rows the Rust crate inserts have no keys yet; the partial
# index finds them without touching the others, and our inserts (always keyed) never
# touch it.
_ORDERING_SCHEMA = """
ALTER TABLE events ADD COLUMN timestamp_ns INTEGER;
ALTER TABLE events ADD COLUMN method TEXT;
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    line        BLOB    NOT NULL,
    reason      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_events_unkeyed ON events(session_id) WHERE timestamp_ns IS NULL;
"""
# Per-session summaries, kept in the same transaction as the events: counts and first and
# last instants summed over each batch (one upsert per session), the rest (model, status,
# usage, title: summary.Tally as JSON) folded in Python from the few events that carry it.
# And a full-text index keyed by event id. Under a flood the index is left behind
# (`search_progress`) and caught up in the background (sqlite_search), so it costs the
# ingest rate little.
_SUMMARY_AND_SEARCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id  TEXT    PRIMARY KEY,
    event_count INTEGER NOT NULL,
    first_ns    INTEGER NOT NULL,
    last_ns     INTEGER NOT NULL,
    details     BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_sessions_last_ns ON sessions(last_ns);
CREATE VIRTUAL TABLE IF NOT EXISTS search_index USING fts5(text, tokenize = 'unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS search_progress (indexed_upto INTEGER NOT NULL);
INSERT INTO search_progress SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM search_progress);
"""
# Version 4. Reads: the Rust crate's index, by its own name, widened to the order reads
# serve: (session_id, timestamp_ns), then the rowid as in every index, so ties keep
# arrival order. A read walks it in answer order, `last` from the end with a LIMIT and
# `after` from a seek, and stops at what it returns (`methods` is tested on the rows
# walked). Redefined rather than added beside it: still one index entry per insert (an
# in-order event lands at the end of its session's range, as before), 8 bytes wider.
# Adding `method` to it would let `methods` skip rows in the index, at about twice that
# cost per insert. The crate creates the index only if missing, and its own read
# (`ORDER BY id`) stays correct through it, sorting the session's rows.
_SCHEMA_4 = """
DROP INDEX IF EXISTS idx_events_session_id;
CREATE INDEX idx_events_session_id ON events(session_id, timestamp_ns);
"""
MIGRATIONS = (_RUST_SCHEMA, _ORDERING_SCHEMA, _SUMMARY_AND_SEARCH_SCHEMA, _SCHEMA_4)

_INSERT_EVENTS = "INSERT INTO events (created_at, session_id, payload, timestamp_ns, method) VALUES "
# The batch's one created_at is bound once, as ?1, the first parameter; each row binds only
# its event's fields, in Event's order. Payload bytes bind as BLOB; the column holds text.
_EVENT_VALUES = "(?1, ?, CAST(? AS TEXT), ?, ?)"
# A batch goes in multi-row INSERTs: groups of ROWS_PER_INSERT rows in one executemany,
# then one INSERT of the rest. Each statement is one sqlite3_step, and so one release of
# the GIL; row by row, the store's thread would wait for the GIL after every row while
# the event loop parses (a GIL convoy) and crawl. Few statements also mean few awaits.
ROWS_PER_INSERT = 1024
# Enough page cache for a batch of the ingest's default bounds (half of max_pending_bytes,
# 4 MiB of payloads). 16 MiB measured the same ingest rate and 9 MB more peak RSS (rss.py).
PAGE_CACHE_KIB = 8 * 1024
# Rest-of-batch INSERTs vary in size, and a prepared INSERT of hundreds of rows holds
# hundreds of KB: 16 cached held ~10 MB of SQLite's memory under a flood, 4 hold ~2 MB
# at the same ingest rate (bench/README.md, rss.py).
CACHED_STATEMENTS = 4
_INSERT_REJECTED = "INSERT INTO quarantine (received_at, line, reason) VALUES (?, ?, ?)"
_UNKEYED = "SELECT id, session_id, payload FROM events WHERE session_id = ? AND timestamp_ns IS NULL"
# Before a session read: are rows of it unkeyed, is a key of it clamped (MIN_NS, MAX_NS)?
# Events joined per piece of a session read: ~50 KB of typical events, under malloc's
# 64 KiB mmap threshold (cli.tune_malloc).
CHUNK_EVENTS = 128
_PROBE_SESSION = (
    "SELECT EXISTS (SELECT 1 FROM events WHERE session_id = ?1 AND timestamp_ns IS NULL), "
    "EXISTS (SELECT 1 FROM events WHERE session_id = ?1 AND timestamp_ns IN (?2, ?3) AND method IS NOT NULL)"
)
_ALL_UNKEYED = "SELECT id, session_id, payload FROM events WHERE timestamp_ns IS NULL"
_LIST_SESSIONS = (
    "SELECT session_id, event_count, first_ns, last_ns, details FROM sessions {where} "
    "ORDER BY last_ns DESC, session_id DESC LIMIT ?"
)
_LIST_AFTER = "WHERE (last_ns, session_id) < (?, ?)"  # after the cursor, in list order
LIST_PAGE = 500  # summaries read at a time while a text filter skips some
FOLLOW_STEP = 8  # rows stepped at a time while following: a budget passes by a few rows at most
_EVENTS_AFTER = (
    "SELECT id, session_id, payload, timestamp_ns, method FROM events WHERE id > ? ORDER BY id LIMIT ?"
)
_SET_KEYS = "UPDATE events SET timestamp_ns = ?, method = ? WHERE id = ?"
# Counts and first and last instants of a batch's sessions (summed in Python: grouping the
# batch's rows in SQL sorted them, 0.5 µs per event on the store's thread, the ingest's
# bottleneck), added to their summaries; and all of them counted from the table, once, for
# an older file.
_ADD_COUNTS = """
INSERT INTO sessions (session_id, event_count, first_ns, last_ns) VALUES (?, ?, ?, ?)
ON CONFLICT (session_id) DO UPDATE SET
    event_count = event_count + excluded.event_count,
    first_ns = min(first_ns, excluded.first_ns),
    last_ns = max(last_ns, excluded.last_ns)
"""
_COUNT_ALL_ROWS = """
INSERT INTO sessions (session_id, event_count, first_ns, last_ns)
SELECT session_id, count(*), min(timestamp_ns), max(timestamp_ns) FROM events
WHERE method IS NOT NULL GROUP BY session_id
"""
_SAVE_DETAILS = "UPDATE sessions SET details = ? WHERE session_id = ?"
PROMPT = "user.prompt.submit"
_NO_TITLE = 2**63
_INT64_MAX = 2**63 - 1
# Batches up to this size are indexed for search in their own transaction; bigger ones
# (a flood) leave it to the background indexer (sqlite_search), once the flood pauses.
INDEX_INLINE_EVENTS = 256
_tally_decoder = msgspec.json.Decoder(Tally)


class SqliteStore(Store):
    backend = "sqlite"

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000):
        self.path = path
        self.location = str(path)
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()  # one transaction at a time on the connection
        # Followers read through a connection of their own: it never sees the writer's
        # uncommitted rows, and its data_version changes on every commit, ours included.
        self._follower: aiosqlite.Connection | None = None
        self._follower_lock = asyncio.Lock()
        self._versions: sqlite3.Connection | None = None  # data_version, read on the loop
        self._title_ns: dict[str, int] = {}  # instant of each session's title, as far as seen
        self._data_version = -1  # of the database when _title_ns was last valid
        self._indexer = SearchIndexer(lambda: self.db, self._write_lock)
        self._checkpointer = Checkpointer(path)
        self._found_schema = (0, False)  # (version, now current), by the connection's factory
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._wal = Path(f"{path}-wal")
        self._wal_identity: tuple[int, int] | None = None  # of the WAL our commits went to

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreFailure("the store is not open")
        return self._db

    async def open(self) -> None:
        await self._connect()

    async def _connect(self) -> None:
        try:
            create_private_file(self.path)
            # "IMMEDIATE": an INSERT outside a transaction opens one taking the write lock
            # at once; reads never open one. Migrations and backfills BEGIN explicitly.
            # Set up by the factory on the connection's thread, in one trip (sqlite_setup).
            connection = aiosqlite.connect(
                self.path,
                isolation_level="IMMEDIATE",
                cached_statements=CACHED_STATEMENTS,
                factory=self._prepared_connection,
            )
            try:
                self._db = await connection
            except sqlite3.Error:
                # aiosqlite stops its thread after a failed connect without waiting for it;
                # left running, it answers into a closed event loop at exit.
                thread = getattr(connection, "_thread", None)
                if thread is not None:
                    await asyncio.to_thread(thread.join, 5.0)
                raise
            self._db.text_factory = bytes  # payloads go to the wire as they are, undecoded
            self._identity = _identity(self.path)
            found, current = self._found_schema
            if not current:
                await self._migrate()
            elif found < SCHEMA_VERSION:
                log.info("migrated %s from schema %d to %d", self.path, found, SCHEMA_VERSION)
        except (OSError, sqlite3.Error) as exc:
            raise StoreFailure(f"cannot open {self.path}: {exc}") from exc

    def _prepared_connection(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        """sqlite3.connect's factory, on the connection's thread: the connection set up and
        a new file's schema created there (sqlite_setup.prepare)."""
        connection = sqlite3.Connection(*args, **kwargs)
        try:
            self._found_schema = prepare(
                connection,
                busy_timeout_ms=self._busy_timeout_ms,
                synchronous=self._synchronous,
                cache_kib=PAGE_CACHE_KIB,
                migrations=MIGRATIONS,
            )
        except BaseException:
            connection.close()
            raise
        return connection

    async def _migrate(self) -> None:
        """From an older schema: its rows are keyed and summarised here, in one transaction."""
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                version = await self._scalar("PRAGMA user_version")
                for step in range(version, SCHEMA_VERSION):
                    for statement in statements(MIGRATIONS[step]):
                        await self.db.execute(statement)
                # Files before 3 are keyed and summarised whole; in later ones, rows the crate
                # added are keyed and summarised by the next read, as they are at any time.
                if version < 3:
                    await self._fill_keys(_ALL_UNKEYED)
                    await self._rebuild_summaries()
                if version < SCHEMA_VERSION:
                    await self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                await self.db.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise
            if version < SCHEMA_VERSION:
                log.info("migrated %s from schema %d to %d", self.path, version, SCHEMA_VERSION)

    async def _drop_connection(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):
                await db.close()

    async def close(self) -> None:
        await self._indexer.stop()
        await self._checkpointer.close()
        if self._versions is not None:
            self._versions.close()
            self._versions = None
        if self._follower is not None:
            follower, self._follower = self._follower, None
            await follower.close()
        await self._drop_connection()

    async def write(
        self, events: Sequence[Event], rejected: Sequence[Rejected], _retried: bool = False
    ) -> Sequence[int]:
        """Three round trips to the connection's thread: each one waits for the GIL while the
        event loop parses, so the first INSERT opens the transaction (isolation_level) and
        the last returns the last rowid (execute_insert). Before and after, the file at the
        path must still be the one open: a batch committed into a removed or replaced file
        is written again into the file now there, before it is acknowledged."""
        now_ms = int(time.time() * 1000)
        last = 0
        if self._db is None:  # dropped after a write to a read-only file: connect anew
            await self._connect()
        elif not self._still_at_path():
            await self._reopen()
        async with self._write_lock:
            await self._checkpointer.before_write()
            try:
                # At least one row for the last INSERT, whose trip also returns the rowid.
                whole = (len(events) - 1) // ROWS_PER_INSERT * ROWS_PER_INSERT if events else 0
                if whole:
                    wide = _flat_rows(events[:whole], now_ms, ROWS_PER_INSERT)
                    await self.db.executemany(_insert_sql(ROWS_PER_INSERT), wide)
                if events:
                    (rest,) = _flat_rows(events[whole:], now_ms, len(events) - whole)
                    row = await self.db.execute_insert(_insert_sql(len(events) - whole), rest)
                    last = int(row[0]) if row else 0
                if rejected:
                    await self.db.executemany(
                        _INSERT_REJECTED, [(r.received_ms, r.line, r.reason) for r in rejected]
                    )
                if events:
                    await self._summarise(events)
                    await self._index_batch(events, last)
                await self.db.commit()
                written = sum(map(len, map(_payload, events))) + sum(len(r.line) for r in rejected)
                self._checkpointer.committed(written)
            except sqlite3.DataError as exc:  # a value SQLite cannot hold ("too big"): refused
                await self._rollback()
                raise EventRefused(str(exc)) from exc
            except sqlite3.Error as exc:
                await self._rollback()
                if "readonly" in str(exc):
                    # SQLite opened a file it could not write read-only, for good: a new
                    # connection is the only way to see it writable again.
                    await self._drop_connection()
                raise StoreFailure(str(exc)) from exc
        if _identity(self.path) != self._identity and not _retried:  # committed into a file no longer there
            await self._reopen()
            return await self.write(events, rejected, _retried=True)
        if not self._still_at_path():  # only the WAL went: reopening copies its commits over
            await self._reopen()
        self._wal_identity = _identity(self._wal)
        # One writer holds the lock for the whole transaction, so the ids are contiguous.
        return range(last - len(events) + 1, last + 1)

    def _still_at_path(self) -> bool:
        """Whether the files at the path are still the ones open: the database (not
        removed or replaced) and its WAL (commits in a removed WAL reach no one else, and
        die with the process)."""
        if _identity(self.path) != self._identity:
            return False
        return self._wal_identity is None or _identity(self._wal) == self._wal_identity

    async def _reopen(self) -> None:
        """The file was removed or replaced under us: what is committed from now on must
        reach the file at the path, so every connection is dropped and the path opened
        again (a new file gets the schema; a replacement is used as it is)."""
        if _identity(self.path) == self._identity:
            log.warning(
                "the WAL of %s was removed while open; its commits are copied into the database", self.path
            )
        else:
            found = "removed" if _identity(self.path) is None else "replaced"
            log.warning(
                "%s was %s while open; opening it again: what follows is stored there", self.path, found
            )
        async with self._write_lock:  # no indexer step or write on the old connection meanwhile
            await self._checkpointer.close()  # starts again, on the new file, when next asked
            # The WAL at the path is still the old file's: emptied, so that opening the file
            # now at the path never replays the old file's pages into it.
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._drop_connection()
        if self._follower is not None:
            follower, self._follower = self._follower, None
            with contextlib.suppress(sqlite3.Error):
                await follower.close()
        if self._versions is not None:
            self._versions.close()
            self._versions = None
        self._title_ns.clear()
        self._data_version = -1
        self._wal_identity = None
        await self._connect()

    async def read_session(self, session_id: str, query: SessionQuery) -> list[bytes]:
        """In the index's order, which is the answer's order unless some instant of the
        session lies outside int64 nanoseconds (clamped keys, ordered among themselves by
        their exact instant): then every row the filters select is sorted in Python."""
        try:
            exact = await self._exact_keys(session_id)
            sql, args = _session_sql(session_id, query, exact=exact)
            rows = await self._fetch(sql, args)
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc
        if not exact:
            return time_ordered(cast("list[tuple[int, bytes]]", rows), query)
        payloads = [row[0] for row in rows]
        if query.last is not None:
            payloads.reverse()  # read newest first, up to the limit
        return payloads

    async def read_session_chunks(self, session_id: str, query: SessionQuery) -> list[bytes]:
        """A whole session (no `last`) whose keys are exact is read in one trip to the
        store's thread, in the index's order, and joined there CHUNK_EVENTS at a time:
        pieces small enough for malloc's heap (a single multi-megabyte text would be fresh
        mmap pages, faulted in and zeroed on every read)."""
        if query.last is not None:
            return await super().read_session_chunks(session_id, query)
        sql, args = _session_sql(session_id, query, exact=True)
        probe = (session_id, MIN_NS, MAX_NS)
        try:
            chunks = await self._read_chunks(probe, sql, args)
            if chunks is None and await self._exact_keys(session_id):  # rows the crate added
                chunks = await self._read_chunks(probe, sql, args)
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc
        if chunks is None:
            return await super().read_session_chunks(session_id, query)
        return chunks

    async def _read_chunks(
        self, probe: tuple[str, int, int], sql: str, args: tuple[object, ...]
    ) -> list[bytes] | None:
        """_exact_chunks on the store's thread, through aiosqlite's queue of calls for it
        (private, but the one way to run a loop of fetches there in one trip)."""
        db = self.db
        chunks = await db._execute(_exact_chunks, db._conn, probe, sql, args)  # type: ignore[no-untyped-call]
        return cast("list[bytes] | None", chunks)

    async def _exact_keys(self, session_id: str) -> bool:
        """Whether the session's keys order it exactly (none clamped), once rows the Rust
        crate added to it are keyed."""
        probe = (session_id, MIN_NS, MAX_NS)
        [(unkeyed, clamped)] = await self._fetch(_PROBE_SESSION, probe)
        if unkeyed:
            await self._catch_up(_UNKEYED, (session_id,))
            [(_, clamped)] = await self._fetch(_PROBE_SESSION, probe)
        return not clamped

    async def count_sessions(self) -> int:
        """From the summaries (one row per session with a served event), as lists are."""
        try:
            await self._catch_up(_ALL_UNKEYED)
            return await self._scalar("SELECT COUNT(*) FROM sessions")
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc

    async def list_sessions(self, query: ListQuery) -> list[SessionSummary]:
        """Newest first, through idx_sessions_last_ns a page at a time: the `limit` rows,
        or with a text filter (matched in Python) pages of LIST_PAGE until `limit` match,
        so only a filter that few sessions match reads them all."""
        wanted = query.limit
        # (last_ns, session_id) of the last row seen; `before` is the cursor (before, before_id or "").
        cursor = None if query.before_ns is None else (clamp(query.before_ns), query.before_id or "")
        chosen: list[SessionSummary] = []
        try:
            await self._catch_up(_ALL_UNKEYED)
            while wanted is None or len(chosen) < wanted:
                page = LIST_PAGE if query.text or wanted is None else wanted - len(chosen)
                if cursor is None:
                    rows = await self._fetch(_LIST_SESSIONS.format(where=""), (page,))
                else:
                    rows = await self._fetch(_LIST_SESSIONS.format(where=_LIST_AFTER), (*cursor, page))
                for session_id, count, first_ns, last_ns, details in rows:
                    tally = (
                        _tally_decoder.decode(details) if details else Tally(session_id=session_id.decode())
                    )
                    tally.event_count, tally.first_ns, tally.last_ns = count, first_ns, last_ns
                    if not query.text or tally.matches(query.text):
                        chosen.append(tally.summary())
                if len(rows) < page:
                    break
                cursor = (rows[-1][3], rows[-1][0].decode())
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc
        return chosen[:wanted]

    async def delete_session(self, session_id: str) -> int:
        async with self._write_lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                await self.db.execute(
                    "DELETE FROM search_index WHERE rowid IN (SELECT id FROM events WHERE session_id = ?)",
                    (session_id,),
                )
                cursor = await self.db.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
                deleted = cursor.rowcount
                await self.db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
                self._title_ns.pop(session_id, None)
                await self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._rollback()
                raise StoreFailure(str(exc)) from exc
            except BaseException:
                await self._rollback()
                raise
        return deleted

    async def count_quarantined(self) -> int:
        try:
            return await self._scalar("SELECT COUNT(*) FROM quarantine")
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc

    async def size_bytes(self) -> int | None:
        """The database file with its WAL and shared-memory files."""
        return sum(_file_bytes(Path(self.location + suffix)) for suffix in ("", "-wal", "-shm"))

    async def reclaim_space(self) -> int:
        """VACUUM, then a truncating checkpoint: the file shrinks to what it holds. It
        writes the whole file again and waits for other processes' transactions."""
        before = await self.size_bytes() or 0
        async with self._write_lock:
            try:
                await self.db.execute("VACUUM")
                await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StoreFailure(str(exc)) from exc
        return max(0, before - (await self.size_bytes() or 0))

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        """From the index and the newest events it has not reached (sqlite_search); never
        a write: a lagging index is the background indexer's to catch up."""
        try:
            hits = await search_index(self.db, query)
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc
        self._indexer.wake()  # other processes' events, too, get indexed
        return hits

    async def search_caught_up(self) -> None:
        """Until the search index holds every event committed so far (tests, benchmarks)."""
        self._indexer.wake()
        await self._indexer.caught_up()

    async def last_seq(self) -> int:
        rows = await self._follow("SELECT COALESCE(MAX(id), 0) FROM events")
        return int(rows[0][0])

    async def change_token(self) -> object:
        """PRAGMA data_version of a connection that never writes: it changes with every
        commit, ours included. Asked many times a second while followed, so on the loop
        itself (a thread hop costs more than the read) and never waiting: busy, it reports
        a change, and the read that follows goes through the follower's thread."""
        try:
            if self._versions is None:
                if self._db is None:
                    raise StoreFailure("the store is not open")
                self._versions = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                self._versions.execute("PRAGMA query_only = 1")
            return self._versions.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return object()

    async def events_after(self, after: int, limit: int, max_bytes: int | None = None) -> Page:
        """Ids are given in commit order (one writer at a time holds the write lock), so
        `id > after` is every later commit, once. Rows the Rust crate inserted have no keys
        yet: they are read from the payload here, without writing. Rows are stepped a few
        at a time on the followers' thread, stopping once `max_bytes` is read."""
        try:
            follower = await self._follower_connection()
            # One trip to the followers' thread, through aiosqlite's queue (as _read_chunks).
            found = await follower._execute(_rows_within, follower._conn, after, limit, max_bytes)  # type: ignore[no-untyped-call]
            rows = cast("list[tuple[Any, ...]]", found)
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc
        if max_bytes is not None and rows and sum(len(row[2]) for row in rows) >= max_bytes:
            more = True  # stopped by the budget: there may be more
        else:
            more = len(rows) == limit
        events = []
        for row_id, session_id, payload, timestamp_ns, method in rows:
            if method is None:
                keys = stored_keys(payload)
                if keys is None:
                    continue
                timestamp_ns, method = keys.timestamp_ns, keys.method
            else:
                method = method.decode()
            events.append((row_id, Event(session_id.decode(), payload, timestamp_ns, method)))
        return Page(events, rows[-1][0] if rows else after, more)

    async def _follow(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            follower = await self._follower_connection()
            return list(await follower.execute_fetchall(sql, args))
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc

    async def _follower_connection(self) -> aiosqlite.Connection:
        """The followers' connection, opened on first use (a daemon nobody follows has none)."""
        async with self._follower_lock:
            if self._follower is None:
                if self._db is None:
                    raise StoreFailure("the store is not open")
                follower = await aiosqlite.connect(self.path, isolation_level=None)
                follower.text_factory = bytes
                await follower.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                await follower.execute("PRAGMA query_only = 1")
                self._follower = follower
            return self._follower

    async def _catch_up(self, unkeyed_sql: str, args: tuple[object, ...] = ()) -> None:
        """Key and summarise rows the Rust crate inserted: in one transaction, only when
        there is work. (The search index catches up on its own: sqlite_search.)"""
        if not await self._fetch(unkeyed_sql + " LIMIT 1", args):
            return
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                keyed = await self._fill_keys(unkeyed_sql, args)
                for start in range(0, len(keyed), 500):
                    chunk = keyed[start : start + 500]
                    await self._summarise([event for _, event in chunk])
                await self.db.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise

    async def _fill_keys(self, select_sql: str, args: tuple[object, ...] = ()) -> list[tuple[int, Event]]:
        """Derive method and instant from the payload of rows that lack them; the events
        keyed, for their sessions' summaries: each under its row's session (the column
        reads go by), whatever session its payload names.

        A payload that is not a readable notification gets no method, so reads skip it
        (the Rust crate would fail the whole read); it is logged once here.
        """
        updates: list[tuple[int, str | None, int]] = []
        keyed: list[tuple[int, Event]] = []
        for row_id, session_id, payload in await self._fetch(select_sql, args):
            keys = stored_keys(payload)
            if keys is None:
                log.warning("events row %d holds no readable notification; it is not served", row_id)
                updates.append((MIN_NS, None, row_id))
            else:
                updates.append((keys.timestamp_ns, keys.method, row_id))
                event = Event(session_id.decode(), payload, keys.timestamp_ns, keys.method)
                keyed.append((row_id, event))
        if updates:
            await self.db.executemany(_SET_KEYS, updates)
        return keyed

    async def _summarise(self, events: Sequence[Event]) -> None:
        """Add events (just inserted) to their sessions' summaries, inside the caller's
        transaction: counts and instants summed here, then the details."""
        await self.db.executemany(_ADD_COUNTS, _session_counts(events))
        await self._add_details(events)

    async def _add_details(self, events: Sequence[Event]) -> None:
        """Fold the events that carry details (model, status, usage, title) into their
        sessions' summaries."""
        if not any(event.method in DETAIL_METHODS for event in events):
            return
        # A quarter of all events are prompts, and only a session's earliest is its title:
        # skip those no earlier than a title already seen (a title's instant only falls,
        # unless another process deleted the session: forget them when another commits).
        version = await self._scalar("PRAGMA data_version")
        if version != self._data_version:
            self._title_ns.clear()
            self._data_version = version
        floor = self._title_ns
        detailed = [
            event
            for event in events
            if event.method in DETAIL_METHODS
            and (event.method != PROMPT or event.timestamp_ns < floor.get(event.session_id, _NO_TITLE))
        ]
        if not detailed:
            return
        session_ids = list(dict.fromkeys(event.session_id for event in detailed))
        tallies: dict[str, Tally] = {}
        for start in range(0, len(session_ids), 500):
            chunk = session_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT details FROM sessions WHERE session_id IN ({marks}) AND details IS NOT NULL"
            for (blob,) in await self._fetch(sql, tuple(chunk)):
                tally = _tally_decoder.decode(blob)
                tallies[tally.session_id] = tally
        for event in detailed:
            if event.session_id not in tallies:
                tallies[event.session_id] = Tally(session_id=event.session_id)
            tallies[event.session_id].add_details(event)
        saved = [(msgspec.json.encode(tally), tally.session_id) for tally in tallies.values()]
        await self.db.executemany(_SAVE_DETAILS, saved)
        for tally in tallies.values():
            if tally.title_ns is not None:
                floor[tally.session_id] = tally.title_ns

    async def _rebuild_summaries(self) -> None:
        """Summaries of every session from its events (a database older than schema 3)."""
        await self.db.execute("DELETE FROM sessions")
        await self.db.execute(_COUNT_ALL_ROWS)
        methods = ", ".join(f"'{method}'" for method in sorted(DETAIL_METHODS))
        last_id = 0
        while rows := await self._fetch(
            "SELECT id, session_id, payload, timestamp_ns, method FROM events "
            f"WHERE id > ? AND method IN ({methods}) ORDER BY id LIMIT 10000",
            (last_id,),
        ):
            events = [
                Event(sid.decode(), payload, ns, method.decode()) for _, sid, payload, ns, method in rows
            ]
            await self._add_details(events)  # counted above
            last_id = rows[-1][0]

    async def _index_batch(self, events: Sequence[Event], last: int) -> None:
        """Index a small batch for search now, if the index is up to date: one
        compare-and-set round trip decides. Otherwise (a flood, other writers) the
        background indexer catches up, off the ingest path."""
        if not events:
            return
        if len(events) > INDEX_INLINE_EVENTS:
            self._indexer.flooded()
            return
        first = last - len(events) + 1
        advanced = await self.db.execute(
            "UPDATE search_progress SET indexed_upto = ? WHERE indexed_upto = ?", (last, first - 1)
        )
        if advanced.rowcount != 1:
            self._indexer.wake()
            return
        rows = []
        for row_id, event in enumerate(events, first):
            found = searchable(event.method, event.payload)
            if found is not None:
                rows.append((row_id, found[1]))
        if rows:
            await self.db.executemany("INSERT INTO search_index (rowid, text) VALUES (?, ?)", rows)

    async def _scalar(self, sql: str, args: tuple[object, ...] = ()) -> int:
        rows = await self._fetch(sql, args)
        return int(rows[0][0]) if rows else 0

    async def _fetch(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        return list(await self.db.execute_fetchall(sql, args))

    async def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            try:
                await self._db.rollback()
            except sqlite3.Error as exc:
                log.warning("rollback failed: %s", exc)


def _rows_within(
    conn: sqlite3.Connection, after: int, limit: int, max_bytes: int | None
) -> list[tuple[Any, ...]]:
    """On the followers' thread: rows after `after`, up to `limit`, stepping no further
    once their payloads reach `max_bytes`."""
    cursor = conn.execute(_EVENTS_AFTER, (after, limit))
    rows: list[tuple[Any, ...]] = []
    size = 0
    try:
        while batch := cursor.fetchmany(FOLLOW_STEP):
            rows += batch
            size += sum(len(row[2]) for row in batch)
            if max_bytes is not None and size >= max_bytes:
                break
    finally:
        cursor.close()
    return rows


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _exact_chunks(
    conn: sqlite3.Connection, probe: tuple[str, int, int], sql: str, args: tuple[object, ...]
) -> list[bytes] | None:
    """On the store's thread: the session's payloads joined by commas, CHUNK_EVENTS to a
    piece; None if its keys do not order it exactly (unkeyed or clamped rows)."""
    unkeyed, clamped = conn.execute(_PROBE_SESSION, probe).fetchone()
    if unkeyed or clamped:
        return None
    cursor = conn.execute(sql, args)
    chunks = []
    while rows := cursor.fetchmany(CHUNK_EVENTS):
        chunks.append(b",".join([row[0] for row in rows]))
    return chunks


def _session_counts(events: Sequence[Event]) -> list[tuple[str, int, int | None, int | None]]:
    """(session id, events, first instant, last instant) of each session in `events`."""
    tallies: dict[str, Tally] = {}
    for event in events:
        tally = tallies.get(event.session_id)
        if tally is None:
            tally = tallies[event.session_id] = Tally(session_id=event.session_id)
        tally.count(event)
    return [(t.session_id, t.event_count, t.first_ns, t.last_ns) for t in tallies.values()]


@functools.cache
def _insert_sql(rows: int) -> str:
    # Plain `?` but for the shared ?1: numbering every parameter (`?NNN`) made SQLite's
    # prepare quadratic; one number repeated is looked up once.
    return _INSERT_EVENTS + ", ".join([_EVENT_VALUES] * rows)


_payload = attrgetter("payload")


def _flat_rows(events: Sequence[Event], created_ms: int, per_insert: int) -> list[list[object]]:
    """The parameters of each `per_insert`-row INSERT; len(events) is a multiple.

    Flattened by C iterators (no Python code per event): this runs on the event loop.
    """
    return [
        [created_ms, *chain.from_iterable(map(astuple, events[start : start + per_insert]))]
        for start in range(0, len(events), per_insert)
    ]


def _session_sql(session_id: str, query: SessionQuery, *, exact: bool) -> tuple[str, tuple[object, ...]]:
    """The read of a session through idx_events_session_id, in (instant, id) order.

    `exact`: no key of the session is clamped, so the index order and `timestamp_ns > after`
    are exact: payloads only, the `last` read newest first with a LIMIT. Otherwise the keys
    too, `after` taken roughly: the caller orders by exact instant and applies both.
    """
    where = ["session_id = ?", "method IS NOT NULL"]
    args: list[object] = [session_id]
    if query.after_ns is not None:
        where.append("timestamp_ns > ?" if exact else "timestamp_ns >= ?")
        args.append(clamp(query.after_ns))
    if query.methods:
        alternatives = []
        for pattern in query.methods:
            if pattern.endswith(".*"):
                prefix = pattern[:-1]
                alternatives.append("substr(method, 1, ?) = ?")
                args += [len(prefix), prefix]
            else:
                alternatives.append("method = ?")
                args.append(pattern)
        where.append("(" + " OR ".join(alternatives) + ")")
    columns, order = ("payload" if exact else "timestamp_ns, payload"), "timestamp_ns, id"
    if exact and query.last is not None:
        order = "timestamp_ns DESC, id DESC LIMIT ?"
        args.append(min(query.last, _INT64_MAX))  # more than SQLite counts is "all"
    return f"SELECT {columns} FROM events WHERE {' AND '.join(where)} ORDER BY {order}", tuple(args)
