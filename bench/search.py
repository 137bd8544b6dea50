"""Search on a large SQLite store, the shipped store against the search it replaced, in one run.

A flood of --events (default 1,000,000: the 200 x 1000 stream cycled, each cycle with its
own session ids) written through SqliteStore.write in batches of 20,000. Then, as shipped:
the first search right after the flood, the background catch-up while a writer in another
connection (the Rust crate's way: busy timeout 5 s, one row per transaction) inserts rows
and times each insert, and warm searches for a common word with and without session_id.
Then, on the same file with the index dropped, as before: the catch-up in one transaction
(what the first search used to run) with the same writer, and the old query (join events,
sort every match by instant). Figures only, no target asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from common import fresh_db, report, stream

from sidecar.events import stored_keys
from sidecar.store.base import Event, SearchQuery
from sidecar.store.search import searchable, snippet
from sidecar.store.sqlite import SqliteStore

BATCH = 20_000
WORD = "refactor"
WARM_RUNS = 20
CRATE_TIMEOUT_S = 5.0
_OLD_SEARCH = (
    "SELECT e.id, e.session_id, e.method, e.payload FROM search_index "
    "JOIN events e ON e.id = search_index.rowid WHERE {where} "
    "ORDER BY e.timestamp_ns DESC, e.id DESC LIMIT 20"
)


def load_events(count: int) -> list[Event]:
    base = []
    for line in stream().read_bytes().splitlines():
        keys = stored_keys(line)
        assert keys is not None
        base.append(Event(keys.session_id, line, keys.timestamp_ns, keys.method))
    events: list[Event] = []
    cycle = 0
    while len(events) < count:
        events.extend(Event(f"{e.session_id}~{cycle}", e.payload, e.timestamp_ns, e.method) for e in base)
        cycle += 1
    return events[:count]


class Writer(threading.Thread):
    """Inserts a row per transaction through its own connection until stopped; the
    longest insert (its wait for the lock) and the failures."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.longest = 0.0
        self.writes = 0
        self.failures = 0

    def run(self) -> None:
        with closing(sqlite3.connect(self.path, timeout=CRATE_TIMEOUT_S, isolation_level=None)) as db:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    db.execute(
                        "INSERT INTO events (session_id, payload, created_at) VALUES (?, ?, ?)",
                        ("crate", '{"jsonrpc":"2.0","method":"session.init","params":{}}', 0),
                    )
                    self.writes += 1
                except sqlite3.OperationalError:
                    self.failures += 1
                self.longest = max(self.longest, time.perf_counter() - start)
                self.stop.wait(0.002)

    def finish(self) -> Writer:
        self.stop.set()
        self.join()
        return self


async def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    result = call()
    if asyncio.iscoroutine(result):
        await result
    return time.perf_counter() - start


async def warm(store: SqliteStore, query: SearchQuery) -> float:
    await store.search(query)
    return statistics.median([await timed(lambda: store.search(query)) for _ in range(WARM_RUNS)])


def old_catch_up(path: Path) -> None:
    """The catch-up the first search ran before: every unindexed event, one transaction."""
    with closing(sqlite3.connect(path, timeout=CRATE_TIMEOUT_S, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        done = db.execute("SELECT indexed_upto FROM search_progress").fetchone()[0]
        while rows := db.execute(
            "SELECT id, method, payload FROM events WHERE id > ? ORDER BY id LIMIT 5000", (done,)
        ).fetchall():
            texts = []
            for row_id, method, payload in rows:
                found = searchable(method, payload) if method is not None else None
                if found is not None:
                    texts.append((row_id, found[1]))
            db.executemany("INSERT INTO search_index (rowid, text) VALUES (?, ?)", texts)
            done = rows[-1][0]
        db.execute("UPDATE search_progress SET indexed_upto = ?", (done,))
        db.execute("COMMIT")


def old_search(db: sqlite3.Connection, session_id: str | None) -> int:
    where, args = "search_index MATCH ?", [f'"{WORD}"']
    if session_id is not None:
        where += " AND e.session_id = ?"
        args.append(session_id)
    hits = 0
    for _, _, method, payload in db.execute(_OLD_SEARCH.format(where=where), args):
        found = searchable(method, payload)
        if found is not None and (snippet(found[1], (WORD,)) or found[1][:200]):
            hits += 1
    return hits


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    count = parser.parse_args().events
    events = load_events(count)
    session = events[len(events) // 2].session_id
    path = fresh_db("search_bench.db")

    store = SqliteStore(path)
    await store.open()
    start = time.perf_counter()
    for i in range(0, count, BATCH):
        await store.write(events[i : i + BATCH], ())
    flood_s = time.perf_counter() - start
    first_s = await timed(lambda: store.search(SearchQuery((WORD,))))
    writer = Writer(path)
    writer.start()
    catch_up_s = await timed(store.search_caught_up)
    new_writer = writer.finish()
    warm_all = await warm(store, SearchQuery((WORD,)))
    warm_session = await warm(store, SearchQuery((WORD,), session_id=session))
    await store.close()

    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP TABLE search_index")
        db.execute(
            "CREATE VIRTUAL TABLE search_index USING fts5(text, tokenize = 'unicode61 remove_diacritics 0')"
        )
        db.execute("UPDATE search_progress SET indexed_upto = 0")
    writer = Writer(path)
    writer.start()
    old_catch_up_s = await timed(lambda: old_catch_up(path))
    old_writer = writer.finish()
    with closing(sqlite3.connect(path)) as db:
        old_search(db, None)
        old_all = statistics.median([await timed(lambda: old_search(db, None)) for _ in range(WARM_RUNS)])
        old_session = statistics.median(
            [await timed(lambda: old_search(db, session)) for _ in range(WARM_RUNS)]
        )

    report(
        f"flood: {count:,} events in batches of {BATCH:,}", [("written", f"{count / flood_s:,.0f} events/s")]
    )
    report(
        "first search after the flood",
        [
            ("as shipped (index + bounded tail scan)", f"{first_s * 1e3:,.0f} ms"),
            ("before (catch-up in one transaction)", f"{old_catch_up_s * 1e3:,.0f} ms + the search"),
            ("ratio before / shipped", f"{old_catch_up_s / first_s:,.0f}x"),
        ],
    )
    report(
        "a writer in another connection while the index catches up (busy timeout 5 s)",
        [
            ("as shipped: catch-up in the background", f"{catch_up_s:,.1f} s"),
            ("as shipped: longest wait for the lock", f"{new_writer.longest * 1e3:,.1f} ms"),
            ("as shipped: writes, failed", f"{new_writer.writes:,}, {new_writer.failures}"),
            ("before: longest wait for the lock", f"{old_writer.longest * 1e3:,.1f} ms"),
            ("before: writes, failed", f"{old_writer.writes:,}, {old_writer.failures}"),
        ],
    )
    report(
        f"warm search for {WORD!r}, limit 20 (median of {WARM_RUNS})",
        [
            ("as shipped, whole store", f"{warm_all * 1e3:,.1f} ms"),
            ("as shipped, one session", f"{warm_session * 1e3:,.1f} ms"),
            ("before, whole store", f"{old_all * 1e3:,.1f} ms  ({old_all / warm_all:,.1f}x)"),
            ("before, one session", f"{old_session * 1e3:,.1f} ms  ({old_session / warm_session:,.1f}x)"),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
