"""The dispatcher in-process (sidecar/dispatch.py): lines in, what the daemon would write
out, over real stores. Every error code with the right id, batches, notifications (never
answered, quarantined when bad), acknowledged events and byte-exact storage.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, overload

import pytest
from backends import payloads
from events import (
    USAGE_TOKENS,
    as_request,
    changed,
    error_of,
    init,
    line,
    notification,
    params_text,
    prompt,
    result_of,
    rpc,
    stop,
    stored_form,
    tool_call,
    tool_result,
    vectors,
)
from wire import WAIT_S, Wire, encode, resolve, running

from sidecar.config import Settings
from sidecar.events import decode_event
from sidecar.framing import Oversize
from sidecar.store.base import Event, Rejected, SessionQuery, StoreFailure
from sidecar.store.memory import MemoryStore
from sidecar.store.sqlite import SqliteStore

T = "2026-06-07T14:03:21Z"


# --- stores of our own --------------------------------------------------------------------------------


class FaultyStore(MemoryStore):
    """The memory store failing on demand: while `refusing`, writes fail as on a full disk;
    while `broken`, reads raise as a bug in a backend would."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing = False
        self.broken = False

    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        if self.refusing:
            raise StoreFailure("disk is full")
        return await super().write(events, rejected)

    async def read_session(self, session_id: str, query: SessionQuery) -> list[bytes]:
        if self.broken:
            raise RuntimeError("a secret detail of the bug")
        return await super().read_session(session_id, query)


@pytest.fixture
async def sqlite_wire(db: Path) -> AsyncIterator[Wire]:
    async with running(SqliteStore(db)) as running_wire:
        yield running_wire


@pytest.fixture
async def faulty() -> AsyncIterator[tuple[Wire, FaultyStore]]:
    store = FaultyStore()
    async with running(store) as running_wire:
        yield running_wire, store
        store.refusing = store.broken = False  # what is queued is stored before the end


# --- builders only this module uses -------------------------------------------------------------------


def delta(session_id: str, timestamp: str, text: str = "Hel", kind: str = "Text") -> dict[str, Any]:
    return notification(
        "stream.delta", session_id=session_id, turn_id="t1", delta=text, delta_type=kind, timestamp=timestamp
    )


def task(session_id: str, timestamp: str, status: str = "Done") -> dict[str, Any]:
    return notification(
        "assistant.task",
        session_id=session_id,
        turn_id="t1",
        task_name="write tests",
        task_status=status,
        timestamp=timestamp,
    )


def without(message: dict[str, Any], key: str) -> dict[str, Any]:
    return {**message, "params": {k: v for k, v in message["params"].items() if k != key}}


# --- -32700 and -32600: lines that are not messages ----------------------------------------------

NOT_JSON = [
    pytest.param(b"not json", id="words"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"storage.info"} x', id="trailing-garbage"),
    pytest.param(b"\xff\xfe\xfd", id="invalid-utf8"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"storage.\xc3"}', id="invalid-utf8-in-a-request"),
    pytest.param(b"[1,2", id="truncated-batch"),
    pytest.param(b"[" * 100_000, id="nested-too-deep"),
]


@pytest.mark.parametrize("raw", NOT_JSON)
async def test_a_line_that_is_not_json_is_answered_parse_error_with_null_id_and_quarantined(
    any_wire: Wire, raw: bytes
) -> None:
    error_of(await any_wire.answer(raw), -32700, None)
    assert [kept for kept, _ in await any_wire.quarantine()] == [raw]


NOT_A_REQUEST = [
    pytest.param(b'{"id":1,"method":"storage.info"}', 1, id="jsonrpc-missing"),
    pytest.param(b'{"jsonrpc":"1.0","id":"a","method":"storage.info"}', "a", id="jsonrpc-1.0"),
    pytest.param(b'{"jsonrpc":"2.0","id":2,"method":42}', 2, id="method-a-number"),
    pytest.param(b'{"jsonrpc":"2.0","id":"m"}', "m", id="method-missing"),
    pytest.param(b'{"method":"storage.flush"}', None, id="notification-without-jsonrpc"),
    pytest.param(b"42", None, id="a-number"),
    pytest.param(b'"x"', None, id="a-string"),
    pytest.param(b'{"jsonrpc":"2.0","id":{},"method":"storage.info"}', None, id="id-an-object"),
    pytest.param(b'{"jsonrpc":"2.0","id":true,"method":"storage.info"}', None, id="id-a-boolean"),
    pytest.param(b'{"jsonrpc":"2.0","id":[1],"method":"storage.info"}', None, id="id-an-array"),
]


@pytest.mark.parametrize(("raw", "request_id"), NOT_A_REQUEST)
async def test_a_value_that_is_not_a_jsonrpc_message_is_answered_invalid_request_and_quarantined(
    any_wire: Wire, raw: bytes, request_id: Any
) -> None:
    error_of(await any_wire.answer(raw), -32600, request_id)
    assert [kept for kept, _ in await any_wire.quarantine()] == [raw]


async def test_every_line_that_is_not_a_message_counts_as_received_rejected_and_answered(wire: Wire) -> None:
    for raw in (b"{", b"\xc0\xaf", b"42", b"[]", b'{"jsonrpc":"2.0"}'):
        await wire.answer(raw)
    stats = await wire.result("storage.stats")
    assert (stats["received"], stats["rejected"], stats["errors"], stats["persisted"]) == (6, 5, 5, 0)


# --- -32601, and the forms of an id -----------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc", "", 7, 1.5, None], ids=repr)
async def test_an_unknown_method_in_a_request_is_answered_method_not_found_with_the_same_id(
    wire: Wire, request_id: Any
) -> None:
    error = error_of(await wire.answer(rpc("storage.frobnicate", {"x": 1}, request_id)), -32601, request_id)
    assert "storage.frobnicate" in json.dumps(error)
    assert error["data"]["method"] == "storage.frobnicate"
    assert await wire.quarantine() == []  # a request's error is its answer, not a rejected line


@pytest.mark.parametrize("request_id", ["abc", "", 0, -7, 2**53, 1.5, None], ids=repr)
async def test_a_request_is_answered_with_its_own_id_of_the_same_type(wire: Wire, request_id: Any) -> None:
    assert result_of(await wire.answer(rpc("storage.flush", request_id=request_id)), request_id) == {"seq": 0}


async def test_a_message_without_an_id_is_a_notification_and_one_with_a_null_id_is_a_request(
    wire: Wire,
) -> None:
    unknown = {"jsonrpc": "2.0", "method": "storage.frobnicate"}
    await wire.send(unknown)
    error_of(await wire.answer({**unknown, "id": None}), -32601, None)
    ((kept, reason),) = await wire.quarantine()
    assert kept == encode(unknown) and "-32601" in reason


# --- -32602: invalid params, with the field named ---------------------------------------------------

INVALID_EVENTS = [
    pytest.param(without(init("s"), "model"), "model", id="session.init-without-model"),
    pytest.param(changed(init("s"), init_type="start"), "init_type", id="init_type-lowercase"),
    pytest.param(delta("s", T, kind="text"), "delta_type", id="delta_type-lowercase"),
    pytest.param(tool_result("s", T, {}), "result", id="tool.result-neither-ok-nor-err"),
    pytest.param(changed(prompt("s", T), session_id=""), "session_id", id="session_id-empty"),
    pytest.param(without(prompt("s", T), "turn_id"), "turn_id", id="turn_id-missing"),
    pytest.param(
        changed(stop("s", T), usage={**USAGE_TOKENS, "latency": "1"}), "usage.latency", id="latency-a-string"
    ),
    pytest.param(task("s", T, "done"), "task_status", id="task_status-lowercase"),
    pytest.param({"jsonrpc": "2.0", "method": "session.init"}, "params", id="params-missing"),
]


@pytest.mark.parametrize(("event", "field"), INVALID_EVENTS)
async def test_an_invalid_event_sent_as_a_request_is_answered_invalid_params_naming_the_field(
    wire: Wire, event: dict[str, Any], field: str
) -> None:
    error = error_of(await wire.answer(as_request(event, 41)), -32602, 41)
    assert error["data"]["field"] == field
    assert isinstance(error["data"]["reason"], str) and error["data"]["reason"]
    assert (await wire.result("storage.stats"))["persisted"] == 0


INVALID_TIMESTAMPS = [
    "2026-13-01T00:00:00Z",
    "2026-01-01T00:00:00",
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00.1234567890Z",
    "yesterday",
]


@pytest.mark.parametrize("timestamp", INVALID_TIMESTAMPS)
async def test_an_event_with_an_invalid_timestamp_is_answered_invalid_params_naming_timestamp(
    wire: Wire, timestamp: str
) -> None:
    error = error_of(await wire.answer(as_request(prompt("bad", timestamp), "t")), -32602, "t")
    assert error["data"]["field"] == "timestamp"
    assert await wire.result("storage.get_session", {"session_id": "bad"}) == []


async def test_a_storage_method_without_params_rejects_unknown_params(wire: Wire) -> None:
    error = error_of(await wire.answer(rpc("storage.flush", {"everything": True}, 9)), -32602, 9)
    assert error["data"]["field"] == "everything"


@pytest.mark.parametrize(
    "params",
    [b"null", b"[]", b'["a","b"]', b"42", b'"s"'],
    ids=["null", "empty-array", "two", "number", "str"],
)
async def test_params_that_are_neither_an_object_nor_a_one_element_array_name_the_params(
    wire: Wire, params: bytes
) -> None:
    raw = b'{"jsonrpc":"2.0","id":1,"method":"storage.delete_session","params":' + params + b"}"
    assert error_of(await wire.answer(raw), -32602, 1)["data"]["field"] == "params"


# --- -32003: a line over the maximum ------------------------------------------------------------------


async def test_a_line_over_the_maximum_is_answered_message_too_large_with_null_id_and_its_head_quarantined(
    wire: Wire,
) -> None:
    reply = await resolve(wire.core.dispatcher.handle_line(Oversize(5000, b"x" * 1024)))
    assert reply is not None
    error = error_of(json.loads(reply), -32003, None)
    assert error["data"]["size"] == 5000
    assert [kept for kept, _ in await wire.quarantine()] == [b"x" * 1024]
    stats = await wire.result("storage.stats")
    assert (stats["received"], stats["rejected"], stats["errors"]) == (2, 1, 1)


async def test_after_a_line_over_the_maximum_the_next_line_is_handled() -> None:
    async with running(MemoryStore(), settings=Settings(backend="memory", max_line_bytes=1000)) as wire:
        big = line(as_request(prompt("big", T, text="x" * 1000), "big"))
        small = line(as_request(prompt("small", T), "small"))
        first, second = await wire.feed(big + b"\n" + small + b"\n")
        error_of(first, -32003, None)
        assert result_of(second, "small") == {"session_id": "small", "seq": 1}
        assert await wire.result("storage.get_session", {"session_id": "big"}) == []


# --- -32001: the store cannot take or serve data -------------------------------------------------------


async def test_an_event_the_store_cannot_take_is_answered_storage_unavailable_and_stored_after_recovery(
    sqlite_wire: Wire, db: Path
) -> None:
    await sqlite_wire.send(init("s"))
    assert await sqlite_wire.result("storage.flush") == {"seq": 1}
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
        )
        error = error_of(await sqlite_wire.answer(as_request(prompt("s", T), "p")), -32001, "p")
        assert "disk is full" in error["data"]["reason"]
        error_of(await sqlite_wire.answer(rpc("storage.flush", request_id="f")), -32001, "f")
        error_of(await sqlite_wire.answer(rpc("storage.get_session", {"session_id": "s"}, "g")), -32001, "g")
        other.execute("DROP TRIGGER refuse")
    assert await sqlite_wire.result("storage.flush") == {"seq": 2}
    assert payloads(db) == [line(init("s")), line(prompt("s", T))]


async def test_an_acknowledged_event_refused_by_the_store_is_kept_and_stored_once_it_recovers(
    faulty: tuple[Wire, FaultyStore],
) -> None:
    wire, store = faulty
    store.refusing = True
    error = error_of(await wire.answer(as_request(prompt("s", T), "p")), -32001, "p")
    assert error["data"]["retained"] is True
    assert error["data"]["reason"] == "disk is full"
    store.refusing = False
    assert await wire.result("storage.flush") == {"seq": 1}
    assert await wire.result("storage.get_session", {"session_id": "s"}) == [prompt("s", T)]


async def test_while_the_store_refuses_writes_reads_fail_but_info_and_stats_answer(
    faulty: tuple[Wire, FaultyStore],
) -> None:
    wire, store = faulty
    store.refusing = True
    await wire.send(init("s"))
    error_of(await wire.answer(rpc("storage.get_session", ["s"], "g")), -32001, "g")
    error_of(await wire.answer(rpc("storage.flush", request_id="f")), -32001, "f")
    assert (await wire.result("storage.info"))["backend"] == "memory"
    assert (await wire.result("storage.stats"))["queue_depth"] == 1
    store.refusing = False
    assert await wire.result("storage.get_session", ["s"]) == [init("s")]


# --- -32603: a bug, answered without its details ----------------------------------------------------------


async def test_a_request_that_hits_a_bug_is_answered_internal_error_without_its_details(
    faulty: tuple[Wire, FaultyStore],
) -> None:
    wire, store = faulty
    store.broken = True
    reply = await resolve(wire.handle(rpc("storage.get_session", ["s"], "g")))
    assert reply is not None and b"secret" not in reply and b"Traceback" not in reply
    error = error_of(json.loads(reply), -32603, "g")
    assert error["data"] == {"reason": "see the daemon's stderr"}
    store.broken = False
    assert await wire.result("storage.get_session", ["s"]) == []


async def test_a_notification_that_hits_a_bug_is_not_answered_but_quarantined(
    faulty: tuple[Wire, FaultyStore],
) -> None:
    wire, store = faulty
    store.broken = True
    notice = {"jsonrpc": "2.0", "method": "storage.get_session", "params": ["s"]}
    await wire.send(notice)
    store.broken = False
    ((kept, reason),) = await wire.quarantine()
    assert kept == encode(notice) and "-32603" in reason


# --- batches --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"[]", b" [ ] "])
async def test_an_empty_batch_is_answered_with_one_invalid_request_object_not_an_array(
    wire: Wire, raw: bytes
) -> None:
    error_of(await wire.answer(raw), -32600, None)
    assert [kept for kept, _ in await wire.quarantine()] == [raw]


async def test_a_batch_of_requests_is_answered_with_one_array_of_responses_matching_every_id(
    wire: Wire,
) -> None:
    batch = await wire.answer(
        [
            rpc("storage.info", request_id=1),
            rpc("storage.flush", request_id="two"),
            rpc("no.such.method", request_id=3),
            rpc("storage.get_session", {"session_id": "none"}, request_id=None),
        ]
    )
    assert isinstance(batch, list) and len(batch) == 4
    by_id = {json.dumps(reply["id"]): reply for reply in batch}
    assert result_of(by_id["1"], 1)["backend"] == "memory"
    assert result_of(by_id['"two"'], "two") == {"seq": 0}
    error_of(by_id["3"], -32601, 3)
    assert result_of(by_id["null"], None) == []


async def test_a_batch_is_answered_in_the_order_of_its_requests_with_acknowledged_events_last(
    wire: Wire,
) -> None:
    batch = await wire.answer(
        [
            rpc("storage.flush", request_id=1),
            as_request(prompt("s", T), 2),
            rpc("storage.info", request_id=3),
            rpc("no.such.method", request_id=4),
            as_request(init("s"), 5),
            rpc("storage.flush", request_id=6),
        ]
    )
    assert [reply["id"] for reply in batch] == [1, 3, 4, 6, 2, 5]
    assert result_of(batch[0], 1) == {"seq": 0}  # it sees only what came before it
    assert result_of(batch[3], 6) == {"seq": 2}
    assert result_of(batch[4], 2) == {"session_id": "s", "seq": 1}
    assert result_of(batch[5], 5) == {"session_id": "s", "seq": 2}


async def test_a_batch_mixing_notifications_and_requests_answers_only_the_requests(wire: Wire) -> None:
    batch = await wire.answer(
        [
            init("b"),
            prompt("b", "2026-06-07T14:03:22Z"),
            rpc("storage.get_session", {"session_id": "b"}, "read"),
            {"jsonrpc": "2.0", "method": "no.such.method"},
            rpc("storage.stats", request_id="stats"),
        ]
    )
    assert isinstance(batch, list) and [reply["id"] for reply in batch] == ["read", "stats"]
    read, stats = batch
    assert result_of(read, "read") == [init("b"), prompt("b", "2026-06-07T14:03:22Z")]
    assert result_of(stats, "stats")["rejected"] == 1


async def test_a_batch_of_only_notifications_is_not_answered_and_stores_every_event(wire: Wire) -> None:
    await wire.send([init("n"), prompt("n", "2026-06-07T14:03:22Z"), stop("n", "2026-06-07T14:03:23Z")])
    events = await wire.result("storage.get_session", {"session_id": "n"})
    assert [e["method"] for e in events] == ["session.init", "user.prompt.submit", "session.stop"]


@pytest.mark.parametrize("raw", [b"[1,2,3]", b'["x",null,{},[]]', b" [ 1 , true ] "])
async def test_a_batch_of_garbage_elements_is_answered_with_an_invalid_request_per_element(
    wire: Wire, raw: bytes
) -> None:
    batch = await wire.answer(raw)
    assert isinstance(batch, list) and len(batch) == len(json.loads(raw))
    for reply in batch:
        error_of(reply, -32600, None)


async def test_the_invalid_elements_of_a_batch_are_quarantined_one_by_one_and_the_valid_ones_stored(
    wire: Wire,
) -> None:
    bad_event = without(init("q"), "model")
    assert len(await wire.answer([1, init("q"), "x", bad_event])) == 2
    assert [kept for kept, _ in await wire.quarantine()] == [b"1", b'"x"', encode(bad_event)]
    assert await wire.stored() == [line(init("q"))]


async def test_events_sent_as_requests_inside_a_batch_are_answered_with_session_and_seq_in_the_array(
    wire: Wire,
) -> None:
    batch = await wire.answer(
        [
            as_request(init("e"), 1),
            as_request(prompt("e", "2026-06-07T14:03:22Z"), 2),
            as_request(without(prompt("e", T), "turn_id"), 3),
            7,
            rpc("storage.info", request_id=4),
        ]
    )
    assert isinstance(batch, list) and len(batch) == 5
    by_id = {json.dumps(reply["id"]): reply for reply in batch}
    assert result_of(by_id["1"], 1) == {"session_id": "e", "seq": 1}
    assert result_of(by_id["2"], 2) == {"session_id": "e", "seq": 2}
    assert error_of(by_id["3"], -32602, 3)["data"]["field"] == "turn_id"
    error_of(by_id["null"], -32600, None)
    assert result_of(by_id["4"], 4)["backend"] == "memory"


# --- notifications: never answered; bad ones quarantined ----------------------------------------------

BAD_NOTIFICATIONS = [
    pytest.param(line(without(init("q"), "model")), "model", id="event-missing-field"),
    pytest.param(line(changed(prompt("q", T), timestamp="2026-13-01T00:00:00Z")), "timestamp", id="bad-time"),
    pytest.param(b'{"jsonrpc":"2.0","method":"session.init"}', "params", id="event-without-params"),
    pytest.param(b'{"jsonrpc":"2.0","method":"agent.dance","params":{}}', "agent.dance", id="unknown-method"),
    pytest.param(b'{"jsonrpc":"2.0","method":"storage.get_session","params":{}}', "session_id", id="storage"),
]


@pytest.mark.parametrize(("raw", "hint"), BAD_NOTIFICATIONS)
async def test_an_invalid_notification_is_not_answered_but_quarantined_with_the_raw_line_and_a_reason(
    any_wire: Wire, raw: bytes, hint: str
) -> None:
    await any_wire.send(init("q"), raw, prompt("q", "2026-06-07T14:03:22Z"))
    stats = await any_wire.result("storage.stats")
    assert (stats["rejected"], stats["errors"], stats["persisted"]) == (1, 0, 2)
    ((kept, reason),) = await any_wire.quarantine()
    assert kept == raw
    assert hint in reason
    assert len(await any_wire.stored()) == 2


async def test_a_valid_storage_request_sent_as_a_notification_is_not_answered(wire: Wire) -> None:
    await wire.send(
        {"jsonrpc": "2.0", "method": "storage.get_session", "params": {"session_id": "s"}},
        {"jsonrpc": "2.0", "method": "storage.info"},
        {"jsonrpc": "2.0", "method": "storage.stats"},
    )
    stats = await wire.result("storage.stats")
    assert (stats["rejected"], stats["errors"]) == (0, 0)


async def test_storage_flush_as_a_notification_commits_silently(sqlite_wire: Wire, db: Path) -> None:
    sent = [prompt("fl", f"2026-06-07T14:03:21.{i:09d}Z") for i in range(50)]
    await sqlite_wire.send(*sent, {"jsonrpc": "2.0", "method": "storage.flush"})
    assert payloads(db) == [line(event) for event in sent]


RESPONSE_OBJECTS = [
    pytest.param(
        b'{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Internal Server Error","data":"x"}}',
        id="error-response",
    ),
    pytest.param(b'{"jsonrpc":"2.0","id":"a","result":{"ok":true}}', id="result-response"),
]


@pytest.mark.parametrize("raw", RESPONSE_OBJECTS)
async def test_a_response_object_is_ignored_not_answered_not_quarantined_not_counted_as_error(
    any_wire: Wire, raw: bytes
) -> None:
    await any_wire.send(raw)
    stats = await any_wire.result("storage.stats")
    assert (stats["rejected"], stats["errors"], stats["persisted"]) == (0, 0, 0)
    assert await any_wire.quarantine() == []


async def test_crlf_line_endings_are_accepted_and_not_stored(sqlite_wire: Wire, db: Path) -> None:
    sent = [init("crlf"), prompt("crlf", "2026-06-07T14:03:22Z")]
    request = rpc("storage.get_session", {"session_id": "crlf"}, "c")
    (read,) = await sqlite_wire.feed(b"".join(line(message) + b"\r\n" for message in [*sent, request]))
    assert result_of(read, "c") == sent
    assert payloads(db) == [line(event) for event in sent]


async def test_blank_lines_are_ignored_without_an_answer_or_a_count(wire: Wire) -> None:
    assert await wire.feed(b"\n\n   \n\t\n\r\n" + line(init("blank")) + b"\n\n \r\n") == []
    stats = await wire.result("storage.stats")
    assert (stats["received"], stats["persisted"], stats["rejected"], stats["errors"]) == (2, 1, 0, 0)


# --- acknowledged events ------------------------------------------------------------------------------


async def test_events_sent_as_requests_are_answered_with_session_and_increasing_seq(wire: Wire) -> None:
    sent = [
        as_request(init("a"), "i"),
        as_request(prompt("a", "2026-06-07T14:03:22Z"), 2),
        as_request(init("b"), 3.5),
        as_request(tool_call("a", "2026-06-07T14:03:23Z", path="x"), None),
    ]
    replies = [wire.handle(message) for message in sent]  # all sent before any answer is read
    acks = [json.loads(reply or b"") for reply in [await resolve(reply) for reply in replies]]
    results = [result_of(ack, message["id"]) for ack, message in zip(acks, sent, strict=True)]
    assert results == [
        {"session_id": "a", "seq": 1},
        {"session_id": "a", "seq": 2},
        {"session_id": "b", "seq": 3},
        {"session_id": "a", "seq": 4},
    ]
    await wire.send(prompt("b", "2026-06-07T14:03:24Z"))
    assert await wire.result("storage.flush") == {"seq": 5}


async def test_an_acknowledged_event_is_answered_only_once_committed_with_its_seq_in_the_store(
    wire: Wire,
) -> None:
    reply = wire.handle(as_request(prompt("c", T), "p"))
    assert isinstance(reply, asyncio.Future)  # the reader goes on while the commit is pending
    ack = result_of(json.loads(await resolve(reply) or b""), "p")
    async with asyncio.timeout(WAIT_S):
        page = await wire.store.events_after(0, 10)  # straight from the store: no drain first
    assert [(seq, event.payload) for seq, event in page.events] == [(ack["seq"], line(prompt("c", T)))]


async def test_get_session_right_after_notifications_sees_every_one_of_them(wire: Wire) -> None:
    sent = [prompt("rw", f"2026-06-07T14:03:21.{i:09d}Z", text=str(i)) for i in range(300)]
    await wire.send(*sent)
    assert await wire.result("storage.get_session", {"session_id": "rw"}) == sent
    assert await wire.result("storage.flush") == {"seq": 300}


# --- byte-for-byte storage, read back from the SQLite file -------------------------------------------


async def test_every_shared_vector_is_accepted_and_stored_byte_for_byte(sqlite_wire: Wire, db: Path) -> None:
    messages = [json.loads(vector) for vector in vectors()]
    for seq, (vector, message) in enumerate(zip(vectors(), messages, strict=True), start=1):
        ack = await sqlite_wire.answer(vector[:-1] + b',"id":' + str(seq).encode() + b"}")
        assert result_of(ack, seq) == {"session_id": message["params"]["session_id"], "seq": seq}
    for session in dict.fromkeys(m["params"]["session_id"] for m in messages):
        stored = await sqlite_wire.result("storage.get_session", {"session_id": session})
        assert sorted(map(json.dumps, stored)) == sorted(
            json.dumps(m) for m in messages if m["params"]["session_id"] == session
        )
    assert payloads(db) == [
        stored_form(m["method"], params_text(v)) for m, v in zip(messages, vectors(), strict=True)
    ]


EXACT_PARAMS = [
    pytest.param(
        "user.prompt.submit",
        b'{ "timestamp" : "2026-06-07T14:03:21Z" ,\t"prompt":"hi" , "turn_id":"t","session_id":"w"  }',
        id="whitespace-and-key-order",
    ),
    pytest.param(
        "user.prompt.submit",
        b'{"session_id":"w","turn_id":"t","prompt":"caf\\u00e9 \xc2\xbd \\ud83d\\ude00 \\/ \\"q\\"",'
        b'"timestamp":"2026-06-07T14:03:21Z"}',
        id="escapes-kept-as-written",
    ),
    pytest.param(
        "skill.load",
        b'{"session_id":"w","turn_id":"t","skill_name":"rust","timestamp":"2026-06-07T14:03:21Z",'
        b'"future_field":{"nested":[1,2,{"x":null}]},"flag":true}',
        id="unknown-keys-kept",
    ),
    pytest.param(
        "tool.call",
        b'{"session_id":"w","turn_id":"t","name":"n","timestamp":"2026-06-07T14:03:21Z",'
        b'"input":{"a":1e16,"b":1.0,"c":-0.0,"d":1E+2,"e":12345678901234567890123,"f":0.10}}',
        id="number-spellings-kept",
    ),
    pytest.param(
        "tool.any_call",
        b'{"session_id":"w","turn_id":"t","name":"n","tool_call_id":"c","input":"plain text",'
        b'"timestamp":"2026-06-07T14:03:21Z"}',
        id="tool-input-a-string",
    ),
    pytest.param(
        "session.stop",
        b'{"session_id":"w","success":true,"result":"r","timestamp":"2026-06-07T14:03:21Z",'
        b'"usage":{"latency":1,"input_tokens":2,"output_tokens":3,"cache_write_tokens":0,"cache_read_tokens":0}}',
        id="mixed-generations-optional-fields-absent",
    ),
]


@pytest.mark.parametrize(("method", "params"), EXACT_PARAMS)
async def test_params_are_stored_exactly_as_received_whatever_their_spelling(
    sqlite_wire: Wire, db: Path, method: str, params: bytes
) -> None:
    await sqlite_wire.send(stored_form(method, params))
    (event,) = await sqlite_wire.result("storage.get_session", {"session_id": "w"})
    assert event == {"jsonrpc": "2.0", "method": method, "params": json.loads(params)}
    assert payloads(db) == [stored_form(method, params)]


async def test_a_spaced_and_reordered_envelope_is_stored_compactly_around_the_exact_params(
    sqlite_wire: Wire, db: Path
) -> None:
    params = b'{"session_id" : "w", "turn_id":"t",  "prompt":"hi","timestamp":"2026-06-07T14:03:21Z"}'
    raw = b'{ "params" :  ' + params + b' ,\t"id" : 5, "method" : "user.prompt.submit", "jsonrpc" : "2.0" } '
    assert result_of(await sqlite_wire.answer(raw), 5) == {"session_id": "w", "seq": 1}
    assert payloads(db) == [stored_form("user.prompt.submit", params)]


# --- a line already in its stored form takes a shorter path, with the same outcome ----------------------


def variants(vector: bytes) -> list[bytes]:
    """A vector in stored form and lines near it: valid, invalid, or not quite that form."""
    message = json.loads(vector)
    method, params = message["method"], params_text(vector)
    head = b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":'
    no_session = {key: value for key, value in message["params"].items() if key != "session_id"}
    return [
        vector,
        vector + b"\r",
        stored_form(method, line(no_session)),  # invalid params
        stored_form(method, line({**message["params"], "timestamp": "yesterday"})),
        stored_form(method, line({**message["params"], "session_id": 7})),
        stored_form(method, params[:-1] + b',"extra":{"kept":[1,2]}}'),  # unknown key: valid
        stored_form(method, params[:-1] + b',"broken":}'),  # not JSON
        stored_form(method, params[:-1] + b',"bad":"\xff"}'),  # not UTF-8
        stored_form(method, b"{}"),
        stored_form(method, b"[]"),
        head + params + b',"params":' + params + b"}",  # a key twice
        head + params + b',"params":{}}',
        head + params + b"} ",
        head + params + b" }",
        head + params + b',"id":1}',
        head + params + b',"id":null}',
        head + params + b',"id":{}}',
        head + params + b',"jsonrpc":"1.0"}',
        head + b" " + params + b"}",
        stored_form(method + ".x", params),  # unknown method
        stored_form(method.replace(".", "\\u002e"), params),  # the method spelled with an escape
        b'{"jsonrpc":"2.0","method":"' + method.encode() + b'"}',
        b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":null}',
        b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":{}',  # truncated
        b'{"method":"' + method.encode() + b'","jsonrpc":"2.0","params":' + params + b"}",
    ]


VARIANTS = [variant for vector in vectors() for variant in variants(vector)]


async def outcome(wire: Wire, lines: list[bytes]) -> tuple[object, ...]:
    """Everything the daemon would write, store and count for these lines, one at a time."""
    return await settled(wire, [await resolve(wire.core.dispatcher.handle_line(line)) for line in lines])


async def settled(wire: Wire, answers: list[bytes | None]) -> tuple[object, ...]:
    """The lines written (of these answers), stored, quarantined and counted, once all is stored."""
    async with asyncio.timeout(WAIT_S):
        await wire.core.ingest.drain()
        page = await wire.store.events_after(0, 1_000_000)
    stats = wire.handlers.stats
    return (
        [answer for answer in answers if answer is not None],
        page.events,
        await wire.quarantine(),
        (stats.received, stats.rejected, stats.errors),
    )


async def test_lines_of_every_generation_are_answered_stored_and_rejected_alike_on_either_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(MemoryStore()) as fast, running(MemoryStore()) as general:
        shortcuts = []
        shorter = fast.core.dispatcher.queue_notifications

        def spied(lines: list[bytes], start: int = 0) -> int:
            shortcuts.append(shorter(lines, start))
            return shortcuts[-1]

        monkeypatch.setattr(fast.core.dispatcher, "queue_notifications", spied)
        monkeypatch.setattr(general.core.dispatcher, "queue_notifications", lambda lines, start=0: 0)
        assert await outcome(fast, VARIANTS) == await outcome(general, VARIANTS)
    assert shortcuts.count(1) >= 2 * len(vectors())  # each vector, and with an unknown key


async def test_lines_read_together_are_answered_stored_and_rejected_as_one_at_a_time() -> None:
    async with running(MemoryStore()) as together, running(MemoryStore()) as alone:
        answers = [await resolve(reply) for reply in together.core.dispatcher.replies(VARIANTS)]
        assert await settled(together, answers) == await outcome(alone, VARIANTS)


async def test_a_chunk_of_runs_and_every_other_kind_of_line_is_handled_as_line_by_line() -> None:
    first, second, third, fourth, fifth, *_ = vectors()
    session_id = json.loads(first)["params"]["session_id"]
    get = line(rpc("storage.get_session", {"session_id": session_id}, 1))
    chunk: list[bytes | Oversize] = [
        first,
        second + b"\r",
        get,
        third,
        b"\xff" + fourth,
        Oversize(5_000, b"x" * 100),
        fourth,
        b"[" + fifth + b"," + get + b"]",
        b"  ",
        b"",
        fifth[:-2] + b',"x":1e400}}',
        line(rpc("storage.unknown", None, 2)),
        fifth,
    ]
    async with running(MemoryStore()) as together, running(MemoryStore()) as alone:
        answers = [await resolve(reply) for reply in together.core.dispatcher.replies(chunk)]
        one_at_a_time = [await resolve(alone.core.dispatcher.handle_line(each)) for each in chunk]
        assert await settled(together, answers) == await settled(alone, one_at_a_time)
    assert len([answer for answer in answers if answer is not None]) == 5  # requests, and lines no message


async def test_events_validated_before_a_run_fails_unexpectedly_are_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing already received is lost, even to an exception no one expected."""
    calls = 0

    def failing_third(method: str, params: bytes) -> tuple[object, int]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise MemoryError
        return decode_event(method, params)

    monkeypatch.setattr("sidecar.dispatch.decode_event", failing_third)
    async with running(MemoryStore()) as wire:
        with pytest.raises(MemoryError):
            wire.core.dispatcher.queue_notifications(vectors()[:5])
        async with asyncio.timeout(WAIT_S):
            await wire.core.ingest.drain()
        page = await wire.store.events_after(0, 100)
        assert [event.payload for _, event in page.events] == vectors()[:2]
        assert wire.handlers.stats.received == 2


class CountedLines(Sequence[bytes]):
    """Lines that count how often one is read."""

    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines
        self.reads = 0

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        self.reads += 1
        return self._lines[index]


async def test_each_line_read_together_is_looked_at_a_bounded_number_of_times() -> None:
    """However runs and other lines alternate: a chunk of tiny lines must not cost its
    square."""
    notification = vectors()[0]
    lines = CountedLines([notification, b"not json"] * 2_000)
    async with running(MemoryStore()) as wire:
        answers = list(wire.core.dispatcher.replies(lines))
    assert len(answers) == 2_000  # each line that is not a message is answered
    assert lines.reads <= 3 * len(lines)


async def test_a_line_in_stored_form_is_stored_as_the_very_line(sqlite_wire: Wire, db: Path) -> None:
    await sqlite_wire.send(*vectors())
    await sqlite_wire.result("storage.flush")
    assert payloads(db) == vectors()
