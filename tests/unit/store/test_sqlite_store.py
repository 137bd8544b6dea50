"""SqliteStore in-process on real files: schema and migrations (from the Rust crate's file
and from schema 2), rows the Rust crate goes on inserting, the quarantine, reads, lists,
deletes, search, following commits and closing."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import msgspec
import pytest
import rust_crate
from events import event, events, expected_read, init, notification, prompt, response, stop

from sidecar.store import sqlite as sqlite_store
from sidecar.store.base import Event, ListQuery, Rejected, SearchQuery, SessionQuery, StoreFailure
from sidecar.store.sqlite import (
    CHUNK_EVENTS,
    INDEX_INLINE_EVENTS,
    MIGRATIONS,
    ROWS_PER_INSERT,
    SCHEMA_VERSION,
    SqliteStore,
)
from sidecar.timestamps import parse_instant, parse_ns

T1, T2, T3, T4, T5, T6 = (f"2026-06-07T14:03:2{n}Z" for n in range(1, 7))
TABLES = {"events", "quarantine", "sessions", "search_index", "search_progress"}


def methods(payloads: Sequence[bytes]) -> list[str]:
    return [msgspec.json.decode(payload)["method"] for payload in payloads]


def prompts(payloads: Sequence[bytes]) -> list[str]:
    return [msgspec.json.decode(payload)["params"]["prompt"] for payload in payloads]


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows read from outside the store, as another program would."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SqliteStore]:
    async with opened(db) as store:
        yield store


def write_like_the_crate(path: Path, *messages: dict[str, Any]) -> None:
    crate = rust_crate.open_like_the_crate(path)
    try:
        for message in messages:
            rust_crate.insert(crate, message)
    finally:
        crate.close()


# --- open and migrations -------------------------------------------------------------------


async def test_open_creates_the_current_schema_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "sessions.db"
    async with opened(path):
        pass
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    names = {name for (name,) in query(path, "SELECT name FROM sqlite_master")}
    assert names >= TABLES


async def test_a_path_that_cannot_be_a_database_is_a_store_failure(tmp_path: Path) -> None:
    with pytest.raises(StoreFailure, match="cannot open"):
        await SqliteStore(tmp_path).open()


async def test_a_reopened_store_keeps_its_rows_and_schema(db: Path) -> None:
    async with opened(db) as store:
        await store.write(events(init("s"), prompt("s", T2, text="kept")), [])
    async with opened(db) as store:
        assert prompts(await store.read_session("s", SessionQuery(methods=("user.prompt.submit",)))) == [
            "kept"
        ]
    assert query(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_a_rust_crate_file_is_migrated_keeping_every_row_readable_listed_and_searchable(
    db: Path,
) -> None:
    # Out of time order: reads must order by timestamp, not by id.
    write_like_the_crate(
        db,
        stop("r", T4, result="albatross found"),
        init("r", T1),
        prompt("r", T2, text="find the albatross"),
        init("other", T3),
    )
    assert query(db, "PRAGMA user_version") == [(1,)]
    async with opened(db) as store:
        assert query(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert query(db, "SELECT COUNT(*) FROM events WHERE timestamp_ns IS NULL OR method IS NULL") == [(0,)]
        payloads = await store.read_session("r", SessionQuery())
        assert methods(payloads) == ["session.init", "user.prompt.submit", "session.stop"]
        assert await store.count_sessions() == 2
        summaries = {s.session_id: s for s in await store.list_sessions(ListQuery())}
        assert list(summaries) == ["r", "other"]
        assert (summaries["r"].event_count, summaries["r"].status, summaries["r"].title) == (
            3,
            "stopped",
            "find the albatross",
        )
        hits = await store.search(SearchQuery(terms=("albatross",)))  # latest stored first
        assert [(h.method, h.snippet) for h in hits] == [
            ("user.prompt.submit", "find the [albatross]"),
            ("session.stop", "[albatross] found"),
        ]
    assert query(db, "SELECT COUNT(*) FROM events") == [(4,)]


async def test_a_schema_2_file_gets_summaries_and_a_search_index_for_every_row(db: Path) -> None:
    with closing(sqlite3.connect(db)) as old:
        for script in MIGRATIONS[:2]:
            old.executescript(script)
        old.execute("PRAGMA user_version = 2")
        for message in (init("v2", T1), prompt("v2", T2, text="an old question")):
            keyed = event(message)
            old.execute(
                "INSERT INTO events (session_id, payload, timestamp_ns, method, created_at) "
                "VALUES (?, ?, ?, ?, 0)",
                (keyed.session_id, keyed.payload.decode(), keyed.timestamp_ns, keyed.method),
            )
        old.commit()
    write_like_the_crate(db, stop("v2", T3, result="an old answer"))  # unkeyed, as at schema 2
    async with opened(db) as store:
        [summary] = await store.list_sessions(ListQuery())
        assert (summary.session_id, summary.event_count, summary.model) == ("v2", 3, "m")
        assert (summary.title, summary.status, summary.success) == ("an old question", "stopped", True)
        hits = await store.search(SearchQuery(terms=("old",)))
        assert [h.snippet for h in hits] == ["an [old] answer", "an [old] question"]
        assert methods(await store.read_session("v2", SessionQuery())) == [
            "session.init",
            "user.prompt.submit",
            "session.stop",
        ]
    assert query(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_the_rust_crate_reads_and_writes_a_migrated_file(store: SqliteStore, db: Path) -> None:
    sent = [init("1"), prompt("1", T2), response("1", T3), stop("1", T4)]
    await store.write(events(*sent), [])
    crate = rust_crate.open_like_the_crate(db)  # its open sequence leaves our schema alone
    try:
        assert rust_crate.get_session(crate, "1") == sent
        rust_crate.insert(crate, prompt("1", T5))
        assert len(rust_crate.get_session(crate, "1")) == 5
    finally:
        crate.close()
    assert query(db, "SELECT DISTINCT typeof(payload) FROM events") == [("text",)]


# --- rows the Rust crate inserts while the store is open -----------------------------------


async def test_rows_the_rust_crate_inserts_later_are_keyed_and_served_in_time_order(
    store: SqliteStore, db: Path
) -> None:
    await store.write(events(init("s", T1), response("s", T4)), [])
    write_like_the_crate(db, prompt("s", T3), stop("s", T5))
    assert methods(await store.read_session("s", SessionQuery())) == [
        "session.init",
        "user.prompt.submit",
        "assistant.response",
        "session.stop",
    ]
    assert methods(await store.read_session("s", SessionQuery(last=1))) == ["session.stop"]
    assert query(db, "SELECT COUNT(*) FROM events WHERE timestamp_ns IS NULL") == [(0,)]


async def test_rows_the_rust_crate_inserts_later_are_summarised_and_searchable(
    store: SqliteStore, db: Path
) -> None:
    await store.write(events(init("before", T1), prompt("before", T2, text="find the albatross")), [])
    write_like_the_crate(db, init("after", T6), stop("before", T5, result="albatross found"))
    summaries = {s.session_id: s for s in await store.list_sessions(ListQuery())}
    assert list(summaries) == ["after", "before"]
    before = summaries["before"]
    assert (before.event_count, before.status, before.title, before.last_timestamp) == (
        3,
        "stopped",
        "find the albatross",
        "2026-06-07T14:03:25.000000000Z",
    )
    hits = await store.search(SearchQuery(terms=("albatross",)))
    assert [(h.session_id, h.method) for h in hits] == [
        ("before", "session.stop"),
        ("before", "user.prompt.submit"),
    ]


async def test_a_row_another_program_filed_under_another_session_is_listed_where_it_is_read(
    store: SqliteStore, db: Path
) -> None:
    """Reads go by the row's session column: so do the summaries, whatever session the
    payload names."""
    with closing(sqlite3.connect(db)) as crate:
        crate.execute(rust_crate.INSERT, ("filed", json.dumps(prompt("named", T1, text="hello")), 0))
        crate.commit()
    assert methods(await store.read_session("filed", SessionQuery())) == ["user.prompt.submit"]
    [summary] = await store.list_sessions(ListQuery())
    assert (summary.session_id, summary.event_count, summary.title) == ("filed", 1, "hello")


async def test_a_row_that_is_not_a_notification_is_skipped_with_a_warning(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_like_the_crate(db, init("x"))
    with closing(sqlite3.connect(db)) as crate:
        crate.execute(rust_crate.INSERT, ("x", "{not json", 0))
        crate.commit()
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        async with opened(db) as store:
            assert methods(await store.read_session("x", SessionQuery())) == ["session.init"]
            [summary] = await store.list_sessions(ListQuery())
            assert summary.event_count == 1
            assert (await store.events_after(0, 10)).upto == 2
    assert any("events row 2" in record.getMessage() for record in caplog.records)


async def test_a_follower_reads_rows_the_rust_crate_inserted_before_any_read_keyed_them(
    store: SqliteStore, db: Path
) -> None:
    write_like_the_crate(db, init("c", T1), prompt("c", T2))
    page = await store.events_after(0, 10)
    assert [(seq, e.method, e.timestamp_ns) for seq, e in page.events] == [
        (1, "session.init", parse_ns(T1)),
        (2, "user.prompt.submit", parse_ns(T2)),
    ]
    assert query(db, "SELECT COUNT(*) FROM events WHERE timestamp_ns IS NULL") == [(2,)]  # read, not written


# --- write and the quarantine --------------------------------------------------------------


async def test_write_returns_consecutive_seqs_across_batches(store: SqliteStore) -> None:
    assert list(await store.write(events(init("a"), init("b"), prompt("a", T2)), [])) == [1, 2, 3]
    assert list(await store.write(events(response("a", T3)), [])) == [4]
    assert list(await store.write([], [Rejected(b"x", "bad", 0)])) == []
    assert list(await store.write(events(stop("a", T4)), [])) == [5]


async def test_a_batch_wider_than_one_insert_is_stored_whole_in_order_and_searchable(
    store: SqliteStore,
) -> None:
    count = 2 * ROWS_PER_INSERT + 3
    assert count > INDEX_INLINE_EVENTS  # left to the catch-up of the next search
    stamps = [f"2026-06-07T14:{n // 60:02d}:{n % 60:02d}Z" for n in range(count)]
    batch = events(*(prompt("big", stamp, text=f"line{n}") for n, stamp in enumerate(stamps)))
    assert list(await store.write(batch, [])) == list(range(1, count + 1))
    assert prompts(await store.read_session("big", SessionQuery())) == [f"line{n}" for n in range(count)]
    [summary] = await store.list_sessions(ListQuery())
    assert (summary.event_count, summary.title) == (count, "line0")
    [hit] = await store.search(SearchQuery(terms=(f"line{count - 1}",)))
    assert hit.seq == count


async def test_rejected_lines_are_quarantined_byte_for_byte_with_their_reason(
    store: SqliteStore, db: Path
) -> None:
    await store.write(
        events(init("ok")),
        [Rejected(b"{broken", "parse error", 1000), Rejected(b"\xff\xfe", "invalid UTF-8", 2000)],
    )
    with closing(sqlite3.connect(db)) as check:
        check.text_factory = bytes
        rows = check.execute("SELECT received_at, line, reason FROM quarantine ORDER BY id").fetchall()
    assert rows == [(1000, b"{broken", b"parse error"), (2000, b"\xff\xfe", b"invalid UTF-8")]
    assert methods(await store.read_session("ok", SessionQuery())) == ["session.init"]


# --- read_session --------------------------------------------------------------------------


async def test_a_session_reads_back_ordered_by_instant_ties_in_arrival_order(store: SqliteStore) -> None:
    await store.write(
        events(
            prompt("s", T3, text="c"),
            prompt("s", T1, text="a"),
            prompt("s", T3, text="d"),
            prompt("s", T2, text="b"),
        ),
        [],
    )
    assert prompts(await store.read_session("s", SessionQuery())) == ["a", "b", "c", "d"]
    assert await store.read_session("unknown", SessionQuery()) == []


async def test_read_filters_apply_after_then_methods_then_last(store: SqliteStore) -> None:
    await store.write(
        events(
            init("s", T1),
            prompt("s", T2),
            response("s", T3),
            prompt("s", T4),
            response("s", T5),
            stop("s", T6),
        ),
        [],
    )

    async def read(**filters: Any) -> list[str]:
        return methods(await store.read_session("s", SessionQuery(**filters)))

    assert await read(after_ns=parse_ns(T3)) == [
        "user.prompt.submit",
        "assistant.response",
        "session.stop",
    ]
    assert await read(methods=("session.*",)) == ["session.init", "session.stop"]
    assert await read(methods=("assistant.response", "session.init")) == [
        "session.init",
        "assistant.response",
        "assistant.response",
    ]
    assert await read(last=2) == ["assistant.response", "session.stop"]
    after_methods_last = await store.read_session(
        "s", SessionQuery(after_ns=parse_ns(T2), methods=("user.*", "assistant.response"), last=2)
    )
    assert [json.loads(p)["params"]["timestamp"] for p in after_methods_last] == [T4, T5]
    assert await read(methods=("tool.*",)) == []


async def test_payloads_are_served_as_the_bytes_written(store: SqliteStore) -> None:
    payload = (
        b'{"jsonrpc":"2.0","method":"session.init","params":{"session_id":"b","timestamp":"' + T1.encode()
    )
    payload += b'","model":"\\u00e9 \xc3\xa9","extra":{"z":1,"a":[]}}}'
    await store.write([Event("b", payload, parse_ns(T1), "session.init")], [])
    assert await store.read_session("b", SessionQuery()) == [payload]


# --- reads that grow with what they return, not with the session -------------------------

# One session: ties, nanoseconds apart, and instants outside int64 nanoseconds (their keys
# are clamped, so the exact instant decides among them).
NEAR = [
    init("q", "2026-06-07T14:03:21Z"),
    prompt("q", "2026-06-07T14:03:22Z", text="p1"),
    response("q", "2026-06-07T14:03:23Z"),
    prompt("q", "2026-06-07T14:03:23Z", text="tie"),
    prompt("q", "2026-06-07T14:03:23.000000001Z", text="1ns later"),
    response("q", "2026-06-07T14:03:24Z"),
    stop("q", "2026-06-07T14:03:25Z"),
]
FAR = [prompt("q", "1500-01-01T00:00:00Z", text="1500"), prompt("q", "2400-01-01T00:00:00Z", text="2400")]
FAR += [prompt("q", "1600-01-01T00:00:00Z", text="1600"), response("q", "2300-01-01T00:00:00Z")]
ARRIVALS = {
    "in-order": NEAR,
    "reversed": NEAR[::-1],
    "shuffled": [NEAR[i] for i in (3, 0, 6, 2, 5, 1, 4)],
    "far-years": [*NEAR[:3], *FAR, *NEAR[3:]],
}
READ_AFTER = [
    None,
    "2026-06-07T14:03:22Z",
    "2026-06-07T14:03:23Z",
    "1550-01-01T00:00:00Z",
    "2350-01-01T00:00:00Z",
]
READ_METHODS = [(), ("user.prompt.submit",), ("session.*", "assistant.response")]
READ_LAST = [None, 1, 2, 100]


@pytest.mark.parametrize("arrival", sorted(ARRIVALS))
@pytest.mark.parametrize("crate_rows", [False, True], ids=["ours", "half-by-the-crate-later"])
async def test_every_combination_of_after_methods_and_last_reads_as_the_whole_session_sorted(
    store: SqliteStore, db: Path, arrival: str, crate_rows: bool
) -> None:
    sent = ARRIVALS[arrival]
    ours = sent[: len(sent) // 2] if crate_rows else sent
    await store.write(events(*ours), [])
    write_like_the_crate(db, *sent[len(ours) :])  # keyed by the first read
    for after in READ_AFTER:
        for methods_ in READ_METHODS:
            for last in READ_LAST:
                after_ns = None if after is None else parse_instant(after)
                read = SessionQuery(after_ns, methods_, last)
                payloads = await store.read_session("q", read)
                assert [json.loads(p) for p in payloads] == expected_read(sent, after, methods_, last), (
                    after,
                    methods_,
                    last,
                )
                assert b",".join(await store.read_session_chunks("q", read)) == b",".join(payloads)


async def test_a_long_session_is_read_in_pieces_that_joined_are_its_events_in_order(
    store: SqliteStore,
) -> None:
    count = 2 * CHUNK_EVENTS + 1
    sent = [prompt("long", f"2026-06-07T14:{n // 60:02d}:{n % 60:02d}Z", text=f"p{n}") for n in range(count)]
    await store.write(events(*sent), [])
    chunks = await store.read_session_chunks("long", SessionQuery())
    assert len(chunks) == 3  # CHUNK_EVENTS to a piece: never one buffer of the whole session
    assert b",".join(chunks) == b",".join(await store.read_session("long", SessionQuery()))
    assert [e["params"]["prompt"] for e in json.loads(b"[" + b",".join(chunks) + b"]")] == [
        f"p{n}" for n in range(count)
    ]


async def steps_of(store: SqliteStore, session_id: str, query: SessionQuery) -> int:
    """SQLite VM instructions (in tens) one read takes: a seek is one instruction, however
    deep the B-tree, so a read that visits only what it returns costs the same on any size."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    await store.db.set_progress_handler(count, 10)
    try:
        await store.read_session(session_id, query)
    finally:
        await store.db.set_progress_handler(None, 10)  # type: ignore[arg-type]  # None removes it
    return steps


async def test_last_after_and_methods_with_last_cost_the_same_on_a_session_of_any_length(
    store: SqliteStore,
) -> None:
    def session(session_id: str, turns: int) -> list[Event]:
        stamps = (
            f"2026-06-07T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z" for n in range(2 * turns + 2)
        )
        turn = [init(session_id, next(stamps))]
        for n in range(turns):
            turn += [prompt(session_id, next(stamps), text=f"q{n}"), response(session_id, next(stamps))]
        return events(*turn, stop(session_id, next(stamps)))

    await store.write(session("small", 5), [])
    long = session("large", 2000)
    for start in range(0, len(long), INDEX_INLINE_EVENTS):  # indexed for search as they come
        await store.write(long[start : start + INDEX_INLINE_EVENTS], [])
    for small_query, large_query in [
        (SessionQuery(last=1), SessionQuery(last=1)),
        (SessionQuery(last=3), SessionQuery(last=3)),
        (
            SessionQuery(after_ns=parse_ns("2026-06-07T00:00:08Z")),
            SessionQuery(after_ns=parse_ns("2026-06-07T01:06:38Z")),
        ),
        (SessionQuery(methods=("session.*",), last=1), SessionQuery(methods=("session.*",), last=1)),
        (SessionQuery(methods=("user.*",), last=2), SessionQuery(methods=("user.*",), last=2)),
    ]:
        read = await store.read_session("small", small_query), await store.read_session("large", large_query)
        assert len(read[0]) == len(read[1]) > 0
        # A read of every row of "large" takes thousands; a little slack for other work.
        assert await steps_of(store, "large", large_query) <= await steps_of(store, "small", small_query) + 20


# --- list, count, delete -------------------------------------------------------------------


async def test_sessions_list_newest_activity_first_with_limit_before_and_text(store: SqliteStore) -> None:
    await store.write(
        events(init("old", T1), init("mid", T3), prompt("new", T5, text="Refactor the parser")), []
    )
    await store.write(events(prompt("old", T2, text="first")), [])

    async def ids(**filters: Any) -> list[str]:
        return [s.session_id for s in await store.list_sessions(ListQuery(**filters))]

    assert await ids() == ["new", "mid", "old"]
    assert await ids(limit=2) == ["new", "mid"]
    assert await ids(before_ns=parse_ns(T5)) == ["mid", "old"]
    assert await ids(text="PARSER") == ["new"]
    assert await ids(text="m", limit=1) == ["mid"]  # "m": the id "mid" and model "m" of old
    assert await store.count_sessions() == 3


async def test_a_text_filter_reads_page_by_page_through_equal_instants_until_the_limit(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "LIST_PAGE", 3)  # pages end between sessions of one instant
    await store.write(
        events(*(init(f"s{n:02d}", T2) for n in range(20)), init("late", T4), init("early", T1)), []
    )

    async def ids(**filters: Any) -> list[str]:
        return [s.session_id for s in await store.list_sessions(ListQuery(**filters))]

    same_instant = [f"s{n:02d}" for n in range(19, -1, -1)]  # ties: by id, descending
    assert await ids() == ["late", *same_instant, "early"]
    assert await ids(limit=7) == ["late", *same_instant[:6]]
    assert await ids(text="1", limit=4) == ["s19", "s18", "s17", "s16"]
    assert await ids(text="s0") == [f"s0{n}" for n in range(9, -1, -1)]
    assert await ids(text="s0", before_ns=parse_ns(T4), limit=2) == ["s09", "s08"]
    assert await ids(before_ns=parse_ns(T2)) == ["early"]
    assert await ids(text="nobody", limit=5) == []


async def test_the_session_count_is_the_number_of_sessions_listed(store: SqliteStore, db: Path) -> None:
    await store.write(events(init("a", T1), prompt("a", T2), init("b", T3)), [])
    write_like_the_crate(db, init("by-the-crate", T4), prompt("a", T5))
    with closing(sqlite3.connect(db)) as crate:  # a session of nothing readable: never served
        crate.execute(rust_crate.INSERT, ("unreadable", "{not json", 0))
        crate.commit()
    assert await store.count_sessions() == 3
    assert sorted(s.session_id for s in await store.list_sessions(ListQuery())) == ["a", "b", "by-the-crate"]
    await store.delete_session("b")
    assert await store.count_sessions() == 2


async def test_a_schema_3_file_gets_the_reading_index_under_the_rust_crates_name(db: Path) -> None:
    with closing(sqlite3.connect(db)) as old:
        for script in MIGRATIONS[:3]:
            old.executescript(script)
        old.execute("PRAGMA user_version = 3")
    write_like_the_crate(db, prompt("v3", T2), init("v3", T1))  # out of order, unkeyed
    async with opened(db) as store:
        assert methods(await store.read_session("v3", SessionQuery(last=1))) == ["user.prompt.submit"]
        assert await store.count_sessions() == 1
    assert query(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    columns = [name for _, _, name in query(db, "PRAGMA index_info(idx_events_session_id)")]
    assert columns == ["session_id", "timestamp_ns"]
    write_like_the_crate(db, stop("v3", T3))  # the crate's open leaves the index alone
    assert [name for _, _, name in query(db, "PRAGMA index_info(idx_events_session_id)")] == columns
    crate = rust_crate.open_like_the_crate(db)
    try:
        assert [e["method"] for e in rust_crate.get_session(crate, "v3")] == [
            "session.init",
            "user.prompt.submit",
            "session.stop",
        ]
    finally:
        crate.close()


async def test_a_summary_carries_model_status_usage_and_instants(store: SqliteStore) -> None:
    fork = notification("session.fork", session_id="s", parent_session_id="p", timestamp=T2)
    await store.write(events(init("s", T1), fork, prompt("s", T3, text="  two\n words "), stop("s", T4)), [])
    [summary] = await store.list_sessions(ListQuery())
    assert (summary.model, summary.provider, summary.parent_session_id) == ("m", "p", "p")
    assert (summary.status, summary.success, summary.title) == ("stopped", True, "two words")
    assert summary.usage["latency"] == 10
    assert (summary.first_timestamp, summary.event_count) == ("2026-06-07T14:03:21.000000000Z", 4)


async def test_delete_removes_a_sessions_events_summary_and_search_entries_only(store: SqliteStore) -> None:
    await store.write(
        events(init("gone"), prompt("gone", T2, text="secret word"), prompt("kept", T3, text="secret kept")),
        [],
    )
    assert await store.delete_session("gone") == 2
    assert await store.read_session("gone", SessionQuery()) == []
    assert [s.session_id for s in await store.list_sessions(ListQuery())] == ["kept"]
    assert [h.session_id for h in await store.search(SearchQuery(terms=("secret",)))] == ["kept"]
    assert await store.delete_session("gone") == 0
    await store.write(events(prompt("gone", T4, text="again")), [])  # recreated: summarised afresh
    [again] = [s for s in await store.list_sessions(ListQuery()) if s.session_id == "gone"]
    assert (again.event_count, again.title) == (1, "again")


# --- search --------------------------------------------------------------------------------


async def test_search_finds_every_term_latest_stored_first_with_seq_snippet_and_limit(
    store: SqliteStore,
) -> None:
    await store.write(
        events(
            prompt("a", T1, text="the blue whale"),
            response("a", T3, text="Blue whales are large"),
            prompt("b", T2, text="a BLUE whale song"),
            prompt("b", T4, text="blue sky"),
        ),
        [],
    )
    hits = await store.search(SearchQuery(terms=("blue", "whale")))
    assert [(h.session_id, h.seq, h.timestamp, h.snippet) for h in hits] == [
        ("b", 3, T2, "a [BLUE] [whale] song"),
        ("a", 1, T1, "the [blue] [whale]"),
    ]
    assert [h.seq for h in await store.search(SearchQuery(terms=("blue",), limit=2))] == [4, 3]
    assert [h.seq for h in await store.search(SearchQuery(terms=("blue",), session_id="a"))] == [2, 1]
    assert await store.search(SearchQuery(terms=("nowhere",))) == []


# --- following commits ---------------------------------------------------------------------


async def test_last_seq_and_events_after_follow_commits_and_leave_out_deleted_events(
    store: SqliteStore,
) -> None:
    assert await store.last_seq() == 0
    await store.write(events(init("a"), init("b"), prompt("a", T2), prompt("b", T3)), [])
    assert await store.last_seq() == 4
    page = await store.events_after(0, 3)
    assert [(seq, e.session_id, e.method) for seq, e in page.events] == [
        (1, "a", "session.init"),
        (2, "b", "session.init"),
        (3, "a", "user.prompt.submit"),
    ]
    assert (page.upto, page.more) == (3, True)
    await store.delete_session("a")
    rest = await store.events_after(0, 10)
    assert [seq for seq, _ in rest.events] == [2, 4]
    assert (rest.upto, rest.more) == (4, False)
    assert (await store.events_after(4, 10)).events == []


async def test_the_change_token_changes_with_every_commit_by_anyone(store: SqliteStore, db: Path) -> None:
    token = await store.change_token()
    assert await store.change_token() == token
    await store.write(events(init("a")), [])
    after_ours = await store.change_token()
    assert after_ours != token
    write_like_the_crate(db, init("crate"))
    assert await store.change_token() != after_ours
    assert await store.last_seq() == 2


# --- close ---------------------------------------------------------------------------------


async def test_a_closed_store_refuses_work_and_closes_twice_quietly(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    await store.write(events(init("a")), [])
    await store.events_after(0, 1)  # opens the followers' connection too
    await store.change_token()
    await store.close()
    with pytest.raises(StoreFailure, match="not open"):
        await store.read_session("a", SessionQuery())
    with pytest.raises(StoreFailure, match="not open"):
        await store.last_seq()
    await store.close()
