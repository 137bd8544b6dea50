"""PostgreSQL backend through asyncpg: many sidecars may share one server and database.

A batch is one transaction: seqs drawn from the events sequence, the events COPYed in,
their words indexed (a tsvector per searched event, GIN; a flood's wait for the next
search), then the touched sessions' summaries locked, folded in Python and saved. A lost
connection is a StoreFailure (the ingest layer keeps the events and retries with
backoff); the next call reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg
import msgspec

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
from sidecar.store.search import SEARCHED_METHODS, query_terms, searchable, snippet
from sidecar.store.summary import Tally, tally_events
from sidecar.timestamps import MAX_NS, clamp

log = logging.getLogger("sidecar")

SCHEMA_VERSION = 1
# Every sidecar migrates at start; the first to take this lock does it, the others wait
# and find nothing left to do. (Advisory locks are per database.)
_MIGRATION_LOCK = 0x6D6963726F616700  # "microag"

# Step i takes the database from version i to i + 1, in one transaction with the bump.
# session_id is compared byte-wise ("C"): Python's order of ids, and no locale in the key.
_SCHEMA_1 = """
CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,
    session_id   TEXT COLLATE "C" NOT NULL,
    payload      TEXT NOT NULL,                       -- the compact notification, as received
    timestamp_ns BIGINT NOT NULL,                     -- its instant, clamped to int64: the order
    method       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX events_session ON events (session_id, seq);
CREATE TABLE quarantine (
    id          BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    line        BYTEA NOT NULL,
    reason      TEXT NOT NULL
);
CREATE TABLE sessions (
    session_id  TEXT COLLATE "C" PRIMARY KEY,
    last_ns     BIGINT,
    tally       JSON                                  -- summary.Tally
);
CREATE INDEX sessions_recent ON sessions (last_ns, session_id);
CREATE TABLE search (
    seq          BIGINT PRIMARY KEY,                  -- events.seq
    session_id   TEXT COLLATE "C" NOT NULL,
    timestamp_ns BIGINT NOT NULL,
    words        TSVECTOR NOT NULL
);
CREATE INDEX search_words ON search USING gin (words);
CREATE TABLE search_pending (seq BIGINT PRIMARY KEY);  -- events of floods, indexed before a search
"""
MIGRATIONS = (_SCHEMA_1,)

_EVENT_COLUMNS = ("seq", "session_id", "payload", "timestamp_ns", "method")
# Seqs are drawn first, so each event's own is known even while other sidecars draw
# theirs (a bigserial COPY would not say which values it took).
_NEXT_SEQS = "SELECT array_agg(nextval('events_seq_seq')) FROM generate_series(1, $1)"
_COMMIT_ORDER_LOCK = 0x6D69637273657100  # pg_advisory_xact_lock key: "micrseq"
_INSERT_REJECTED = """
INSERT INTO quarantine (received_at, line, reason)
SELECT * FROM unnest($1::timestamptz[], $2::bytea[], $3::text[])
"""
# Small batches are indexed for search as they are written; bigger ones (a flood, where
# splitting the words would cost the ingest rate dearly) leave their searched events
# pending, and the next search on any sidecar indexes them first, CATCH_UP_ROWS per
# transaction.
INDEX_INLINE_EVENTS = 256
CATCH_UP_ROWS = 5000
_INSERT_PENDING = "INSERT INTO search_pending (seq) SELECT unnest($1::int8[])"
# Locked in seq order, here as in a delete, so two never deadlock; rows a concurrent
# catch-up indexed meanwhile are gone when the lock comes, and skipped.
_LOCK_PENDING = """
SELECT p.seq, e.session_id, e.timestamp_ns, e.method, convert_to(e.payload, 'UTF8')
FROM search_pending AS p LEFT JOIN events AS e USING (seq)
WHERE p.seq <= $1 ORDER BY p.seq LIMIT $2 FOR UPDATE OF p
"""
_DELETE_PENDING = """
DELETE FROM search_pending WHERE seq IN (
    SELECT seq FROM search_pending WHERE seq IN (SELECT seq FROM events WHERE session_id = $1)
    ORDER BY seq FOR UPDATE)
"""
_INSERT_WORDS = """
INSERT INTO search (seq, session_id, timestamp_ns, words)
SELECT seq, session_id, ns, array_to_tsvector(string_to_array(words, ' '))
FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[]) AS w(seq, session_id, ns, words)
"""
# Creates missing summaries and locks all of the batch's until commit, in the order given.
_LOCK_SESSIONS = """
INSERT INTO sessions (session_id) SELECT unnest($1::text[])
ON CONFLICT (session_id) DO UPDATE SET session_id = excluded.session_id
RETURNING session_id, tally
"""
_SAVE_SESSIONS = """
UPDATE sessions AS s SET last_ns = u.last_ns, tally = u.tally
FROM unnest($1::text[], $2::int8[], $3::json[]) AS u(session_id, last_ns, tally)
WHERE s.session_id = u.session_id
"""
# Arrival order; the caller orders by instant. Methods: exact names or `prefix.` starts.
_READ_SESSION = """
SELECT timestamp_ns, convert_to(payload, 'UTF8') FROM events
WHERE session_id = $1 AND ($2::int8 IS NULL OR timestamp_ns >= $2)
  AND ($3::text[] IS NULL OR method = ANY($3)
       OR EXISTS (SELECT FROM unnest($4::text[]) AS p WHERE starts_with(method, p)))
ORDER BY seq
"""
_LIST_SESSIONS = """
SELECT session_id, last_ns, tally FROM sessions
WHERE ($1::int8 IS NULL OR last_ns < $1)
  AND ($2::int8 IS NULL OR (last_ns, session_id) < ($2, $3))
ORDER BY last_ns DESC, session_id DESC LIMIT $4
"""
_SEARCH = """
SELECT e.seq, e.session_id, e.method, convert_to(e.payload, 'UTF8')
FROM (SELECT seq FROM search WHERE words @@ $1::tsquery AND ($2::text IS NULL OR session_id = $2)
      ORDER BY seq DESC LIMIT $3) AS hit
JOIN events AS e USING (seq)
ORDER BY e.seq DESC
"""
LIST_PAGE = 500  # summaries read at a time while a text filter skips some
# A tsvector keeps lexemes of at most 2047 bytes, 1 MiB of them in all; array_to_tsvector
# does not check, so longer words and words past the budget are left out of the index.
MAX_WORD_BYTES = 2047
MAX_WORDS_BYTES = 1_000_000
CONNECT_TIMEOUT_S = 5.0
FOLLOW_PREFETCH = 16  # rows a follower's cursor fetches at a time
# Every statement, COPY included, on every connection: a server that goes quiet in the
# middle of one (seen after `pg_ctl restart -m immediate` during a COPY) would otherwise be
# waited for forever. Past it the connection is dropped and the batch retried, once, by
# the lost-COMMIT check. Far above what a batch takes (at most 8 MiB of events).
COMMAND_TIMEOUT_S = 30.0
# PostgreSQL text cannot hold NUL: an id with one (or starting with the escape) is
# stored escaped, `\x01` + the id with \x01 -> \x01\x01 and \x00 -> \x01\x02.
_ESCAPE = "\x01"
_UNESCAPE = re.compile("\x01(.)", re.DOTALL)
_tally_decoder = msgspec.json.Decoder(Tally)
# The connection is gone or the server going (class 57: shutdown, restart, cancel).
_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


# SQLSTATE classes of a value the server will never take, however often it is sent: data
# exceptions (22) and program limits, such as an index row too big (54).
_REFUSED_CLASSES = ("22", "54")


class PostgresStore(Store):
    backend = "postgres"

    def __init__(
        self,
        dsn: str | None,
        *,
        durability: str = "normal",
        lock_timeout_ms: int = 5000,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        """`dsn`: a postgresql:// URI; None takes libpq's PG* environment variables."""
        self.location = redact(dsn) if dsn else "postgresql (PG* environment)"
        settings = {"lock_timeout": str(lock_timeout_ms)}
        if "application_name=" not in (dsn or ""):  # shown in pg_stat_activity
            settings["application_name"] = "microagents-sidecar"
        if durability == "full":  # "normal" keeps the server's setting (on, unless changed)
            settings["synchronous_commit"] = "on"
        # The committer's batches and storage requests on connections of their own: a
        # request never waits for a commit to finish.
        self._ingest = _Link(dsn, settings, command_timeout_s)
        self._requests = _Link(dsn, settings, command_timeout_s)
        self._unsure: list[_Batch] = []  # batches whose COMMIT went unanswered, in order
        self._rest: _Batch | None = None  # of a landed unsure batch, what a retry of its start left

    async def open(self) -> None:
        try:
            async with self._ingest.use() as conn:
                encoding = await conn.fetchval("SHOW server_encoding")
                if encoding != "UTF8":
                    raise StoreFailure(f"the database's encoding is {encoding}; it must be UTF8")
                await self._migrate(conn)
        except StoreFailure as exc:
            await self.close()
            raise StoreFailure(f"cannot open {self.location}: {exc}") from exc

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
            for step in range(version, SCHEMA_VERSION):
                await conn.execute(MIGRATIONS[step])
            if version < SCHEMA_VERSION:
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version VALUES ($1)", SCHEMA_VERSION)
        if version < SCHEMA_VERSION:
            log.info("migrated %s from schema %d to %d", self.location, version, SCHEMA_VERSION)
        elif version > SCHEMA_VERSION:
            log.warning(
                "%s has schema %d, newer than this sidecar's %d", self.location, version, SCHEMA_VERSION
            )

    async def close(self) -> None:
        await self._ingest.close()
        await self._requests.close()

    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        async with self._ingest.use() as conn:
            landed, events, rejected = await self._settle(conn, events, rejected)
            transaction = conn.transaction()
            await transaction.start()
            try:
                # Seqs drawn under a lock held to COMMIT: writers commit in seq order, so a
                # follower reading `seq > last` never skips one committed late (subscribe).
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _COMMIT_ORDER_LOCK)
                seqs = sorted(await conn.fetchval(_NEXT_SEQS, len(events))) if events else []
                await self._insert(conn, events, rejected, seqs)
            except BaseException:
                if not conn.is_closed():
                    await transaction.rollback()
                raise
            # A connection lost during COMMIT leaves its outcome unknown: the retry of
            # this batch first looks whether it landed, so it is never stored twice.
            self._unsure.append(_Batch(events, rejected, seqs))
            await transaction.commit()
            # What is left of a landed batch whose start this write was: still to skip.
            self._unsure = [self._rest] if self._rest is not None and self._rest.events else []
            self._rest = None
        return landed + seqs

    async def _insert(
        self, conn: asyncpg.Connection, events: Sequence[Event], rejected: Sequence[Rejected], seqs: list[int]
    ) -> None:
        if events:
            keys = [_key(event.session_id) for event in events]
            records = zip(
                seqs,
                keys,
                [event.payload.decode() for event in events],
                [event.timestamp_ns for event in events],
                [event.method for event in events],
                strict=True,
            )
            await conn.copy_records_to_table("events", records=records, columns=_EVENT_COLUMNS)
            if len(events) <= INDEX_INLINE_EVENTS:
                together = zip(seqs, keys, events, strict=True)
                await _index_words(
                    conn, [(seq, key, e.timestamp_ns, e.method, e.payload) for seq, key, e in together]
                )
            else:
                pending = [seq for seq, e in zip(seqs, events, strict=True) if e.method in SEARCHED_METHODS]
                await conn.execute(_INSERT_PENDING, pending)
        if rejected:
            await conn.execute(
                _INSERT_REJECTED,
                [datetime.fromtimestamp(r.received_ms / 1000, UTC) for r in rejected],
                [r.line for r in rejected],
                [r.reason.replace("\x00", "\\u0000") for r in rejected],
            )
        if events:  # last: the summaries stay locked for as short a time as can be
            await _fold(conn, events)

    async def _settle(
        self, conn: asyncpg.Connection, events: Sequence[Event], rejected: Sequence[Rejected]
    ) -> tuple[list[int], Sequence[Event], Sequence[Rejected]]:
        """Of the batches whose COMMIT went unanswered, those that landed and are being
        retried (the ingest layer puts a failed batch back at the head of its queue, and
        may retry only the start of it while it looks for an event the store refuses):
        their seqs, and what is left to store."""
        landed: list[int] = []
        kept: list[_Batch] = []
        for batch in self._unsure:
            if not events:  # only quarantined lines: nothing of the unsure batches is retried
                kept = list(self._unsure)
                break
            if len(events) < len(batch.events) and batch.seqs and _starts_with(batch.events, events):
                # The start of a batch that landed or not, all or nothing, as the batch did.
                if not await self._landed(conn, batch):
                    break
                count = len(events)
                landed += batch.seqs[:count]
                events = []
                kept.append(batch)
                self._rest = _Batch(batch.events[count:], batch.rejected, batch.seqs[count:])
                break
            retried = _starts_with(events, batch.events) and _starts_with(rejected, batch.rejected)
            if not (retried and batch.seqs):
                break
            if not await self._landed(conn, batch):
                break  # all or nothing: it did not land, and it is being written again
            landed += batch.seqs
            events, rejected = events[len(batch.events) :], rejected[len(batch.rejected) :]
            kept.append(batch)
        self._unsure = kept  # landed: skipped again if this write fails and is retried
        return landed, events, rejected

    @staticmethod
    async def _landed(conn: asyncpg.Connection, batch: _Batch) -> bool:
        landed = bool(await conn.fetchval("SELECT EXISTS (SELECT FROM events WHERE seq = $1)", batch.seqs[0]))
        if landed:
            log.warning(
                "%d events committed as the connection was lost are not stored again", len(batch.seqs)
            )
        return landed

    async def last_seq(self) -> int:
        async with self._requests.use() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events"))

    async def change_token(self) -> object:
        return await self.last_seq()

    async def events_after(self, after: int, limit: int, max_bytes: int | None = None) -> Page:
        """Through a cursor a few rows at a time, stopping once `max_bytes` is read."""
        rows: list[asyncpg.Record] = []
        size, stopped = 0, False
        async with self._requests.use() as conn, conn.transaction(readonly=True):
            cursor = conn.cursor(
                "SELECT seq, session_id, payload, timestamp_ns, method FROM events "
                "WHERE seq > $1 ORDER BY seq LIMIT $2",
                after,
                limit,
                prefetch=FOLLOW_PREFETCH,
            )
            async for row in cursor:
                rows.append(row)
                size += len(row[2])
                if max_bytes is not None and size >= max_bytes:
                    stopped = True
                    break
        events = [
            (seq, Event(_session_id(key), payload.encode(), ns, method))
            for seq, key, payload, ns, method in rows
        ]
        return Page(events, rows[-1][0] if rows else after, stopped or len(rows) == limit)

    async def read_session(self, session_id: str, query: SessionQuery) -> list[bytes]:
        exact = [p for p in query.methods if not p.endswith(".*")]
        prefixes = [p[:-1] for p in query.methods if p.endswith(".*")]
        after = None if query.after_ns is None else clamp(query.after_ns)  # time_ordered is exact
        async with self._requests.use() as conn:
            rows = await conn.fetch(
                _READ_SESSION, _key(session_id), after, exact if query.methods else None, prefixes
            )
        return time_ordered([(row[0], row[1]) for row in rows], query)

    async def count_sessions(self) -> int:
        async with self._requests.use() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM sessions"))

    async def list_sessions(self, query: ListQuery) -> list[SessionSummary]:
        """Newest first, a page at a time: only as many summaries as the filter needs."""
        before = query.before_ns
        before = None if before is None or before > MAX_NS else clamp(before)
        wanted = query.limit
        chosen: list[SessionSummary] = []
        cursor: tuple[int | None, str | None] = (None, None)
        if query.before_ns is not None and query.before_id is not None:  # the list's own cursor
            before, cursor = None, (clamp(query.before_ns), _key(query.before_id))
        async with self._requests.use() as conn:
            while wanted is None or len(chosen) < wanted:
                page = LIST_PAGE if query.text or wanted is None else wanted - len(chosen)
                rows = await conn.fetch(_LIST_SESSIONS, before, *cursor, page)
                for row in rows:
                    tally = _tally_decoder.decode(row[2])
                    if not query.text or tally.matches(query.text):
                        chosen.append(tally.summary())
                if len(rows) < page:
                    break
                cursor = (rows[-1][1], rows[-1][0])
        return chosen[:wanted]

    async def count_quarantined(self) -> int:
        async with self._requests.use() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM quarantine"))

    async def delete_session(self, session_id: str) -> int:
        """The summary first: its lock makes a concurrent batch of the session wait, so
        that batch is either deleted whole or kept whole."""
        key = _key(session_id)
        async with self._requests.use() as conn, conn.transaction():
            await conn.execute("DELETE FROM sessions WHERE session_id = $1", key)
            await conn.execute(_DELETE_PENDING, key)  # first: a catch-up under way ends first
            await conn.execute(
                "DELETE FROM search WHERE seq IN (SELECT seq FROM events WHERE session_id = $1)", key
            )
            status = await conn.execute("DELETE FROM events WHERE session_id = $1", key)
        return int(status.split()[-1])

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        if not query.terms or any(len(term.encode()) > MAX_WORD_BYTES for term in query.terms):
            return []  # no such word is in the index
        match = " & ".join("'" + term.replace("\\", "\\\\").replace("'", "''") + "'" for term in query.terms)
        session = None if query.session_id is None else _key(query.session_id)
        async with self._requests.use() as conn:
            await _catch_up(conn)
            rows = await conn.fetch(_SEARCH, match, session, query.limit)
        hits = []
        for seq, session_id, method, payload in rows:
            found = searchable(method, payload)
            if found is not None:
                text = snippet(found[1], query.terms) or found[1][:200]
                hits.append(SearchHit(_session_id(session_id), seq, method, found[0], text))
        return hits


# (seq, stored session id, timestamp_ns, method, payload) of an event to index
_Indexed = tuple[int, str, int, str, bytes]


class _Batch(NamedTuple):
    events: Sequence[Event]
    rejected: Sequence[Rejected]
    seqs: list[int]


def _starts_with(items: Sequence[object], head: Sequence[object]) -> bool:
    return len(items) >= len(head) and all(a is b for a, b in zip(items, head, strict=False))


class _Link:
    """One connection, made on first use and again after it is lost; one user at a time."""

    def __init__(self, dsn: str | None, settings: dict[str, str], command_timeout_s: float) -> None:
        self._dsn = dsn
        self._settings = settings
        self._command_timeout_s = command_timeout_s
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def use(self) -> AsyncIterator[asyncpg.Connection]:
        """The connection; any database or connection error leaves as StoreFailure."""
        async with self._lock:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = None
                    self._conn = await asyncpg.connect(
                        self._dsn,
                        timeout=CONNECT_TIMEOUT_S,
                        command_timeout=self._command_timeout_s,
                        server_settings=self._settings,
                    )
                yield self._conn
            except _LOST as exc:
                self._drop()  # in no known state: the next call starts afresh
                raise StoreFailure(f"cannot reach PostgreSQL: {exc or type(exc).__name__}") from exc
            except asyncpg.PostgresError as exc:  # the statement failed; the connection stays
                if self._conn is not None and self._conn.is_closed():
                    self._conn = None
                if str(getattr(exc, "sqlstate", "")).startswith(_REFUSED_CLASSES):
                    raise EventRefused(f"{type(exc).__name__}: {exc}") from exc
                raise StoreFailure(f"{type(exc).__name__}: {exc}") from exc

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                try:
                    await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT_S)
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                    conn.terminate()


async def _index_words(conn: asyncpg.Connection, events: Sequence[_Indexed]) -> None:
    """Index the words of each searched event, as search.py splits and folds them."""
    rows = []
    for seq, key, ns, method, payload in events:
        found = searchable(method, payload)
        words = _indexable(query_terms(found[1])) if found is not None else ""
        if words:
            rows.append((seq, key, ns, words))
    if rows:
        await conn.execute(_INSERT_WORDS, *map(list, zip(*rows, strict=True)))


async def _catch_up(conn: asyncpg.Connection) -> None:
    """Index the events floods left pending, up to those pending now."""
    upto = await conn.fetchval("SELECT max(seq) FROM search_pending")
    while upto is not None:
        async with conn.transaction():
            rows = await conn.fetch(_LOCK_PENDING, upto, CATCH_UP_ROWS)
            if not rows:
                return
            alive = [(r[0], r[1], r[2], r[3], r[4]) for r in rows if r[1] is not None]  # None: deleted
            await _index_words(conn, alive)
            await conn.execute(
                "DELETE FROM search_pending WHERE seq = ANY($1::int8[])", [row[0] for row in rows]
            )


def _indexable(words: Sequence[str]) -> str:
    """Words a tsvector can hold, space-separated (no word holds a space)."""
    kept, budget = [], MAX_WORDS_BYTES
    for word in words:
        size = len(word.encode())
        if size <= MAX_WORD_BYTES:
            budget -= size
            if budget < 0:
                break
            kept.append(word)
    return " ".join(kept)


async def _fold(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Fold the batch into its sessions' summaries. Every writer locks them in sorted
    order, so concurrent batches never deadlock."""
    ids = sorted({event.session_id for event in events})
    keys = [_key(session_id) for session_id in ids]
    stored = {row[0]: row[1] for row in await conn.fetch(_LOCK_SESSIONS, keys)}
    tallies = {
        session_id: _tally_decoder.decode(stored[key]) if stored.get(key) else Tally(session_id=session_id)
        for session_id, key in zip(ids, keys, strict=True)
    }
    tally_events(tallies, events)
    saved = [tallies[session_id] for session_id in ids]
    await conn.execute(
        _SAVE_SESSIONS,
        keys,
        [tally.last_ns for tally in saved],
        [msgspec.json.encode(tally).decode() for tally in saved],
    )


def _key(session_id: str) -> str:
    """The stored form of a session id (see _ESCAPE)."""
    if "\x00" not in session_id and not session_id.startswith(_ESCAPE):
        return session_id
    return _ESCAPE + session_id.replace(_ESCAPE, _ESCAPE * 2).replace("\x00", _ESCAPE + "\x02")


def _session_id(key: str) -> str:
    if not key.startswith(_ESCAPE):
        return key
    return _UNESCAPE.sub(lambda m: "\x00" if m.group(1) == "\x02" else m.group(1), key[1:])


def redact(dsn: str) -> str:
    """The DSN without its password, for storage.info and logs."""
    dsn = re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", dsn)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", dsn)
