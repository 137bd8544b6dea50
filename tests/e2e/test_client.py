"""The Python client against the real daemon on a fresh SQLite file: events, every storage
method, answers matched by id under concurrency, errors, a dying daemon, and closing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from events import init, line, prompt, response, stop

from sidecar.client import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    SESSION_NOT_FOUND,
    Ack,
    AsyncSidecar,
    Deleted,
    Forked,
    SearchHit,
    Sidecar,
    SidecarClosed,
    SidecarError,
    Summary,
    timestamp,
)

BOUND_S = 10.0  # every wait in these tests is bounded by this


def ts(second: int) -> str:
    return f"2026-03-01T10:00:{second:02d}Z"


def stored(db: Path) -> int:
    connection = sqlite3.connect(db)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        connection.close()


@pytest.fixture
async def sidecar(db: Path) -> AsyncIterator[AsyncSidecar]:
    async with asyncio.timeout(BOUND_S), AsyncSidecar("--db", str(db), close_timeout=BOUND_S) as client:
        yield client


# --- events -------------------------------------------------------------------------------------


async def test_events_sent_as_notifications_are_stored_and_read_back_in_time_order(
    sidecar: AsyncSidecar,
) -> None:
    sent = [init("n", ts(1)), response("n", ts(3)), prompt("n", ts(2)), stop("n", ts(4))]
    for event in sent:
        await sidecar.send_event(event["method"], event["params"])
    assert await sidecar.get_session("n") == [sent[0], sent[2], sent[1], sent[3]]


async def test_an_acknowledged_event_returns_its_session_and_store_wide_seq(sidecar: AsyncSidecar) -> None:
    first = await sidecar.record_event("session.init", init("a", ts(1))["params"])
    await sidecar.send_event("session.init", init("b", ts(1))["params"])
    third = await sidecar.record_event("user.prompt.submit", prompt("a", ts(2))["params"])
    assert first == Ack(session_id="a", seq=1)
    assert third == Ack(session_id="a", seq=3)


async def test_raw_params_are_stored_byte_for_byte(sidecar: AsyncSidecar) -> None:
    params = b'{ "session_id":"raw", "turn_id":"t","prompt":"caf\\u00e9","timestamp":"2026-03-01T10:00:01Z" }'
    await sidecar.record_event("user.prompt.submit", msgspec.Raw(params))
    (event,) = await sidecar.get_session_raw("raw")
    assert event == b'{"jsonrpc":"2.0","method":"user.prompt.submit","params":' + params + b"}"


# --- every storage method ---------------------------------------------------------------------------


async def test_get_session_passes_after_methods_and_last_to_the_daemon(sidecar: AsyncSidecar) -> None:
    events = [init("f", ts(1)), prompt("f", ts(2)), response("f", ts(3)), prompt("f", ts(4), text="again")]
    for event in events:
        await sidecar.send_event(event["method"], event["params"])
    assert await sidecar.get_session("f", after=ts(1)) == events[1:]
    assert await sidecar.get_session("f", methods=["user.*"]) == [events[1], events[3]]
    assert await sidecar.get_session("f", methods=["user.prompt.submit"], last=1) == [events[3]]
    assert await sidecar.get_session("nobody") == []


async def test_get_session_raw_returns_each_event_as_its_stored_json_text(sidecar: AsyncSidecar) -> None:
    await sidecar.send_event("session.init", init("r", ts(1))["params"])
    await sidecar.send_event("user.prompt.submit", prompt("r", ts(2))["params"])
    assert await sidecar.get_session_raw("r") == [line(init("r", ts(1))), line(prompt("r", ts(2)))]


async def test_a_session_larger_than_a_pipe_buffer_is_read_whole(sidecar: AsyncSidecar) -> None:
    text = "0123456789" * 200_000  # one 2 MB response line
    await sidecar.send_event("user.prompt.submit", prompt("big", ts(1), text=text)["params"])
    (event,) = await sidecar.get_session("big")
    assert event["params"]["prompt"] == text


async def test_flush_returns_the_highest_seq_committed(sidecar: AsyncSidecar) -> None:
    assert (await sidecar.flush()).seq == 0
    for second in range(5):
        await sidecar.send_event("user.prompt.submit", prompt("fl", ts(second))["params"])
    assert (await sidecar.flush()).seq == 5


async def test_info_names_the_daemon_its_store_and_its_methods(sidecar: AsyncSidecar, db: Path) -> None:
    info = await sidecar.info()
    assert (info.name, info.backend, info.location) == ("microagents-sidecar", "sqlite", str(db))
    assert "0.4" in info.protocol_versions
    assert {"storage.get_session", "storage.search", "storage.flush", "session.init"} <= set(info.methods)


async def test_stats_count_what_this_run_received_stored_and_rejected(sidecar: AsyncSidecar) -> None:
    await sidecar.send_event("session.init", init("s", ts(1))["params"])
    await sidecar.send_event("session.init", {"session_id": "s"})  # invalid: quarantined silently
    stats = await sidecar.stats()
    assert (stats.persisted, stats.rejected, stats.errors, stats.sessions) == (1, 1, 0, 1)
    assert stats.queue_depth == 0 and stats.uptime_s >= 0


async def test_shutdown_is_answered_then_the_daemon_exits_0_with_everything_stored(
    sidecar: AsyncSidecar, db: Path
) -> None:
    await sidecar.send_event("session.init", init("sh", ts(1))["params"])
    await sidecar.shutdown()  # answered once everything is committed
    with pytest.raises(SidecarClosed, match="exited with code 0"):
        await sidecar.info()  # a message after shutdown is never read: no hang, a clear error
    assert await sidecar.aclose() == 0
    assert stored(db) == 1


async def test_call_reaches_any_method_by_name_with_named_or_positional_params(sidecar: AsyncSidecar) -> None:
    await sidecar.send_event("session.init", init("c", ts(1))["params"])
    assert (await sidecar.call("storage.info"))["name"] == "microagents-sidecar"
    assert await sidecar.call("storage.get_session", ["c"]) == [init("c", ts(1))]
    await sidecar.notify("storage.flush")  # a notification is never answered, not even here


# --- managing sessions: list, delete, fork, search ---------------------------------------------


async def send(sidecar: AsyncSidecar, *events: dict[str, Any]) -> None:
    for event in events:
        await sidecar.send_event(event["method"], event["params"])


async def test_list_sessions_returns_summaries_newest_activity_first(sidecar: AsyncSidecar) -> None:
    await send(
        sidecar, init("old", ts(1)), prompt("old", ts(2), text="Refactor  the\nparser"), stop("old", ts(3))
    )
    await send(sidecar, init("new", ts(4)))
    summaries = await sidecar.list_sessions()
    assert [s.session_id for s in summaries] == ["new", "old"]
    assert summaries[1] == Summary(
        session_id="old",
        event_count=3,
        first_timestamp="2026-03-01T10:00:01.000000000Z",
        last_timestamp="2026-03-01T10:00:03.000000000Z",
        model="m",
        provider="p",
        parent_session_id=None,
        status="stopped",
        success=True,
        usage={
            "latency": 10,
            "input_chars": 1,
            "estimated_input_tokens": 1,
            "output_chars": 1,
            "estimated_output_tokens": 1,
        },
        title="Refactor the parser",
    )
    assert (summaries[0].status, summaries[0].success, summaries[0].title) == ("active", None, None)


async def test_list_sessions_passes_limit_before_and_query_to_the_daemon(sidecar: AsyncSidecar) -> None:
    await send(sidecar, *(init(f"s{n}", ts(n)) for n in range(4)), prompt("s1", ts(1), text="find me"))
    assert [s.session_id for s in await sidecar.list_sessions(limit=2)] == ["s3", "s2"]
    assert [s.session_id for s in await sidecar.list_sessions(limit=2, before=ts(2))] == ["s1", "s0"]
    assert [s.session_id for s in await sidecar.list_sessions(query="FIND")] == ["s1"]


async def test_list_sessions_with_a_cursor_that_is_no_timestamp_is_refused(sidecar: AsyncSidecar) -> None:
    with pytest.raises(SidecarError) as raised:
        await sidecar.list_sessions(before="yesterday")
    assert (raised.value.code, raised.value.data["field"]) == (INVALID_PARAMS, "before")


async def test_delete_session_says_how_many_events_it_removed(sidecar: AsyncSidecar) -> None:
    await send(sidecar, init("gone", ts(1)), prompt("gone", ts(2)), init("kept", ts(3)))
    assert await sidecar.delete_session("gone") == Deleted(deleted=2)
    assert await sidecar.get_session("gone") == []
    assert await sidecar.delete_session("gone") == Deleted(deleted=0)
    assert [s.session_id for s in await sidecar.list_sessions()] == ["kept"]


async def test_delete_session_without_an_id_is_refused(sidecar: AsyncSidecar) -> None:
    with pytest.raises(SidecarError) as raised:
        await sidecar.delete_session("")
    assert (raised.value.code, raised.value.data["field"]) == (INVALID_PARAMS, "session_id")


async def test_fork_session_copies_the_parent_under_a_new_id_and_adds_a_fork_event(
    sidecar: AsyncSidecar,
) -> None:
    await send(sidecar, init("parent", ts(1)), prompt("parent", ts(2)))
    assert await sidecar.fork_session("parent", "child") == Forked(session_id="child", copied=2)
    child = await sidecar.get_session("child")
    assert [e["method"] for e in child] == ["session.init", "user.prompt.submit", "session.fork"]
    assert child[2]["params"]["parent_session_id"] == "parent"
    generated = await sidecar.fork_session("parent")
    assert len(generated.session_id) == 36 and generated.copied == 2


async def test_fork_session_of_an_unknown_parent_or_onto_a_used_id_is_refused(sidecar: AsyncSidecar) -> None:
    await send(sidecar, init("parent", ts(1)))
    with pytest.raises(SidecarError) as unknown:
        await sidecar.fork_session("nobody")
    assert (unknown.value.code, unknown.value.data["session_id"]) == (SESSION_NOT_FOUND, "nobody")
    with pytest.raises(SidecarError) as taken:
        await sidecar.fork_session("parent", "parent")
    assert (taken.value.code, taken.value.data["field"]) == (INVALID_PARAMS, "new_session_id")


async def test_search_returns_hits_newest_first_with_their_seq_and_a_snippet(sidecar: AsyncSidecar) -> None:
    await send(
        sidecar,
        prompt("a", ts(1), text="Where is the Kestrel config"),
        response("a", ts(2), text="unrelated"),
        response("b", ts(3), text="The kestrel config lives in etc"),
    )
    assert await sidecar.search("kestrel CONFIG") == [
        SearchHit("b", 3, "assistant.response", ts(3), "The [kestrel] [config] lives in etc"),
        SearchHit("a", 1, "user.prompt.submit", ts(1), "Where is the [Kestrel] [config]"),
    ]
    assert [hit.session_id for hit in await sidecar.search("kestrel", session_id="a")] == ["a"]
    assert [hit.session_id for hit in await sidecar.search("kestrel", limit=1)] == ["b"]


async def test_search_for_a_query_without_words_is_refused(sidecar: AsyncSidecar) -> None:
    with pytest.raises(SidecarError) as raised:
        await sidecar.search(" ?! ")
    assert (raised.value.code, raised.value.data["field"]) == (INVALID_PARAMS, "query")


# --- answers matched by id -----------------------------------------------------------------------


async def test_concurrent_requests_get_their_own_answers(sidecar: AsyncSidecar) -> None:
    sessions = [f"s{i}" for i in range(20)]

    async def record(session: str) -> tuple[str, list[int]]:
        acks = [await sidecar.record_event("session.init", init(session, ts(0))["params"])]
        for second in range(1, 4):
            acks.append(
                await sidecar.record_event("user.prompt.submit", prompt(session, ts(second))["params"])
            )
        assert {ack.session_id for ack in acks} == {session}
        return session, [ack.seq for ack in acks]

    recorded = dict(await asyncio.gather(*(record(session) for session in sessions)))
    all_seqs = [seq for seqs in recorded.values() for seq in seqs]
    assert sorted(all_seqs) == list(range(1, 81))  # each ack carries its own event's seq

    async def read(session: str, last: int) -> None:
        events = await sidecar.get_session(session, last=last)
        assert [e["params"]["session_id"] for e in events] == [session] * last
        assert [e["params"]["timestamp"] for e in events] == [ts(s) for s in range(4 - last, 4)]

    reads = [read(session, 1 + i % 4) for i in range(10) for session in sessions]
    await asyncio.gather(*reads, sidecar.stats(), sidecar.flush(), sidecar.info())


# --- errors --------------------------------------------------------------------------------------

ERRORS = [
    pytest.param(
        "storage.frobnicate", {}, METHOD_NOT_FOUND, "method", "storage.frobnicate", id="unknown-method"
    ),
    pytest.param("storage.get_session", {"session": "x"}, INVALID_PARAMS, "field", "session", id="typo"),
    pytest.param(
        "storage.get_session", {"session_id": "x", "last": 0}, INVALID_PARAMS, "field", "last", id="last"
    ),
    pytest.param(
        "session.init", {"session_id": "x", "timestamp": ts(1)}, INVALID_PARAMS, "field", "model", id="event"
    ),
]


@pytest.mark.parametrize(("method", "params", "code", "key", "value"), ERRORS)
async def test_an_error_answer_raises_sidecar_error_with_its_code_and_data(
    sidecar: AsyncSidecar, method: str, params: Any, code: int, key: str, value: str
) -> None:
    with pytest.raises(SidecarError) as raised:
        await sidecar.call(method, params)
    assert raised.value.code == code
    assert raised.value.data[key] == value
    assert raised.value.data["reason"] in str(raised.value)
    assert (await sidecar.info()).name == "microagents-sidecar"  # the client goes on


async def test_an_invalid_event_sent_for_acknowledgement_is_refused_naming_the_field(
    sidecar: AsyncSidecar,
) -> None:
    params = {"session_id": "x", "turn_id": "t", "delta": "Hel", "delta_type": "text", "timestamp": ts(1)}
    with pytest.raises(SidecarError) as raised:
        await sidecar.record_event("stream.delta", params)
    assert (raised.value.code, raised.value.message) == (INVALID_PARAMS, "Invalid params")
    assert raised.value.data["field"] == "delta_type"
    assert (await sidecar.stats()).persisted == 0


# --- a dying daemon ------------------------------------------------------------------------------


async def test_a_killed_daemon_fails_every_pending_call_promptly(sidecar: AsyncSidecar) -> None:
    await sidecar.info()
    assert sidecar.pid is not None
    os.kill(sidecar.pid, signal.SIGSTOP)  # it reads nothing more: the calls below stay pending
    calls = [asyncio.create_task(sidecar.get_session("s")) for _ in range(5)]
    await asyncio.sleep(0)  # let every call write its request
    os.kill(sidecar.pid, signal.SIGKILL)
    async with asyncio.timeout(5):
        results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        assert isinstance(result, SidecarClosed), result
        assert str(result) == "the sidecar was killed by SIGKILL before answering storage.get_session"
        assert result.returncode == -signal.SIGKILL
    with pytest.raises(SidecarClosed, match=r"killed by SIGKILL; cannot send storage\.flush"):
        await sidecar.flush()
    with pytest.raises(SidecarClosed):
        await sidecar.send_event("session.init", init("late", ts(1))["params"])
    assert await sidecar.aclose() == -signal.SIGKILL


async def test_a_daemon_that_does_not_exit_is_terminated_then_killed(db: Path) -> None:
    client = await AsyncSidecar("--db", str(db), close_timeout=0.3).start()
    await client.info()
    assert client.pid is not None
    os.kill(client.pid, signal.SIGSTOP)  # deaf to end of input and to SIGTERM alike
    async with asyncio.timeout(5):
        assert await client.aclose() == -signal.SIGKILL


# --- closing -------------------------------------------------------------------------------------


async def test_closing_commits_every_event_sent_and_returns_exit_code_0(db: Path) -> None:
    async with asyncio.timeout(BOUND_S), AsyncSidecar("--db", str(db)) as client:
        for i in range(1000):
            delta = {"session_id": "d", "turn_id": "t", "delta": str(i), "delta_type": "Text"}
            await client.send_event("stream.delta", {**delta, "timestamp": timestamp()})
    assert client.returncode == 0
    assert stored(db) == 1000
    with pytest.raises(SidecarClosed, match="exited with code 0"):
        await client.info()


async def test_a_client_attached_to_pipes_it_did_not_open_works_and_leaves_the_exit_to_its_owner(
    db: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "--db", str(db), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdin is not None
    async with asyncio.timeout(BOUND_S):
        client = await AsyncSidecar.attach(process.stdout, process.stdin).start()
        assert await client.record_event("session.init", init("at", ts(1))["params"]) == Ack("at", 1)
        assert client.pid is None
        assert await client.aclose() is None
        assert await process.wait() == 0


# --- the blocking client and the import -------------------------------------------------------------


def test_the_blocking_client_records_and_reads_a_session_and_closes_with_exit_0(db: Path) -> None:
    with Sidecar("--db", str(db)) as client:
        assert client.record_event("session.init", init("b", ts(1))["params"]).seq == 1
        client.send_event("user.prompt.submit", prompt("b", ts(2))["params"])
        assert [e["method"] for e in client.get_session("b")] == ["session.init", "user.prompt.submit"]
        assert client.flush().seq == 2
        assert client.stats().persisted == 2
        with pytest.raises(SidecarError) as raised:
            client.call("storage.nothing")
        assert raised.value.code == METHOD_NOT_FOUND
    assert client.close() == 0  # already closed by `with`: the same answer again
    assert stored(db) == 2


def test_the_blocking_client_lists_searches_forks_and_deletes_sessions(db: Path) -> None:
    with Sidecar("--db", str(db)) as client:
        client.send_event("user.prompt.submit", prompt("b", ts(1), text="blocking heron")["params"])
        assert [s.title for s in client.list_sessions(query="heron")] == ["blocking heron"]
        assert [hit.snippet for hit in client.search("heron", session_id="b", limit=5)] == [
            "blocking [heron]"
        ]
        assert client.fork_session("b", "c") == Forked("c", 1)
        assert client.delete_session("b") == Deleted(1)
        assert [s.session_id for s in client.list_sessions(limit=10)] == ["c"]


def test_importing_the_client_loads_neither_the_daemon_nor_the_store() -> None:
    code = (
        "import sys, sidecar.client; "
        "print(sorted(m for m in sys.modules if m.startswith(('sidecar.', 'aiosqlite', 'uvloop'))))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND_S, check=True
    )
    assert output.stdout.strip() == "['sidecar.client', 'sidecar.protocol']"
    daemon_side = "import sys, sidecar.cli; print('sidecar.client' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", daemon_side], capture_output=True, text=True, timeout=BOUND_S, check=True
    )
    assert output.stdout.strip() == "False"


async def test_a_subscription_delivers_committed_events_through_on_notification(db: Path) -> None:
    received: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    async with AsyncSidecar(
        "--db", str(db), on_notification=lambda m, p: received.put_nowait((m, p))
    ) as sidecar:
        await sidecar.send_event("session.init", init("sub", ts(0))["params"])
        first = (await sidecar.flush()).seq
        subscription = await sidecar.subscribe(session_id="sub", methods=["user.*"], after_seq=0)
        await sidecar.send_event("user.prompt.submit", prompt("sub", ts(1))["params"])
        method, params = await asyncio.wait_for(received.get(), 10)
        assert method == "storage.event" and params["subscription"] == subscription
        assert params["seq"] == first + 1 and params["event"] == prompt("sub", ts(1))
        await sidecar.unsubscribe(subscription)
        with pytest.raises(SidecarError) as unknown:
            await sidecar.unsubscribe(subscription)
        assert unknown.value.code == -32602
