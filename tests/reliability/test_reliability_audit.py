"""The holes the adversarial audit found (issue 13), each closed and kept closed: client
mistakes are -32602 on every backend, a batch or a reader that does not read cannot make the
daemon build unbounded answers, a MemoryError never leaves a daemon that ignores its end,
and nothing from a transcript drives the terminal. In-process where the daemon's own
pieces prove it; the real entry point for what people see."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon
from events import error_of, events, init, line, prompt, result_of, rpc
from pg_proxy import QuietableProxy
from pg_server import PostgresServer, database_of, fetch
from wire import Wire, running

from sidecar.config import Settings
from sidecar.server import Server
from sidecar.stdio import StdoutWriter
from sidecar.store.base import Event, EventRefused, Page, Rejected, SessionQuery, Store, StoreFailure
from sidecar.store.memory import MemoryStore
from sidecar.store.postgres import PostgresStore, _Batch
from sidecar.store.sqlite import FOLLOW_STEP, SqliteStore
from sidecar.subscriptions import QUEUE_BYTES, TOTAL_QUEUE_BYTES, Hub

pytestmark = pytest.mark.reliability

T = "2026-06-07T14:03:{:02d}Z"
WAIT_S = 30.0


@pytest.fixture(params=["memory", "sqlite"])
async def any_wire(request: pytest.FixtureRequest, db: Path) -> AsyncIterator[Wire]:
    store: Store = MemoryStore() if request.param == "memory" else SqliteStore(db)
    async with running(store) as running_wire:
        yield running_wire


# --- 8. client mistakes are -32602 naming the field, on every backend ----------------------------


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("storage.list_sessions", {"limit": 2**63}, "limit"),
        ("storage.get_session", {"session_id": "s", "methods": ["user.*"] * 257}, "methods"),
        ("storage.subscribe", {"from": 2**63}, "from"),
        ("storage.get_session", {"session_id": "s", "methods": ["user.*\n"]}, "methods[0]"),
        ("storage.search", {"query": " ".join(f"w{n}" for n in range(65))}, "query"),
        ("storage.search", {"query": "w" * 4097}, "query"),
    ],
    ids=["limit-2^63", "257-methods", "from-2^63", "pattern-final-newline", "65-words", "4097-chars"],
)
async def test_out_of_range_client_input_is_invalid_params_naming_the_field(
    any_wire: Wire, method: str, params: dict[str, Any], field: str
) -> None:
    assert await any_wire.invalid_field(method, params) == field


async def test_the_largest_accepted_values_are_served(any_wire: Wire) -> None:
    await any_wire.send(init("s", T.format(0)), prompt("s", T.format(1)))
    assert len(await any_wire.result("storage.list_sessions", {"limit": 2**63 - 1})) == 1
    methods = ["user.*"] * 256
    assert len(await any_wire.result("storage.get_session", {"session_id": "s", "methods": methods})) == 1
    query = " ".join(["hi"] * 64)
    assert len(await any_wire.result("storage.search", {"query": query})) == 1


# --- 10. minor: a batch after \r, what follows storage.shutdown in a batch ------------------------


async def test_a_batch_after_a_carriage_return_is_a_batch_as_after_a_space_or_tab(any_wire: Wire) -> None:
    for lead in (b"\r", b" ", b"\t", b"\r\t "):
        [answers] = await any_wire.feed(lead + json.dumps([rpc("storage.info", request_id=1)]).encode())
        assert isinstance(answers, list) and result_of(answers[0], 1)["name"] == "microagents-sidecar"


async def test_batch_elements_after_storage_shutdown_are_not_run(db: Path) -> None:
    stopped: list[bool] = []
    async with running(SqliteStore(db), request_shutdown=lambda: stopped.append(True)) as wire:
        batch = [
            init("before", T.format(0)),
            rpc("storage.shutdown", request_id=1),
            init("after", T.format(1)),
        ]
        batch.append(rpc("storage.stats", request_id=2))
        answers = await wire.answer(batch)
        assert [answer["id"] for answer in answers] == [1] and stopped == [True]
        assert await wire.store.read_session("before", SessionQuery()) != []
        assert await wire.store.read_session("after", SessionQuery()) == []


# --- 4. answers count against the output bound before they are built -----------------------------


async def test_a_batch_whose_answers_pass_the_output_bound_refuses_the_rest_but_stores_its_events(
    db: Path,
) -> None:
    settings = Settings(backend="sqlite", max_output_bytes=4096)
    async with running(SqliteStore(db), settings=settings) as wire:
        await wire.send(
            init("big", T.format(0)), *(prompt("big", T.format(1), text="x" * 1000) for _ in range(3))
        )
        reads = [rpc("storage.get_session", {"session_id": "big"}, request_id=n) for n in range(5)]
        answers = await wire.answer([*reads, init("late", T.format(2)), rpc("storage.flush", request_id="f")])
        served = [a for a in answers if "result" in a]
        refused = [a for a in answers if "error" in a]
        assert [a["id"] for a in served] == [0, 1] and len(served[0]["result"]) == 4  # the second passed 4 KB
        assert [a["id"] for a in refused] == [2, 3, 4, "f"]  # every request after it, not run
        assert all(error_of(a, -32003, a["id"])["message"] == "Message too large" for a in refused)
        assert await wire.store.read_session("late", SessionQuery()) != []


class CountingStore(SqliteStore):
    """Counts whole-session reads; the first `fail` of them raise MemoryError."""

    def __init__(self, path: Path, fail: int = 0) -> None:
        super().__init__(path)
        self.reads = 0
        self.fail = fail

    async def read_session_chunks(self, session_id: str, query: SessionQuery) -> list[bytes]:
        self.reads += 1
        if self.reads <= self.fail:
            raise MemoryError
        return await super().read_session_chunks(session_id, query)


class Pipes:
    """The in-process daemon's stdin and stdout, as a runtime holds them."""

    def __init__(self) -> None:
        self.stdin_read, self.stdin_write = os.pipe()
        self.stdout_read, self.stdout_write = os.pipe()
        self.received = bytearray()
        self._reader = threading.Thread(target=self._read_all, daemon=True)
        self.start_reading = threading.Event()

    def send(self, *messages: Any) -> None:
        for message in messages:
            os.write(self.stdin_write, line(message) + b"\n")

    def end_input(self) -> None:
        os.close(self.stdin_write)

    def _read_all(self) -> None:
        self.start_reading.wait(WAIT_S)
        while chunk := os.read(self.stdout_read, 1 << 20):
            self.received += chunk

    def answers(self) -> list[Any]:
        return [json.loads(raw) for raw in bytes(self.received).splitlines()]

    async def serve(self, settings: Settings, store: Store) -> int:
        """Run the daemon on these pipes until its end; its exit code."""
        self._reader.start()
        await store.open()
        server = Server(settings, store, self.stdin_read, self.stdout_write)
        self.server = server
        try:
            async with asyncio.timeout(WAIT_S):
                return await server.run()
        finally:
            os.close(self.stdout_write)
            self.start_reading.set()
            await asyncio.to_thread(self._reader.join, WAIT_S)
            os.close(self.stdout_read)
            os.close(self.stdin_read)


async def test_requests_read_ahead_of_a_reader_that_does_not_read_are_not_all_answered_at_once(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hundred reads of a 30 KB session while stdout is not read: each waits for room
    before it is built, so what waits to be written stays near the bound."""
    bound = 64 * 1024
    pipes = Pipes()
    pipes.send(init("s", T.format(0)), *(prompt("s", T.format(1), text="y" * 400) for _ in range(60)))
    pipes.send(*(rpc("storage.get_session", {"session_id": "s"}, request_id=n) for n in range(200)))
    pipes.end_input()
    store = CountingStore(db)
    most_pending = 0
    serving = asyncio.ensure_future(pipes.serve(Settings(backend="sqlite", max_output_bytes=bound), store))
    while not hasattr(pipes, "server"):
        await asyncio.sleep(0)
    writer, dispatcher = pipes.server.writer, pipes.server.dispatcher
    write_line, wait_for_output = writer.write_line, dispatcher.wait_for_output
    written = 0

    def counted(line_: bytes | list[bytes]) -> None:
        nonlocal most_pending, written
        write_line(line_)
        most_pending = max(most_pending, writer.pending_bytes)
        written += 1
        if written == 200:  # every answer built: the reader reads at last
            pipes.start_reading.set()

    async def waiting() -> None:
        if not writer.has_room:  # the daemon waits for the reader: now it reads, as a slow one would
            pipes.start_reading.set()
        assert wait_for_output is not None
        await wait_for_output()

    monkeypatch.setattr(writer, "write_line", counted)
    dispatcher.wait_for_output = waiting
    assert await serving == 0
    answers = pipes.answers()
    assert len(answers) == 200 and all(len(result_of(a, a["id"])) == 61 for a in answers)
    answer_bytes = len(json.dumps(answers[0]))
    assert most_pending <= bound + 2 * answer_bytes  # not 200 answers


async def test_a_memory_error_answering_a_request_is_an_internal_error_and_the_daemon_goes_on(
    db: Path,
) -> None:
    pipes = Pipes()
    pipes.start_reading.set()
    pipes.send(init("s", T.format(0)), rpc("storage.get_session", {"session_id": "s"}, request_id=1))
    pipes.send(prompt("s", T.format(1)), rpc("storage.get_session", {"session_id": "s"}, request_id=2))
    pipes.end_input()
    assert await pipes.serve(Settings(backend="sqlite"), CountingStore(db, fail=1)) == 0
    first, second = pipes.answers()
    assert error_of(first, -32603, 1)
    assert [e["method"] for e in result_of(second, 2)] == ["session.init", "user.prompt.submit"]


async def test_a_memory_error_in_the_read_loop_still_stores_what_came_before_and_ends(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipes = Pipes()
    pipes.start_reading.set()
    pipes.send(init("s", T.format(0)), prompt("s", T.format(1)), {"jsonrpc": "2.0", "method": "boom"})
    pipes.end_input()
    store = SqliteStore(db)
    serving = asyncio.ensure_future(pipes.serve(Settings(backend="sqlite"), store))
    while not hasattr(pipes, "server"):
        await asyncio.sleep(0)
    handle_line = pipes.server.dispatcher.handle_line

    def failing(raw: Any) -> Any:
        if isinstance(raw, bytes) and b'"boom"' in raw:
            raise MemoryError
        return handle_line(raw)

    monkeypatch.setattr(pipes.server.dispatcher, "handle_line", failing)
    assert await serving == 1  # ended, in order, saying something failed
    async with running(SqliteStore(db)) as wire:
        assert len(await wire.store.read_session("s", SessionQuery())) == 2


# --- 11. nothing from a transcript drives the terminal -----------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args], input="", capture_output=True, text=True, timeout=60
    )


def test_terminal_controls_in_stored_ids_and_prompts_are_shown_not_obeyed(db: Path) -> None:
    hostile = "evil\x1b]0;pwned\x07\x1b[2J"
    with Daemon(db) as daemon:
        daemon.send(init(hostile, T.format(0)), prompt(hostile, T.format(1), text=f"look {hostile} here"))
        assert daemon.close() == 0
    for command in (["list"], ["list", "--format", "markdown"]):  # csv off a terminal: the data as it is
        shown = cli("--db", str(db), *command, "--color", "always")
        assert (
            "\x1b]" not in shown.stdout and "\x07" not in shown.stdout and "\\u001b]0;pwned" in shown.stdout
        )
    for command in (["show", "evil"], ["search", "look"], ["show", "evil", "--format", "markdown"]):
        shown = cli("--db", str(db), *command)
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "pwned" in shown.stdout


# --- 12. symbolic links: never created through, never written through ---------------------------


def daemon_on(stdin: bytes, *store: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *store, "--shutdown-timeout", "1"],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("backend", ["sqlite", "jsonl"])
def test_a_dangling_link_at_the_store_location_is_refused_with_exit_3(tmp_path: Path, backend: str) -> None:
    target = tmp_path / "elsewhere" / "target"
    link = tmp_path / "store"
    link.symlink_to(target)
    option = ["--db", str(link)] if backend == "sqlite" else ["--backend", "jsonl", "--jsonl-dir", str(link)]
    done = daemon_on(line(init("s", T.format(0))) + b"\n", *option)
    assert done.returncode == 3
    assert b"symbolic link" in done.stderr and str(target).encode() in done.stderr
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("name", ["victim.jsonl", ".seq", ".quarantine.jsonl"])
def test_jsonl_files_reached_through_a_link_are_not_written_through(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious\n")
    (directory / name).symlink_to(outside)
    events = line(init("victim", T.format(0))) + b"\n{not json\n"
    daemon_on(events, "--backend", "jsonl", "--jsonl-dir", str(directory))
    assert outside.read_bytes() == b"precious\n"


# --- 3. jsonl: a batch of more sessions than open files allowed ------------------------------------


def test_a_jsonl_batch_of_more_sessions_than_open_files_allowed_is_stored_whole(tmp_path: Path) -> None:
    """The documented migration (`export | microagents-sidecar --backend jsonl`) of 600
    sessions under a limit of 64 open files: every event stored, no empty file left."""
    directory = tmp_path / "sessions"
    sessions = [f"s{n:03d}" for n in range(600)]
    stream = b"".join(
        line(init(s, T.format(0))) + b"\n" + line(prompt(s, T.format(1))) + b"\n" for s in sessions
    )

    def limit_open_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "--backend", "jsonl", "--jsonl-dir", str(directory)],
        input=stream,
        capture_output=True,
        timeout=120,
        preexec_fn=limit_open_files,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(directory.glob("*.jsonl"))
    assert [f.stem for f in files if not f.name.startswith(".")] == sessions
    assert all(len(f.read_bytes().splitlines()) == 2 for f in files if not f.name.startswith("."))


# --- 13. the store removed or replaced under a running daemon --------------------------------------


def rows_at(path: Path) -> list[str]:
    """The session ids of the events in the file at `path`, read as another program would."""
    with closing(sqlite3.connect(path)) as outside:
        assert outside.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [row[0] for row in outside.execute("SELECT session_id FROM events ORDER BY id")]


async def test_a_database_removed_under_the_daemon_is_created_again_for_what_follows(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(SqliteStore(db)) as wire:
        await wire.send(init("before", T.format(0)))
        await wire.result("storage.flush")
        db.unlink()
        await wire.send(init("after", T.format(1)), prompt("after", T.format(2)))
        await wire.result("storage.flush")
        assert await wire.store.read_session("after", SessionQuery()) != []
    assert rows_at(db) == ["after", "after"]
    assert "was removed while open" in caplog.text


async def test_a_database_replaced_under_the_daemon_is_used_as_it_is_not_corrupted(
    db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "other.db"
    async with running(SqliteStore(other)) as wire:
        await wire.send(init("theirs", T.format(0)))
    async with running(SqliteStore(db)) as wire:
        await wire.send(init("ours", T.format(0)))
        await wire.result("storage.flush")
        os.replace(other, db)
        await wire.send(init("after", T.format(1)))
        await wire.result("storage.flush")
        listed = await wire.result("storage.list_sessions")
        assert sorted(s["session_id"] for s in listed) == ["after", "theirs"]
    assert rows_at(db) == ["theirs", "after"]
    assert "was replaced while open" in caplog.text


# --- 9. a number nobody can read back: refused; one stored before, skipped by every reader --------


UNREADABLE = line(prompt("n", T.format(1), text="lost")).replace(b'"prompt":', b'"huge":1e999999,"prompt":')


async def test_an_event_holding_a_number_no_reader_can_hold_is_invalid_params_and_quarantined(
    any_wire: Wire,
) -> None:
    request = UNREADABLE.replace(b'{"jsonrpc":"2.0",', b'{"jsonrpc":"2.0","id":"n",')
    [answer] = await any_wire.feed(request)  # a request is answered
    assert error_of(answer, -32602, "n")["data"]["field"] == "params"
    assert await any_wire.feed(UNREADABLE) == []  # a notification is quarantined
    [(kept, reason)] = await any_wire.quarantine()
    assert kept == UNREADABLE and "no reader could decode it" in reason
    assert await any_wire.feed(UNREADABLE.replace(b"1e999999", b"1e308")) == []  # a float64 holds it
    await any_wire.result("storage.flush")
    assert len(await any_wire.store.read_session("n", SessionQuery())) == 1


def test_a_stored_event_with_a_number_no_reader_holds_is_skipped_by_every_reader(
    db: Path, tmp_path: Path
) -> None:
    with Daemon(db) as daemon:
        daemon.send(init("n", T.format(0)))
        assert daemon.close() == 0
    with closing(sqlite3.connect(db)) as written_before:  # as an older sidecar stored it
        written_before.execute(
            "INSERT INTO events (session_id, payload, created_at) VALUES ('n', ?, 0)", (UNREADABLE.decode(),)
        )
        written_before.commit()
    with Daemon(db) as daemon:
        daemon.send(prompt("n", T.format(2), text="still readable"))
        assert daemon.close() == 0
    shown = cli("--db", str(db), "show", "n")
    assert shown.returncode == 0 and "still readable" in shown.stdout, shown.stderr
    assert "not readable" in shown.stderr
    markdown = cli("--db", str(db), "show", "n", "--format", "markdown")
    assert markdown.returncode == 0 and "still readable" in markdown.stdout
    forked = cli("--db", str(db), "fork", "n", "--new-id", "copy")
    assert forked.returncode == 0 and "2 events copied" in forked.stdout, forked.stderr
    site = cli("--db", str(db), "export", "--html", str(tmp_path / "site"), "n")
    assert site.returncode == 0 and "still readable" in "".join(
        p.read_text() for p in (tmp_path / "site").glob("*.html")
    )


# --- 1. PostgreSQL gone quiet in the middle of a command -----------------------------------------


async def test_a_postgres_server_gone_quiet_mid_write_fails_within_the_command_timeout_then_lands_once(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    dsn = await asyncio.to_thread(postgres_server.create_database)
    proxy = QuietableProxy(postgres_server.root, tmp_path / "proxy")
    await proxy.start()
    store = PostgresStore(proxy.dsn(database_of(dsn)), command_timeout_s=1.0)
    try:
        await store.open()
        await store.write(events(init("q", T.format(0))), [])
        batch = events(*(prompt("q", T.format(1), text=f"p{n}") for n in range(500)))
        proxy.go_quiet()
        with pytest.raises(StoreFailure):
            async with asyncio.timeout(WAIT_S):  # without a command timeout: never returns
                await store.write(batch, [])
        proxy.resume()
        seqs = await store.write(batch, [])  # the retry, as ingest makes it
        assert len(seqs) == 500
        [(count,)] = await asyncio.to_thread(fetch, dsn, "SELECT count(*) FROM events")
        assert count == 501  # once, not twice
    finally:
        await store.close()
        await proxy.close()
        await asyncio.to_thread(postgres_server.drop_database, dsn)


# --- 2. one poisonous event never sinks the events after it; one limit on session ids -------------


class RefusingStore(MemoryStore):
    """Refuses, like PostgreSQL an index row too big, any batch holding a prompt "poison"."""

    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        if any(b'"prompt":"poison"' in event.payload for event in events):
            raise EventRefused("index row size 3024 exceeds btree version 4 maximum 2704")
        return await super().write(events, rejected)


async def test_an_event_the_store_refuses_is_quarantined_alone_and_the_rest_of_its_batch_is_stored() -> None:
    async with running(RefusingStore()) as wire:
        sent = [prompt("p", T.format(1), text=f"ok {n}") for n in range(100)]
        poison = rpc(
            "user.prompt.submit", prompt("p", T.format(1), text="poison")["params"], request_id="bad"
        )
        invalid = {"jsonrpc": "2.0", "method": "user.prompt.submit", "params": {"session_id": "p"}}
        answers = await wire.answer(
            [*sent[:60], poison, invalid, *sent[60:], rpc("storage.flush", request_id="f")]
        )
        [refused] = [a for a in answers if a["id"] == "bad"]
        assert error_of(refused, -32602, "bad")["data"]["field"] == "params"
        stored = await wire.store.read_session("p", SessionQuery())
        assert [json.loads(p)["params"]["prompt"] for p in stored] == [f"ok {n}" for n in range(100)]
        kept = dict(await wire.quarantine())  # the invalid line of the batch is kept too
        assert len(kept) == 2 and any(b'"poison"' in line_ for line_ in kept)
        reason = next(why for line_, why in kept.items() if b'"poison"' in line_)
        assert "refused by the store" in reason and "btree" in reason
        await wire.send(prompt("p", T.format(2), text="after"))  # batches take their size again
        await wire.result("storage.flush")
        assert len(await wire.store.read_session("p", SessionQuery())) == 101


async def test_a_session_id_longer_than_every_backend_can_index_is_invalid_params(any_wire: Wire) -> None:
    [answer] = await any_wire.feed(line(rpc("session.init", init("x" * 513, T.format(0))["params"], "long")))
    assert error_of(answer, -32602, "long")["data"]["field"] == "session_id"
    await any_wire.send(init("y" * 512, T.format(0)))
    await any_wire.result("storage.flush")
    assert len(await any_wire.store.read_session("y" * 512, SessionQuery())) == 1


# --- 5. subscriptions: bounded all together, read by bytes ----------------------------------------


class Unread:
    """An output nobody reads: everything written stays pending."""

    def __init__(self) -> None:
        self.pending_bytes = 0

    def write_line(self, line_: bytes) -> None:
        self.pending_bytes += len(line_)


class CountingReads(MemoryStore):
    """A MemoryStore that keeps the bytes of every page the hub reads, and tells each pass
    of the hub (one change_token each)."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: list[int] = []
        self.passed = asyncio.Event()

    async def change_token(self) -> object:
        self.passed.set()
        return await super().change_token()

    async def events_after(self, after: int, limit: int, max_bytes: int | None = None) -> Page:
        page = await super().events_after(after, limit, max_bytes)
        self.pages.append(sum(len(event.payload) for _, event in page.events))
        return page


async def settled(store: CountingReads) -> None:
    """Until the hub reads no more: three of its passes in a row read nothing."""
    async with asyncio.timeout(WAIT_S):
        quiet = 0
        while quiet < 3:
            before = len(store.pages)
            store.passed.clear()
            await store.passed.wait()
            quiet = quiet + 1 if len(store.pages) == before else 0


async def test_three_hundred_subscriptions_replaying_from_0_hold_one_bound_all_together() -> None:
    store = CountingReads()
    await store.write(events(*(prompt(f"s{n % 7}", T.format(1), text="x" * 1000) for n in range(3000))), [])
    hub = Hub(store, Unread(), output_budget_bytes=0)
    for _ in range(300):
        await hub.subscribe(0, render=lambda sub, seq, event: event.payload)
    await settled(store)
    assert 0 < hub.queued_bytes <= TOTAL_QUEUE_BYTES + QUEUE_BYTES  # not 300 queues' worth
    await hub.close()


async def test_large_events_are_read_a_few_at_a_time_not_a_page_at_a_time() -> None:
    store = CountingReads()
    await store.write(events(*(prompt("big", T.format(1), text="y" * 1_000_000) for _ in range(100))), [])
    hub = Hub(store, Unread(), output_budget_bytes=0)
    await hub.subscribe(0, render=lambda sub, seq, event: event.payload)
    await settled(store)
    assert max(store.pages) <= QUEUE_BYTES + 1_000_100  # one queue and one event at most
    assert hub.queued_bytes <= QUEUE_BYTES + 1_000_100
    await hub.close()


# --- 6. answers keep going to a reader that keeps reading; a reader gone is said ---------------


async def test_a_slow_reader_gets_every_answer_however_long_it_takes(tmp_path: Path) -> None:
    """The writer waits as long as the reader makes progress: 8 MB taken 64 KB at a time
    over far longer than the stall time still all arrive."""
    read_end, write_end = os.pipe()
    writer = StdoutWriter(write_end, asyncio.get_running_loop(), max_pending_bytes=1 << 30)
    writer.start()
    lines = [b"%06d" % n + b"x" * 8000 for n in range(1000)]
    for line_ in lines:
        writer.write_line(line_)
    received = bytearray()

    def slow_reader() -> None:  # a consumer slower than the stall time allows for the whole
        while chunk := os.read(read_end, 64 * 1024):
            received.extend(chunk)
            time.sleep(0.01)

    reader_thread = threading.Thread(target=slow_reader, daemon=True)
    reader_thread.start()
    try:
        assert await writer.drain(0.3)  # the whole takes over a second: progress is what counts
    finally:
        writer.close()
        await asyncio.to_thread(writer._thread.join, WAIT_S)
        os.close(write_end)
        await asyncio.to_thread(reader_thread.join, WAIT_S)
        os.close(read_end)
    assert bytes(received).split(b"\n")[:-1] == lines


async def test_a_reader_that_takes_nothing_is_given_up_with_exit_1_naming_what_was_not_delivered(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipes = Pipes()  # its reader never starts reading while the daemon runs
    messages = [init("s", T.format(0)), *(prompt("s", T.format(1), text="z" * 4000) for _ in range(400))]
    messages += [rpc("storage.get_session", {"session_id": "s"}, request_id=n) for n in range(3)]

    def feed() -> None:  # more than a pipe holds: written while the daemon reads
        pipes.send(*messages)
        pipes.end_input()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    settings = Settings(backend="sqlite", output_stall_s=0.5)
    assert await pipes.serve(settings, SqliteStore(db)) == 1
    await asyncio.to_thread(feeder.join, WAIT_S)
    assert re.search(
        r"stdout took nothing for 0.5 s: \d+ answers and notifications \(\d+ bytes\) not delivered",
        caplog.text,
    )
    async with running(SqliteStore(db)) as wire:  # the events were stored all the same
        assert len(await wire.store.read_session("s", SessionQuery())) == 401


# --- 10. instants outside int64 nanoseconds are listed as they were written -------------------------


async def test_a_session_listed_shows_its_events_own_instants_beyond_the_stores_keys(any_wire: Wire) -> None:
    early, late = "1600-01-01T00:00:00Z", "2300-06-07T14:03:21.5Z"
    await any_wire.send(init("far", early), prompt("far", "2026-06-07T14:03:21Z"), prompt("far", late))
    [listed] = await any_wire.result("storage.list_sessions")
    assert (listed["first_timestamp"], listed["last_timestamp"]) == (early, late)


async def test_a_wal_removed_under_the_daemon_has_its_commits_copied_into_the_database(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Commits into a removed WAL reach no other reader and die with the process; they are
    copied into the database, and what follows goes to a WAL at the path."""
    async with running(SqliteStore(db)) as wire:
        await wire.send(init("w", T.format(0)), prompt("w", T.format(1)))
        await wire.result("storage.flush")
        Path(f"{db}-wal").unlink()
        await wire.send(prompt("w", T.format(2), text="after the WAL went"))
        await wire.result("storage.flush")
        assert rows_at(db) == ["w", "w", "w"]  # what another program sees, before any close
    assert "the WAL of" in caplog.text and "was removed while open" in caplog.text


async def test_postgres_never_stores_twice_the_start_of_a_batch_whose_commit_went_unanswered(
    postgres_dsn: str,
) -> None:
    """A COMMIT lost, then the ingest retrying only the start of that batch (as it does
    while it looks for a refused event): the landed events are skipped, start and rest."""
    store = PostgresStore(postgres_dsn)
    await store.open()
    try:
        batch = events(*(prompt("u", T.format(1), text=f"e{n}") for n in range(4)))
        seqs = list(await store.write(batch, []))
        store._unsure = [_Batch(batch, [], seqs)]  # as if the COMMIT's answer had been lost
        assert list(await store.write(batch[:2], [])) == seqs[:2]
        later = events(prompt("u", T.format(2), text="later"))
        written = list(await store.write([*batch[2:], *later], []))
        assert written[:2] == seqs[2:] and len(written) == 3
        [(count,)] = await asyncio.to_thread(fetch, postgres_dsn, "SELECT count(*) FROM events")
        assert count == 5  # each once
    finally:
        await store.close()


async def test_large_events_after_many_small_ones_fill_a_queue_no_further_than_its_bound() -> None:
    store = CountingReads()
    small = [prompt("mix", T.format(1), text="s") for _ in range(2011)]
    large = [prompt("mix", T.format(2), text="L" * 256_000) for _ in range(500)]
    await store.write(events(*small, *large), [])
    hub = Hub(store, Unread(), output_budget_bytes=0)
    await hub.subscribe(0, render=lambda sub, seq, event: event.payload)
    await settled(store)
    assert hub.queued_bytes <= QUEUE_BYTES + 256_200  # a queue and one event, not 500 of them
    assert max(store.pages) <= QUEUE_BYTES + 256_200  # nor read at once: the store stops at the room
    await hub.close()


async def reads_stop_at_their_byte_budget(store: Store) -> None:
    await store.open()
    try:
        await store.write(events(*(prompt("b", T.format(1), text="z" * 100_000) for _ in range(50))), [])
        page = await store.events_after(0, 500, max_bytes=1_000_000)
        assert 10 <= len(page.events) <= 10 + FOLLOW_STEP and page.more  # ~1 MB, not 5 MB
        rest = await store.events_after(page.upto, 500)
        assert len(page.events) + len(rest.events) == 50  # nothing skipped
    finally:
        await store.close()


async def test_a_sqlite_read_for_subscriptions_stops_at_its_byte_budget(db: Path) -> None:
    await reads_stop_at_their_byte_budget(SqliteStore(db))


async def test_a_postgres_read_for_subscriptions_stops_at_its_byte_budget(postgres_dsn: str) -> None:
    await reads_stop_at_their_byte_budget(PostgresStore(postgres_dsn))
