"""The SQLite search index (sqlite_search) in-process: caught up in the background after a
flood, searched from what it holds plus the newest events it has not reached, latest
stored first, and per session through that session's events only."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import rust_crate
from events import event, events, prompt

from sidecar.store import sqlite_search
from sidecar.store.base import SearchHit, SearchQuery
from sidecar.store.sqlite import INDEX_INLINE_EVENTS, SqliteStore
from sidecar.store.sqlite_search import TAIL_SCAN_EVENTS

CATCH_UP_WAIT_S = 60.0
T1 = "2026-06-07T14:03:21Z"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(db)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def indexed_upto(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT indexed_upto FROM search_progress").fetchone()[0])


async def caught_up(store: SqliteStore) -> None:
    await asyncio.wait_for(store.search_caught_up(), CATCH_UP_WAIT_S)


async def test_a_flood_is_indexed_in_the_background_without_a_search(store: SqliteStore, db: Path) -> None:
    flood = events(*(prompt("f", T1, text=f"flood{n} common") for n in range(3 * INDEX_INLINE_EVENTS)))
    seqs = await store.write(flood, [])
    await caught_up(store)
    assert indexed_upto(db) == seqs[-1]
    [hit] = await store.search(SearchQuery(terms=("flood0",)))
    assert hit.seq == seqs[0]


async def test_while_the_index_catches_up_a_search_sees_it_and_the_newest_unindexed_events(
    store: SqliteStore, db: Path
) -> None:
    await store.write(events(prompt("s", T1, text="heron indexed")), [])
    # Another process writes more than a search scans (the indexer is not woken by it).
    crate = rust_crate.open_like_the_crate(db)
    try:
        rust_crate.insert(crate, prompt("s", T1, text="heron in between"))
        for n in range(TAIL_SCAN_EVENTS):
            rust_crate.insert(
                crate, prompt("s", T1, text=f"filler {n}" if n < TAIL_SCAN_EVENTS - 1 else "heron new")
            )
    finally:
        crate.close()
    meanwhile = await store.search(SearchQuery(terms=("heron",)))
    assert [h.snippet for h in meanwhile] == ["[heron] new", "[heron] indexed"]
    await caught_up(store)  # the search woke the indexer
    after = await store.search(SearchQuery(terms=("heron",)))
    assert [h.snippet for h in after] == ["[heron] new", "[heron] in between", "[heron] indexed"]
    assert [h.method for h in after] == ["user.prompt.submit"] * 3


async def test_the_unindexed_tail_is_matched_off_the_event_loop(
    store: SqliteStore, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matching the tail is Python over up to TAIL_SCAN_EVENTS events: not the loop's."""
    crate = rust_crate.open_like_the_crate(db)  # events the index has not reached
    try:
        rust_crate.insert(crate, prompt("s", T1, text="heron unindexed"))
    finally:
        crate.close()
    matched_on: list[threading.Thread] = []
    tail_hit = sqlite_search._tail_hit

    def spied(*args: Any) -> SearchHit | None:
        matched_on.append(threading.current_thread())
        return tail_hit(*args)

    monkeypatch.setattr(sqlite_search, "_tail_hit", spied)
    [hit] = await store.search(SearchQuery(terms=("heron",)))
    assert hit.snippet == "[heron] unindexed"
    assert matched_on and threading.main_thread() not in matched_on


async def test_hits_are_latest_stored_first_whatever_their_instants(store: SqliteStore) -> None:
    late, early = "2026-06-07T15:00:00Z", "2026-06-07T09:00:00Z"
    await store.write(events(prompt("a", late, text="kite one")), [])
    await store.write(events(prompt("b", early, text="kite two")), [])
    assert [h.snippet for h in await store.search(SearchQuery(terms=("kite",)))] == [
        "[kite] two",
        "[kite] one",
    ]


async def test_a_session_filter_finds_that_sessions_hits_latest_first_up_to_the_limit(
    store: SqliteStore,
) -> None:
    # Interleaved sessions, indexed by the background indexer, hits spread over many probes.
    batch = []
    for n in range(600):
        batch.append(event(prompt("mine", T1, text=f"owl {n}" if n % 7 == 0 else f"other {n}")))
        batch.append(event(prompt("theirs", T1, text=f"owl {n}")))
    await store.write(batch, [])
    await caught_up(store)
    mine = [n for n in range(600) if n % 7 == 0]
    hits = await store.search(SearchQuery(terms=("owl",), session_id="mine", limit=50))
    assert [h.snippet for h in hits] == [f"[owl] {n}" for n in reversed(mine)][:50]
    assert {h.session_id for h in hits} == {"mine"}
    every = await store.search(SearchQuery(terms=("owl",), session_id="mine", limit=1000))
    assert len(every) == len(mine)
    assert await store.search(SearchQuery(terms=("owl",), session_id="nobody")) == []


async def test_a_store_closed_during_a_catch_up_finishes_it_when_opened_again(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    flood = events(*(prompt("c", T1, text=f"word{n}") for n in range(4 * TAIL_SCAN_EVENTS)))
    seqs = await store.write(flood, [])
    await store.close()
    assert indexed_upto(db) < seqs[-1]  # a flood waits for the writer to pause
    store = SqliteStore(db)
    await store.open()
    try:
        await caught_up(store)
        assert indexed_upto(db) == seqs[-1]
        [hit] = await store.search(SearchQuery(terms=("word0",)))
        assert hit.seq == seqs[0]
    finally:
        await store.close()


async def test_a_writer_in_another_connection_is_never_locked_out_while_the_index_catches_up(
    store: SqliteStore, db: Path
) -> None:
    """In-process stand-in for the Rust crate: a thread writing through its own connection
    with a short busy timeout, one row per transaction, until the flood is indexed."""
    flood = events(*(prompt("w", T1, text=f"busy words {n}") for n in range(20_000)))
    last = (await store.write(flood, []))[-1]
    failures: list[str] = []
    stop = threading.Event()  # a bound, should the index never get there

    def write_until_the_flood_is_indexed() -> int:
        writes = 0
        with closing(sqlite3.connect(db, timeout=0.5, isolation_level=None)) as crate:
            while not stop.is_set():
                try:
                    rust_crate.insert(crate, prompt("crate", T1, text=f"crate {writes}"))
                    writes += 1
                    progress = crate.execute("SELECT indexed_upto FROM search_progress").fetchone()
                except sqlite3.OperationalError as exc:
                    failures.append(str(exc))
                    continue
                if progress[0] >= last:
                    break
        return writes

    writer = asyncio.get_running_loop().run_in_executor(None, write_until_the_flood_is_indexed)
    try:
        writes = await asyncio.wait_for(asyncio.shield(writer), CATCH_UP_WAIT_S)
    finally:
        stop.set()
        await writer
    assert failures == [] and writes > 0
    assert indexed_upto(db) >= last


async def test_a_row_no_reader_can_decode_does_not_stop_the_index_at_it(store: SqliteStore, db: Path) -> None:
    with closing(sqlite3.connect(db, isolation_level=None)) as foreign:  # not valid UTF-8
        foreign.execute(
            "INSERT INTO events (session_id, payload, created_at) VALUES ('x', CAST(x'7bff' AS TEXT), 0)"
        )
    flood = events(*(prompt("after", T1, text=f"later{n}") for n in range(3 * INDEX_INLINE_EVENTS)))
    seqs = await store.write(flood, [])
    await caught_up(store)
    assert indexed_upto(db) == seqs[-1]
    [hit] = await store.search(SearchQuery(terms=("later0",)))
    assert hit.seq == seqs[0]


async def test_a_session_filter_takes_the_latest_stored_hits_whatever_their_instants(
    store: SqliteStore,
) -> None:
    # Several hundred events whose instants run backwards, more hits than the limit, and
    # another session's hits in between: the limit keeps the latest stored, not the latest instants.
    batch = []
    for n in range(400):
        at = f"2026-06-07T{23 - n // 60:02d}:{59 - n % 60:02d}:00Z"
        batch.append(event(prompt("mine", at, text=f"heron {n}" if n % 3 == 0 else f"other {n}")))
        batch.append(event(prompt("theirs", at, text=f"heron {n}")))
    await store.write(batch, [])
    await caught_up(store)
    hits = await store.search(SearchQuery(terms=("heron",), session_id="mine", limit=20))
    assert [h.snippet for h in hits] == [f"[heron] {n}" for n in reversed(range(0, 400, 3))][:20]
    assert {h.session_id for h in hits} == {"mine"}
