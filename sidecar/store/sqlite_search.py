"""The SQLite search index: kept up in the background in short transactions, and searched
from what it holds plus a bounded scan of the newest events it has not reached yet.

Knows the tables `events`, `search_index` (FTS5, rowid = event id) and `search_progress`
(every event up to `indexed_upto` is indexed); nothing of ingest or summaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import cast

import aiosqlite

from sidecar.events import stored_keys
from sidecar.store.base import SearchHit, SearchQuery, StoreFailure
from sidecar.store.search import SEARCHED_METHODS, searchable, snippet

log = logging.getLogger("sidecar")

# A search reads at most this many of the newest events the index has not reached: while
# it catches up after a flood, a search sees everything indexed plus these, and events in
# between show up as the index reaches them.
TAIL_SCAN_EVENTS = 2000
# Each catch-up transaction aims to hold the write lock this long (the ceiling is ~50 ms),
# then leaves it free for PAUSE_FACTOR times as long, so that other processes' busy
# handlers, which retry every few to 100 ms, find it free; and waits while our own writer
# commits floods (a batch too big to index inline): the ingest rate comes first.
STEP_TARGET_S = 0.02
PAUSE_FACTOR = 2.0
QUIET_AFTER_FLOOD_S = 0.1
_FIRST_STEP_ROWS, _MIN_STEP_ROWS, _MAX_STEP_ROWS = 256, 16, 20_000

_TEXT_FUNCTION = "sidecar_search_text"
_BEHIND = "SELECT 1 FROM events WHERE id > (SELECT indexed_upto FROM search_progress) LIMIT 1"
# One statement per step: read the events, take their text (a Python function on the
# connection's thread), index it; then the mark moves past the same rows.
_INDEX_STEP = f"""
INSERT INTO search_index (rowid, text)
SELECT id, text FROM (
    SELECT id, {_TEXT_FUNCTION}(method, CAST(payload AS BLOB)) AS text FROM events
    WHERE id > (SELECT indexed_upto FROM search_progress) ORDER BY id LIMIT ?
) WHERE text IS NOT NULL
"""
_ADVANCE = """
UPDATE search_progress SET indexed_upto = (
    SELECT max(id) FROM (SELECT id FROM events WHERE id > indexed_upto ORDER BY id LIMIT ?)
) WHERE EXISTS (SELECT 1 FROM events WHERE id > indexed_upto)
"""
_SEARCHED = ", ".join(f"'{method}'" for method in sorted(SEARCHED_METHODS))
# The newest unindexed events, at most TAIL_SCAN_EVENTS of them read, of the store or of
# one session; the method filter comes after the bound.
_TAIL = f"""
SELECT id, session_id, method, payload FROM (
    SELECT id, session_id, method, payload FROM events WHERE id > ? {{session}}
    ORDER BY id DESC LIMIT {TAIL_SCAN_EVENTS}
) WHERE method IN ({_SEARCHED}) OR method IS NULL ORDER BY id DESC
"""
# Newest first is highest event id first: FTS5 walks its rowids downwards and stops at
# the limit, so a common word costs no more than a rare one.
_INDEXED = """
SELECT e.id, e.session_id, e.method, e.payload
FROM (SELECT rowid AS id FROM search_index WHERE search_index MATCH ? AND rowid <= ?
      ORDER BY rowid DESC LIMIT ?) AS hit
JOIN events AS e ON e.id = hit.id ORDER BY e.id DESC
"""
# With a session: its event ids (from its index) sorted newest first, then looked up one by
# one in the FTS index until the limit, so the cost follows the session, not the store. The
# `LIMIT -1` keeps that sorted subquery from being flattened into the join (the planner
# would then probe every event of the session and sort the hits); the join takes its rows
# in the subquery's order and stops at the limit.
_IN_SESSION = """
SELECT e.id, e.session_id, e.method, e.payload
FROM (SELECT mine.id FROM (SELECT id FROM events WHERE session_id = ? AND id <= ?
                           ORDER BY id DESC LIMIT -1) AS mine
      CROSS JOIN search_index
      WHERE search_index MATCH ? AND search_index.rowid = mine.id LIMIT ?) AS hit
JOIN events AS e ON e.id = hit.id ORDER BY e.id DESC
"""

_Row = tuple[int, bytes, bytes | None, bytes]


def search_text(method: str | None, payload: bytes) -> str | None:
    """The indexed text of a stored event; rows the Rust crate wrote have no method yet.
    Never raises: inside the indexing statement, an error would stop the index at that row."""
    try:
        if method is None:
            keys = stored_keys(payload)
            if keys is None:
                return None
            method = keys.method
        found = searchable(method, payload)
    except Exception:  # a row no reader can use is not searched, as it is not served
        return None
    return None if found is None else found[1]


async def search(db: aiosqlite.Connection, query: SearchQuery) -> list[SearchHit]:
    """Hits newest first (highest seq first): the unindexed tail, then the index. Run whole
    on the store's thread, in one trip through aiosqlite's queue of calls for it (private,
    as for reads): matching the tail is Python over up to TAIL_SCAN_EVENTS events, a few
    milliseconds the event loop goes on meanwhile."""
    hits = await db._execute(_search, db._conn, query)  # type: ignore[no-untyped-call]
    return cast("list[SearchHit]", hits)


def _search(conn: sqlite3.Connection, query: SearchQuery) -> list[SearchHit]:
    indexed_upto = int(conn.execute("SELECT indexed_upto FROM search_progress").fetchone()[0])
    session = () if query.session_id is None else (query.session_id,)
    tail_sql = _TAIL.format(session="AND session_id = ?" if session else "")
    hits: list[SearchHit] = []
    seen: set[int] = set()
    for row in _rows(conn.execute(tail_sql, (indexed_upto, *session))):
        hit = _tail_hit(row, query.terms)
        if hit is not None:
            hits.append(hit)
            seen.add(row[0])
            if len(hits) == query.limit:
                return hits
    match = " ".join('"' + term.replace('"', '""') + '"' for term in query.terms)
    if session:
        indexed = conn.execute(_IN_SESSION, (*session, indexed_upto, match, query.limit))
    else:
        indexed = conn.execute(_INDEXED, (match, indexed_upto, query.limit))
    for row in _rows(indexed):
        if row[0] not in seen:
            hit = _indexed_hit(row, query.terms)
            if hit is not None:
                hits.append(hit)
    return hits[: query.limit]


def _rows(rows: Iterable[sqlite3.Row]) -> list[_Row]:
    return cast("list[_Row]", list(rows))


def _tail_hit(row: _Row, terms: tuple[str, ...]) -> SearchHit | None:
    """A hit if the event holds every term as a word (as search.scan decides)."""
    found = _found(row)
    if found is None:
        return None
    lowered = found[2].lower()
    if not all(term in lowered for term in terms):  # most events: no regex at all
        return None
    text = snippet(found[2], terms)
    return None if text is None else SearchHit(row[1].decode(), row[0], found[0], found[1], text)


def _indexed_hit(row: _Row, terms: tuple[str, ...]) -> SearchHit | None:
    found = _found(row)
    if found is None:
        return None
    text = snippet(found[2], terms) or found[2][:200]  # FTS5 also splits words at `_`
    return SearchHit(row[1].decode(), row[0], found[0], found[1], text)


def _found(row: _Row) -> tuple[str, str, str] | None:
    """(method, timestamp text, searched text) of a row, or None."""
    _, _, method_bytes, payload = row
    if method_bytes is None:
        keys = stored_keys(payload)
        if keys is None:
            return None
        method = keys.method
    else:
        method = method_bytes.decode()
    found = searchable(method, payload)
    return None if found is None else (method, *found)


class SearchIndexer:
    """Brings the index up to the last event in the background, one short transaction at a
    time, on the store's connection and under its write lock (so our committer waits for
    at most one step, and the lock is FIFO: it goes next)."""

    def __init__(self, connection: Callable[[], aiosqlite.Connection], write_lock: asyncio.Lock):
        self._connection = connection
        self._write_lock = write_lock
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._rows = _FIRST_STEP_ROWS
        self._flood_until = 0.0
        self._function_on: aiosqlite.Connection | None = None
        self._stepping = False
        self._stopping = False

    async def stop(self) -> None:
        """Let a step under way commit (close drains, as aiosqlite's does), or stop the
        wait between steps; every committed step stays, and the next start goes on."""
        if self._task is not None:
            task, self._task = self._task, None
            self._stopping = True
            if not self._stepping:
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a bug: say so, and let the store close all the same
                log.exception("the search indexer failed")
            self._stopping = False
        self._idle.set()

    def wake(self) -> None:
        """There may be events to index (a flood, other writers, an old file). The task
        starts at the first wake: a store opened only to be read (the commands) never writes."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="search-indexer")
        self._idle.clear()
        self._wake.set()

    def flooded(self) -> None:
        """Our writer committed a batch too big to index inline: wait until it pauses."""
        self._flood_until = time.monotonic() + QUIET_AFTER_FLOOD_S
        self.wake()

    async def caught_up(self) -> None:
        """Until the index has reached the last event committed by now, by anyone (for
        tests and benchmarks: bound the wait)."""
        if self._task is not None:
            self.wake()
            await self._idle.wait()

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._catch_up()
            except StoreFailure:  # the store is closed or its connection dropped: wait for a wake
                pass
            except sqlite3.Error as exc:  # locked for longer than the timeout, disk, ...
                log.warning("search index catch-up paused: %s", exc)
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            if not self._wake.is_set():
                self._idle.set()

    async def _catch_up(self) -> None:
        while not self._stopping and await self._connection().execute_fetchall(_BEHIND):
            pause = self._flood_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            self._stepping = True
            try:
                took = await self._step()
            finally:
                self._stepping = False
            if self._stopping:
                return
            if took is None:
                continue
            # Tune the next step to the target, without leaps either way.
            scale = min(2.0, max(0.5, STEP_TARGET_S / max(took, 1e-4)))
            self._rows = min(_MAX_STEP_ROWS, max(_MIN_STEP_ROWS, int(self._rows * scale)))
            await asyncio.sleep(took * PAUSE_FACTOR)

    async def _step(self) -> float | None:
        """Index the next rows in one transaction; how long it held the write lock, or None
        if a flood was committed while it waited for the lock."""
        async with self._write_lock:
            if self._flood_until > time.monotonic():
                return None
            db = self._connection()
            if self._function_on is not db:
                await db.create_function(_TEXT_FUNCTION, 2, search_text, deterministic=True)
                self._function_on = db
            await db.execute("BEGIN IMMEDIATE")  # waits for other processes' writers
            start = time.monotonic()
            try:
                await db.execute(_INDEX_STEP, (self._rows,))
                await db.execute(_ADVANCE, (self._rows,))
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await db.rollback()
                raise
            return time.monotonic() - start
