"""The postgres backend's own promises, beyond the conformance suite: answers equal to the
memory backend's, one schema migrated once, many sidecars on one server, and a server
that goes away and comes back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from daemon import Daemon
from events import event, init, notification, prompt, response, stop
from pg_server import PostgresServer, fetch

from sidecar import cli
from sidecar.store.base import Event, ListQuery, Rejected, SearchQuery, SessionQuery, StoreFailure
from sidecar.store.memory import MemoryStore
from sidecar.store.postgres import SCHEMA_VERSION, PostgresStore, redact
from sidecar.store.search import query_terms
from sidecar.timestamps import parse_instant


def ts(second: float) -> str:
    whole, fraction = divmod(round(second * 1_000_000_000), 1_000_000_000)
    return f"2026-06-07T14:{whole // 60:02d}:{whole % 60:02d}.{fraction:09d}Z"


def tool_result(session_id: str, timestamp: str, text: str) -> dict[str, Any]:
    return notification(
        "tool.result",
        session_id=session_id,
        turn_id="t",
        result={"Ok": text},
        tool_call_id="c",
        timestamp=timestamp,
    )


async def select(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn)
    await opened.open()
    yield opened
    await opened.close()


# --- the same answers as the memory backend ------------------------------------------------

NUL_IDS = ["a\x00b", "\x01a", "\x01\x00", "a\x01\x02"]  # NUL, and ids that look escaped


def workload() -> list[list[Event]]:
    """Batches touching many sessions: summaries, ties, far years, odd ids, searchable text."""
    batches: list[list[Event]] = []
    for n in range(12):
        sid = f"s{n:02d}"
        batch = [event(init(sid, ts(n))), event(prompt(sid, ts(n + 0.5), text=f"Fix the parser {n} please"))]
        if n % 3 == 0:
            batch.append(event(response(sid, ts(n + 0.7), text=f"The parser {n} is fixed, kestrel")))
            batch.append(event(stop(sid, ts(n + 0.9), result=f"done {n} kestrel")))
        if n % 4 == 1:
            batch.append(event(tool_result(sid, ts(40), text="grep found kestrel.toml")))  # tied last_ns
        batches.append(batch)
    batches.append(
        [event(notification("session.fork", session_id="s99", parent_session_id="s01", timestamp=ts(50)))]
    )
    batches.append(
        [event(prompt("far", "2400-01-01T00:00:00Z", text="kestrel")), event(prompt("far", ts(1)))]
    )
    batches.append(
        [event(prompt(sid, ts(60 + i), text=f"odd id {i} kestrel")) for i, sid in enumerate(NUL_IDS)]
    )
    batches.append([event(init("s00", ts(70))), event(prompt("s03", ts(0.1), text="earlier Parser"))])
    batches.append(flood(0))
    return batches


def flood(first: int) -> list[Event]:
    """A batch too big to index as it is written: its search entries wait for a search."""
    return [
        event(prompt(f"s{i % 12:02d}", ts(80 + (first + i) / 1000), text=f"flood {first + i} kestrel"))
        for i in range(300)
    ]


def queries() -> Iterator[tuple[str, Any]]:
    sessions = [f"s{n:02d}" for n in range(12)] + ["s99", "far", "nobody", *NUL_IDS]
    for sid in sessions:
        yield "read", (sid, SessionQuery())
        yield "read", (sid, SessionQuery(after_ns=parse_instant(ts(0.5)), methods=("session.*",), last=1))
    for text in (None, "PARSER 3", "s0", "\x00", "kestrel", "nothing"):
        for limit in (None, 1, 3):
            for before in (None, parse_instant(ts(40)), parse_instant(ts(5)), 2**70, -(2**70)):
                yield "list", ListQuery(limit=limit, before_ns=before, text=text)
    for words in ("kestrel", "parser fixed", "Parser", "found kestrel toml", "absent", "odd id"):
        for session in (None, "s03", "a\x00b"):
            for limit in (1, 20):
                yield "search", SearchQuery(query_terms(words), session, limit)
    yield "count", None


async def answers(store: Any) -> list[Any]:
    results: list[Any] = []
    for kind, query in queries():
        if kind == "read":
            results.append(await store.read_session(*query))
        elif kind == "list":
            results.append(await store.list_sessions(query))
        elif kind == "search":
            results.append(
                [(h.session_id, h.method, h.timestamp, h.snippet) for h in await store.search(query)]
            )
        else:
            results.append(await store.count_sessions())
    return results


async def test_reads_lists_searches_and_deletes_answer_as_the_memory_backend_does(
    store: PostgresStore,
) -> None:
    memory = MemoryStore()
    for batch in workload():
        assert len(await store.write(batch, [])) == len(await memory.write(batch, [])) == len(batch)
    assert await answers(store) == await answers(memory)
    more = flood(300)
    await store.write(more, [])
    await memory.write(more, [])
    for sid in ("s03", "a\x00b", "nobody"):  # s03 with search entries still pending
        assert await store.delete_session(sid) == await memory.delete_session(sid)
    assert await answers(store) == await answers(memory)


async def test_a_session_id_holding_nul_is_stored_apart_from_its_look_alikes(store: PostgresStore) -> None:
    await store.write([event(prompt(sid, ts(1), text=repr(sid))) for sid in NUL_IDS], [])
    for sid in NUL_IDS:
        [payload] = await store.read_session(sid, SessionQuery())
        assert json.loads(payload)["params"]["prompt"] == repr(sid)
    assert {s.session_id for s in await store.list_sessions(ListQuery())} == set(NUL_IDS)


async def test_words_a_tsvector_cannot_hold_are_left_out_of_the_index_and_the_event_stored(
    store: PostgresStore,
) -> None:
    long_word = "y" * 3000
    many = " ".join(f"w{i:07d}" for i in range(150_000))  # about 1.2 MB of distinct words
    await store.write([event(prompt("big", ts(1), text=f"heron {long_word} {many}"))], [])
    assert len(await store.read_session("big", SessionQuery())) == 1
    assert [hit.session_id for hit in await store.search(SearchQuery(("heron", "w0000001")))] == ["big"]
    assert await store.search(SearchQuery((long_word,))) == []
    assert await store.search(SearchQuery(("w0149999",))) == []  # past the 1 MB budget


async def test_a_flood_is_indexed_by_the_next_search_of_any_sidecar_once(
    store: PostgresStore, postgres_dsn: str
) -> None:
    await store.write(flood(0), [])
    others = [PostgresStore(postgres_dsn) for _ in range(3)]
    kestrel = SearchQuery(("kestrel",), limit=1000)
    found = await asyncio.gather(*(other.search(kestrel) for other in others))
    assert [len(hits) for hits in found] == [300, 300, 300]
    assert await store.search(SearchQuery(("flood", "299"))) != []
    counts = "SELECT (SELECT count(*) FROM search_pending), (SELECT count(*) FROM search)"
    assert [tuple(row) for row in await select(postgres_dsn, counts)] == [(0, 300)]
    await asyncio.gather(*(other.close() for other in others))


# --- schema and storage --------------------------------------------------------------------


async def test_a_fresh_database_is_migrated_once_by_many_sidecars_opening_at_once(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn) for _ in range(5)]
    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.close() for s in stores))
    assert [r[0] for r in await select(postgres_dsn, "SELECT version FROM schema_version")] == [
        SCHEMA_VERSION
    ]


async def test_events_hold_the_notification_text_and_the_quarantine_the_raw_line(
    store: PostgresStore, postgres_dsn: str
) -> None:
    stored = event(prompt("p", ts(1), text="line\u2028sep 😀 \\u0000"))
    await store.write([stored], [Rejected(b"\xff{bad\x00", "not JSON: \x00", 1_700_000_000_000)])
    [(payload,)] = await select(postgres_dsn, "SELECT payload FROM events")
    assert payload == stored.payload.decode()
    [row] = await select(postgres_dsn, "SELECT line, reason, received_at FROM quarantine")
    assert row[0] == b"\xff{bad\x00" and row[1] == "not JSON: \\u0000"
    assert row[2].timestamp() == 1_700_000_000


async def test_a_database_not_in_utf8_is_refused_at_open(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.dsn("latin")
    conn = await asyncpg.connect(postgres_server.dsn())
    try:
        await conn.execute(
            "CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
        with pytest.raises(StoreFailure, match="encoding is LATIN1; it must be UTF8"):
            await PostgresStore(dsn).open()
    finally:
        await conn.execute("DROP DATABASE latin WITH (FORCE)")
        await conn.close()


def test_the_location_shown_hides_the_password() -> None:
    assert redact("postgresql://u:s3cret@db:5432/x?sslmode=require&password=p") == (
        "postgresql://u:***@db:5432/x?sslmode=require&password=***"
    )
    assert redact("postgresql://u@/x?host=/tmp") == "postgresql://u@/x?host=/tmp"


# --- concurrent writers and lost connections ----------------------------------------------


async def stored_rows(dsn: str) -> list[tuple[int, bytes]]:
    return [(r[0], r[1].encode()) for r in await select(dsn, "SELECT seq, payload FROM events ORDER BY seq")]


async def test_concurrent_writers_draw_unique_ascending_seqs_and_lose_no_event(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))

    async def write_batches(n: int, s: PostgresStore) -> list[tuple[int, bytes]]:
        written = []
        for b in range(15):
            batch = [
                event(prompt(sid, ts(i), text=f"{n}.{b}.{i}"))
                for i in range(40)
                for sid in (f"own{n}", "shared")
            ]
            seqs = list(await s.write(batch, []))
            assert seqs == sorted(seqs)
            written += [(seq, e.payload) for seq, e in zip(seqs, batch, strict=True)]
        return written

    parts = await asyncio.gather(*(write_batches(n, s) for n, s in enumerate(stores)))
    assert sorted(pair for part in parts for pair in part) == await stored_rows(postgres_dsn)
    summaries = {s.session_id: s.event_count for s in await stores[0].list_sessions(ListQuery())}
    assert summaries == {"shared": 4 * 15 * 40, **{f"own{n}": 15 * 40 for n in range(4)}}
    await asyncio.gather(*(s.close() for s in stores))


@pytest.mark.parametrize("landed", [True, False], ids=["committed", "rolled-back"])
async def test_a_batch_whose_commit_went_unanswered_is_stored_once_when_retried(
    store: PostgresStore, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    commit = asyncpg.transaction.Transaction.commit

    async def commit_and_lose_the_answer(self: asyncpg.transaction.Transaction) -> None:
        monkeypatch.undo()  # once
        if landed:
            await commit(self)
        self._connection.terminate()  # type: ignore[attr-defined]  # asyncpg keeps it private
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", commit_and_lose_the_answer)
    first = [event(prompt("u", ts(1))), event(prompt("u", ts(2)))]
    with pytest.raises(StoreFailure, match="cannot reach PostgreSQL"):
        await store.write(first, [])
    retried = [*first, event(prompt("u", ts(3)))]  # as the ingest layer retries: the batch, then more
    seqs = await store.write(retried, [])
    assert [(seq, e.payload) for seq, e in zip(seqs, retried, strict=True)] == await stored_rows(postgres_dsn)
    [summary] = await store.list_sessions(ListQuery())
    assert summary.event_count == 3


def daemon_on(dsn: str, *extra: str) -> Daemon:
    return Daemon(None, "--backend", "postgres", "--dsn", dsn, *extra)


def test_several_daemons_writing_to_one_server_at_once_lose_and_duplicate_nothing(postgres_dsn: str) -> None:
    daemons = [daemon_on(postgres_dsn) for _ in range(4)]
    try:

        def produce(n: int) -> None:
            for i in range(0, 300, 50):  # chunks, so the daemons' batches interleave
                daemons[n].send(
                    *(
                        prompt(sid, ts(j + n / 10), text=f"{sid}/{n}/{j}")
                        for j in range(i, i + 50)
                        for sid in (f"own{n}", "shared")
                    )
                )

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for d in daemons:
            assert d.result("storage.flush")["seq"] > 0
        reader = daemons[0]
        for n in range(4):
            own = [e["params"]["prompt"] for e in reader.result("storage.get_session", [f"own{n}"])]
            assert own == [f"own{n}/{n}/{j}" for j in range(300)]
        shared = reader.result("storage.get_session", ["shared"])
        stamps = [e["params"]["timestamp"] for e in shared]
        assert len(shared) == len({e["params"]["prompt"] for e in shared}) == 4 * 300
        assert stamps == sorted(stamps)
        counts = {s["session_id"]: s["event_count"] for s in reader.result("storage.list_sessions")}
        assert counts == {"shared": 1200, **{f"own{n}": 300 for n in range(4)}}
        for d in daemons:
            assert d.close() == 0
    finally:
        for d in daemons:
            d.__exit__()
    [(total, distinct)] = fetch(postgres_dsn, "SELECT count(*), count(DISTINCT payload) FROM events")
    assert total == distinct == 2400


def test_a_server_restarted_mid_ingest_answers_32001_meanwhile_and_then_stores_every_event_once(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:

    def batch(first: int) -> list[dict[str, Any]]:
        return [prompt("r", ts(i / 10), text=str(i)) for i in range(first, first + 500)]

    with daemon_on(postgres_dsn, "--lock-timeout", "1") as daemon:
        assert daemon.result("storage.flush") == {"seq": 0}  # connected and migrated
        daemon.send(*batch(0), *batch(500))  # still going in as the server stops
        postgres_server.stop()
        try:
            daemon.send(*batch(1000))
            assert daemon.request("storage.flush")["error"]["code"] == -32001
            acked = daemon.request("user.prompt.submit", prompt("r", ts(150), text="1500")["params"])
            assert acked["error"]["code"] == -32001 and acked["error"]["data"]["retained"] is True
            assert daemon.request("storage.get_session", ["r"])["error"]["code"] == -32001
        finally:
            postgres_server.start()
        daemon.send(*batch(1501)[:499])
        assert daemon.result("storage.flush")["seq"] >= 2000
        texts = [e["params"]["prompt"] for e in daemon.result("storage.get_session", ["r"])]
        assert texts == [str(i) for i in range(2000)]
        assert daemon.close() == 0
        assert "store unavailable" in daemon.stderr and "recovered" in daemon.stderr
    [(total, distinct)] = fetch(postgres_dsn, "SELECT count(*), count(DISTINCT payload) FROM events")
    assert total == distinct == 2000


def test_a_server_that_cannot_be_reached_at_start_exits_3_naming_it(tmp_path: Any) -> None:
    with daemon_on(f"postgresql://nobody:pw@/none?host={tmp_path}") as daemon:
        assert daemon.close() == 3
        assert "cannot open postgresql://nobody:***@/none" in daemon.stderr


# --- command line --------------------------------------------------------------------------


def parse(*argv: str) -> Any:
    parser = cli.build_parser()
    return cli.settings_from(parser.parse_args(argv), parser)


def test_dsn_is_taken_from_the_option_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse("--backend", "postgres", "--dsn", "postgresql:///a").dsn == "postgresql:///a"
    monkeypatch.setenv("MICROAGENTS_DSN", "postgresql:///b")
    assert parse("--backend", "postgres").dsn == "postgresql:///b"


def test_dsn_with_another_backend_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parse("--dsn", "postgresql:///a")
    assert exit.value.code == 2
    assert "--dsn is an option of the postgres backend, not of sqlite" in capsys.readouterr().err


def test_the_postgres_backend_without_asyncpg_is_refused_naming_the_extra_to_install() -> None:
    hide_asyncpg = "import sys; sys.modules['asyncpg'] = None; from sidecar.cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", hide_asyncpg, "--backend", "postgres", "--dsn", "postgresql:///x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "pip install 'microagents-sidecar[postgres]'" in done.stderr
