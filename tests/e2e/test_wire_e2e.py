"""The wire contract end to end: the real daemon over pipes, every answer checked strictly.

Covers the JSON-RPC error codes, batches, notifications (never answered, quarantined when
bad), event acknowledgements, storage requests, byte-exact storage, transports and ordering.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon
from events import USAGE_TOKENS, init, line, notification, prompt, stop, vectors

EVENT_METHODS = {
    "session.init",
    "session.stop",
    "session.fork",
    "user.prompt.submit",
    "stream.delta",
    "tool.call",
    "tool.any_call",
    "tool.result",
    "skill.load",
    "assistant.response",
    "assistant.task",
}
STORAGE_METHODS = {
    "storage.get_session",
    "storage.flush",
    "storage.info",
    "storage.stats",
    "storage.shutdown",
}
T = "2026-06-07T14:03:21Z"


# --- builders and checks ---------------------------------------------------------------------


def ts(second: int) -> str:
    return f"2026-03-01T10:00:{second:02d}Z"


def delta(session_id: str, timestamp: str, text: str = "Hel", kind: str = "Text") -> dict[str, Any]:
    return notification(
        "stream.delta", session_id=session_id, turn_id="t1", delta=text, delta_type=kind, timestamp=timestamp
    )


def tool_call(session_id: str, timestamp: str, method: str = "tool.call", **input: Any) -> dict[str, Any]:
    return notification(
        method,
        session_id=session_id,
        turn_id="t1",
        name="read",
        input=input,
        tool_call_id="c1",
        timestamp=timestamp,
    )


def tool_result(session_id: str, timestamp: str, result: Any = None) -> dict[str, Any]:
    return notification(
        "tool.result",
        session_id=session_id,
        turn_id="t1",
        result={"Ok": "done"} if result is None else result,
        tool_call_id="c1",
        timestamp=timestamp,
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


def answer(session_id: str, timestamp: str) -> dict[str, Any]:
    return notification(
        "assistant.response",
        session_id=session_id,
        turn_id="t1",
        content=[{"text": "ok"}],
        timestamp=timestamp,
    )


def changed(message: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {**message, "params": {**message["params"], **params}}


def without(message: dict[str, Any], key: str) -> dict[str, Any]:
    return {**message, "params": {k: v for k, v in message["params"].items() if k != key}}


def as_request(message: dict[str, Any], request_id: Any) -> dict[str, Any]:
    return {**message, "id": request_id}


def rpc(method: str, params: Any = None, request_id: Any = "r") -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def error_of(reply: Any, code: int, request_id: Any) -> dict[str, Any]:
    """The error object of `reply`, after checking it is a proper error response."""
    assert isinstance(reply, dict), reply
    assert set(reply) == {"jsonrpc", "id", "error"}, reply
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == request_id and type(reply["id"]) is type(request_id), reply
    error = reply["error"]
    assert error["code"] == code, reply
    assert isinstance(error["message"], str) and error["message"], reply
    assert isinstance(error.get("data", {}), dict), reply
    return error


def result_of(reply: Any, request_id: Any) -> Any:
    assert isinstance(reply, dict), reply
    assert set(reply) == {"jsonrpc", "id", "result"}, reply
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == request_id and type(reply["id"]) is type(request_id), reply
    return reply["result"]


_fences = itertools.count(1)


def fence(daemon: Daemon) -> None:
    """Prove nothing was written for what came before: the next line is this request's answer."""
    request_id = f"fence-{next(_fences)}"
    daemon.send(rpc("storage.info", request_id=request_id))
    assert result_of(daemon.read_line(), request_id)["name"] == "microagents-sidecar"
    assert daemon.no_output()


def stdout_ends(daemon: Daemon) -> None:
    with pytest.raises(AssertionError, match="stdout closed"):
        daemon.read_line(timeout=5)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db)
    connection.text_factory = bytes
    try:
        return list(connection.execute(sql))
    finally:
        connection.close()


def payloads(db: Path) -> list[bytes]:
    return [row[0] for row in query(db, "SELECT payload FROM events ORDER BY id")]


def quarantine(db: Path) -> list[tuple[bytes, str]]:
    return [
        (bytes(line_), reason.decode()) for line_, reason in query(db, "SELECT line, reason FROM quarantine")
    ]


def stored_form(method: str, params: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":' + params + b"}"


def params_text(vector: bytes) -> bytes:
    """The bytes of `params` in a compact vector line whose last key is `params`."""
    head, _, rest = vector.partition(b',"params":')
    assert rest.endswith(b"}") and head.startswith(b"{")
    params = rest[:-1]
    json.loads(params)
    return params


# --- 1. every error code, with the right id -----------------------------------------------------

NOT_JSON = [
    pytest.param(b"not json", id="words"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"storage.info"} x', id="trailing-garbage"),
    pytest.param(b"\xff\xfe\xfd", id="invalid-utf8"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"storage.\xc3"}', id="invalid-utf8-in-a-request"),
    pytest.param(b"[1,2", id="truncated-batch"),
]


@pytest.mark.parametrize("raw", NOT_JSON)
def test_a_line_that_is_not_json_is_answered_parse_error_with_null_id_and_quarantined(
    db: Path, raw: bytes
) -> None:
    with Daemon(db) as daemon:
        daemon.send_raw(raw + b"\n")
        error_of(daemon.read_line(), -32700, None)
        fence(daemon)
        assert daemon.close() == 0
    assert [line_ for line_, _ in quarantine(db)] == [raw]


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
]


@pytest.mark.parametrize(("raw", "request_id"), NOT_A_REQUEST)
def test_a_value_that_is_not_a_jsonrpc_message_is_answered_invalid_request_and_quarantined(
    db: Path, raw: bytes, request_id: Any
) -> None:
    with Daemon(db) as daemon:
        daemon.send_raw(raw + b"\n")
        error_of(daemon.read_line(), -32600, request_id)
        fence(daemon)
        assert daemon.close() == 0
    assert [line_ for line_, _ in quarantine(db)] == [raw]


@pytest.mark.parametrize("request_id", ["abc", "", 7, 1.5, None], ids=repr)
def test_an_unknown_method_in_a_request_is_answered_method_not_found_with_the_same_id(
    daemon: Daemon, request_id: Any
) -> None:
    daemon.send(rpc("storage.frobnicate", {"x": 1}, request_id))
    error = error_of(daemon.read_line(), -32601, request_id)
    assert "storage.frobnicate" in json.dumps(error)
    fence(daemon)


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
def test_an_invalid_event_sent_as_a_request_is_answered_invalid_params_naming_the_field(
    daemon: Daemon, event: dict[str, Any], field: str
) -> None:
    daemon.send(as_request(event, 41))
    error = error_of(daemon.read_line(), -32602, 41)
    assert error["data"]["field"] == field
    assert isinstance(error["data"]["reason"], str) and error["data"]["reason"]
    assert daemon.result("storage.stats")["persisted"] == 0


INVALID_GET_SESSION = [
    pytest.param({}, "session_id", id="session_id-missing"),
    pytest.param({"session_id": 5}, "session_id", id="session_id-a-number"),
    pytest.param({"session_id": "s", "last": 0}, "last", id="last-0"),
    pytest.param({"sesion_id": "s"}, "sesion_id", id="unknown-key"),
    pytest.param({"session_id": "s", "after": "yesterday"}, "after", id="after-not-a-timestamp"),
    pytest.param({"session_id": "s", "methods": ["tool*"]}, "methods[0]", id="methods-bad-pattern"),
    pytest.param(["a", "b"], "params", id="two-element-array"),
    pytest.param("s", "params", id="params-a-string"),
]


@pytest.mark.parametrize(("params", "field"), INVALID_GET_SESSION)
def test_get_session_with_invalid_params_is_answered_invalid_params_naming_the_field(
    daemon: Daemon, params: Any, field: str
) -> None:
    daemon.send(rpc("storage.get_session", params, "g"))
    assert error_of(daemon.read_line(), -32602, "g")["data"]["field"] == field
    fence(daemon)


def test_a_storage_method_without_params_rejects_unknown_params(daemon: Daemon) -> None:
    daemon.send(rpc("storage.flush", {"everything": True}, 9))
    assert error_of(daemon.read_line(), -32602, 9)["data"]["field"] == "everything"


@pytest.mark.parametrize("over", [1, 300_000], ids=["one-byte-over", "over-many-chunks"])
def test_a_line_over_the_maximum_is_answered_message_too_large_with_null_id_and_the_daemon_goes_on(
    db: Path, over: int
) -> None:
    with Daemon(db, "--max-line-bytes", "1000") as daemon:
        base = line(as_request(prompt("big", T, text=""), "big"))
        big = line(as_request(prompt("big", T, text="x" * (1000 - len(base) + over)), "big"))
        assert len(big) == 1000 + over
        daemon.send_raw(big + b"\n")
        error_of(daemon.read_line(), -32003, None)
        fence(daemon)
        ack = daemon.request("user.prompt.submit", prompt("small", T)["params"], id="small")
        assert result_of(ack, "small") == {"session_id": "small", "seq": 1}
        assert daemon.result("storage.get_session", {"session_id": "big"}) == []
        assert daemon.close() == 0


def test_a_line_exactly_at_the_maximum_is_accepted(db: Path) -> None:
    with Daemon(db, "--max-line-bytes", "1000") as daemon:
        base = line(as_request(prompt("edge", T, text=""), "edge"))
        edge = line(as_request(prompt("edge", T, text="x" * (1000 - len(base))), "edge"))
        assert len(edge) == 1000
        daemon.send_raw(edge + b"\n")
        assert result_of(daemon.read_line(), "edge") == {"session_id": "edge", "seq": 1}


def test_an_event_the_store_cannot_take_is_answered_storage_unavailable_and_stored_after_recovery(
    db: Path,
) -> None:
    with Daemon(db) as daemon:
        daemon.send(init("s"))
        assert daemon.result("storage.flush") == {"seq": 1}
        other = sqlite3.connect(db, isolation_level=None)
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
        )
        daemon.send(as_request(prompt("s", T), "p"))
        error = error_of(daemon.read_line(), -32001, "p")
        assert "disk is full" in error["data"]["reason"]
        error_of(daemon.request("storage.flush", id="f"), -32001, "f")
        error_of(daemon.request("storage.get_session", {"session_id": "s"}, id="g"), -32001, "g")
        other.execute("DROP TRIGGER refuse")
        other.close()
        assert daemon.close() == 0
    assert len(payloads(db)) == 2


# --- 2. batches -------------------------------------------------------------------------------


def test_an_empty_batch_is_answered_with_one_invalid_request_object_not_an_array(daemon: Daemon) -> None:
    daemon.send_raw(b"[]\n")
    error_of(daemon.read_line(), -32600, None)
    fence(daemon)


def test_a_batch_of_requests_is_answered_with_one_array_of_responses_matching_every_id(
    daemon: Daemon,
) -> None:
    daemon.send(
        [
            rpc("storage.info", request_id=1),
            rpc("storage.flush", request_id="two"),
            rpc("no.such.method", request_id=3),
            rpc("storage.get_session", {"session_id": "none"}, request_id=None),
        ]
    )
    batch = daemon.read_line()
    assert isinstance(batch, list) and len(batch) == 4
    by_id = {json.dumps(reply["id"]): reply for reply in batch}
    assert result_of(by_id["1"], 1)["backend"] == "sqlite"
    assert result_of(by_id['"two"'], "two") == {"seq": 0}
    error_of(by_id["3"], -32601, 3)
    assert result_of(by_id["null"], None) == []
    fence(daemon)


def test_a_batch_mixing_notifications_and_requests_answers_only_the_requests(daemon: Daemon) -> None:
    daemon.send(
        [
            init("b"),
            prompt("b", "2026-06-07T14:03:22Z"),
            rpc("storage.get_session", {"session_id": "b"}, "read"),
            {"jsonrpc": "2.0", "method": "no.such.method"},
            rpc("storage.stats", request_id="stats"),
        ]
    )
    batch = daemon.read_line()
    assert isinstance(batch, list) and sorted(reply["id"] for reply in batch) == ["read", "stats"]
    read, stats = sorted(batch, key=lambda reply: reply["id"])
    assert result_of(read, "read") == [init("b"), prompt("b", "2026-06-07T14:03:22Z")]
    assert result_of(stats, "stats")["rejected"] == 1
    fence(daemon)


def test_a_batch_of_only_notifications_writes_nothing_and_stores_every_event(daemon: Daemon) -> None:
    daemon.send([init("n"), prompt("n", "2026-06-07T14:03:22Z"), stop("n", "2026-06-07T14:03:23Z")])
    fence(daemon)
    events = daemon.result("storage.get_session", {"session_id": "n"})
    assert [e["method"] for e in events] == ["session.init", "user.prompt.submit", "session.stop"]


@pytest.mark.parametrize("raw", [b"[1,2,3]", b'["x",null,{},[]]', b" [ 1 , true ] "])
def test_a_batch_of_garbage_elements_is_answered_with_an_invalid_request_per_element(
    daemon: Daemon, raw: bytes
) -> None:
    daemon.send_raw(raw + b"\n")
    batch = daemon.read_line()
    assert isinstance(batch, list) and len(batch) == len(json.loads(raw))
    for reply in batch:
        error_of(reply, -32600, None)
    fence(daemon)


def test_events_sent_as_requests_inside_a_batch_are_answered_with_session_and_seq_in_the_array(
    daemon: Daemon,
) -> None:
    daemon.send(
        [
            as_request(init("e"), 1),
            as_request(prompt("e", "2026-06-07T14:03:22Z"), 2),
            as_request(without(prompt("e", T), "turn_id"), 3),
            7,
            rpc("storage.info", request_id=4),
        ]
    )
    batch = daemon.read_line()
    assert isinstance(batch, list) and len(batch) == 5
    by_id = {json.dumps(reply["id"]): reply for reply in batch}
    assert result_of(by_id["1"], 1) == {"session_id": "e", "seq": 1}
    assert result_of(by_id["2"], 2) == {"session_id": "e", "seq": 2}
    assert error_of(by_id["3"], -32602, 3)["data"]["field"] == "turn_id"
    error_of(by_id["null"], -32600, None)
    assert result_of(by_id["4"], 4)["backend"] == "sqlite"
    fence(daemon)


# --- 3 and 4. notifications are never answered; garbage and response objects ---------------------

BAD_NOTIFICATIONS = [
    pytest.param(line(without(init("q"), "model")), "model", id="event-missing-field"),
    pytest.param(line(changed(prompt("q", T), timestamp="2026-13-01T00:00:00Z")), "timestamp", id="bad-time"),
    pytest.param(b'{"jsonrpc":"2.0","method":"session.init"}', "params", id="event-without-params"),
    pytest.param(b'{"jsonrpc":"2.0","method":"agent.dance","params":{}}', "agent.dance", id="unknown-method"),
    pytest.param(b'{"jsonrpc":"2.0","method":"storage.get_session","params":{}}', "session_id", id="storage"),
]


@pytest.mark.parametrize(("raw", "hint"), BAD_NOTIFICATIONS)
def test_an_invalid_notification_is_not_answered_but_quarantined_with_the_raw_line_and_a_reason(
    db: Path, raw: bytes, hint: str
) -> None:
    with Daemon(db) as daemon:
        daemon.send(init("q"))
        daemon.send_raw(raw + b"\n")
        daemon.send(prompt("q", "2026-06-07T14:03:22Z"))
        fence(daemon)
        stats = daemon.result("storage.stats")
        assert (stats["rejected"], stats["errors"], stats["persisted"]) == (1, 0, 2)
        assert daemon.close() == 0
    ((kept, reason),) = quarantine(db)
    assert kept == raw
    assert hint in reason
    assert len(payloads(db)) == 2


def test_a_valid_storage_request_sent_as_a_notification_is_not_answered(daemon: Daemon) -> None:
    daemon.send(
        {"jsonrpc": "2.0", "method": "storage.get_session", "params": {"session_id": "s"}},
        {"jsonrpc": "2.0", "method": "storage.info"},
        {"jsonrpc": "2.0", "method": "storage.stats"},
    )
    fence(daemon)
    stats = daemon.result("storage.stats")
    assert (stats["rejected"], stats["errors"]) == (0, 0)


def test_a_request_after_garbage_lines_is_still_answered(daemon: Daemon) -> None:
    garbage = [b"{", b"\xc0\xaf", b"42", b"[]", b'{"jsonrpc":"2.0"}', b"}}}}", b"nul"]
    daemon.send_raw(b"\n".join(garbage) + b"\n")
    daemon.send(rpc("storage.get_session", ["nobody"], "after-garbage"))
    for _ in garbage:
        reply = daemon.read_line()
        assert reply["id"] is None and reply["error"]["code"] in (-32700, -32600)
    assert result_of(daemon.read_line(), "after-garbage") == []
    assert daemon.result("storage.stats")["errors"] == len(garbage)


RESPONSE_OBJECTS = [
    pytest.param(
        b'{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Internal Server Error","data":"x"}}',
        id="error-response",
    ),
    pytest.param(b'{"jsonrpc":"2.0","id":"a","result":{"ok":true}}', id="result-response"),
]


@pytest.mark.parametrize("raw", RESPONSE_OBJECTS)
def test_a_response_object_on_stdin_is_ignored_not_answered_not_quarantined_not_counted_as_error(
    db: Path, raw: bytes
) -> None:
    with Daemon(db) as daemon:
        daemon.send_raw(raw + b"\n")
        fence(daemon)
        stats = daemon.result("storage.stats")
        assert (stats["rejected"], stats["errors"], stats["persisted"]) == (0, 0, 0)
        assert daemon.close() == 0
    assert quarantine(db) == []


# --- 5. acknowledged events and storage.get_session -----------------------------------------------


def test_events_sent_as_requests_are_answered_with_session_and_increasing_seq(daemon: Daemon) -> None:
    sent = [
        as_request(init("a"), "i"),
        as_request(prompt("a", "2026-06-07T14:03:22Z"), 2),
        as_request(init("b"), 3.5),
        as_request(tool_call("a", "2026-06-07T14:03:23Z", path="x"), None),
    ]
    daemon.send(*sent)
    acks = [daemon.response(message["id"]) for message in sent]
    results = [result_of(ack, message["id"]) for ack, message in zip(acks, sent, strict=True)]
    assert results == [
        {"session_id": "a", "seq": 1},
        {"session_id": "a", "seq": 2},
        {"session_id": "b", "seq": 3},
        {"session_id": "a", "seq": 4},
    ]
    daemon.send(prompt("b", "2026-06-07T14:03:24Z"))
    assert daemon.result("storage.flush") == {"seq": 5}


def test_get_session_right_after_notifications_sees_every_one_of_them(daemon: Daemon) -> None:
    sent = [prompt("rw", f"2026-06-07T14:03:21.{i:09d}Z", text=str(i)) for i in range(300)]
    daemon.send(*sent, rpc("storage.get_session", {"session_id": "rw"}, "read"))
    assert result_of(daemon.read_line(), "read") == sent
    assert daemon.result("storage.flush") == {"seq": 300}


SESSION = [
    init("f", ts(0)),
    prompt("f", ts(1)),
    tool_call("f", ts(2), path="a"),
    tool_result("f", ts(3)),
    tool_call("f", ts(4), method="tool.any_call", path="b"),
    answer("f", ts(5)),
    stop("f", ts(6)),
]
GET_SESSION_CASES = [
    pytest.param({"session_id": "f"}, [0, 1, 2, 3, 4, 5, 6], id="all"),
    pytest.param(["f"], [0, 1, 2, 3, 4, 5, 6], id="one-element-array"),
    pytest.param({"session_id": "f", "last": 2}, [5, 6], id="last-2"),
    pytest.param({"session_id": "f", "after": ts(3)}, [4, 5, 6], id="after-is-strict"),
    pytest.param({"session_id": "f", "after": "2026-03-01T12:00:03+02:00"}, [4, 5, 6], id="after-an-offset"),
    pytest.param({"session_id": "f", "after": "2026-03-01T10:00:02.999999999Z"}, [3, 4, 5, 6], id="after-ns"),
    pytest.param({"session_id": "f", "methods": ["tool.result"]}, [3], id="methods-exact"),
    pytest.param({"session_id": "f", "methods": ["tool.*"]}, [2, 3, 4], id="methods-pattern"),
    pytest.param({"session_id": "f", "methods": ["session.*", "tool.result"]}, [0, 3, 6], id="methods-mixed"),
    pytest.param({"session_id": "f", "methods": ["tool.*"], "last": 2}, [3, 4], id="methods-then-last"),
    pytest.param(
        {"session_id": "f", "after": ts(1), "methods": ["tool.*", "assistant.response"], "last": 2},
        [4, 5],
        id="after-then-methods-then-last",
    ),
    pytest.param({"session_id": "nobody"}, [], id="unknown-session"),
]


@pytest.mark.parametrize(("params", "expected"), GET_SESSION_CASES)
def test_get_session_filters_by_after_then_methods_then_last(
    daemon: Daemon, params: Any, expected: list[int]
) -> None:
    daemon.send(*SESSION, init("other", ts(3)), prompt("other", ts(4)))
    assert daemon.result("storage.get_session", params) == [SESSION[i] for i in expected]


# --- 6. storage.info and storage.stats --------------------------------------------------------------


def test_storage_info_names_the_daemon_its_store_and_every_method(daemon: Daemon, db: Path) -> None:
    info = daemon.result("storage.info")
    assert info["name"] == "microagents-sidecar"
    assert info["version"] == version("microagents-sidecar")
    assert {"0.1", "0.2", "0.3A", "0.3B", "0.4"} <= set(info["protocol_versions"])
    assert info["backend"] == "sqlite"
    assert info["location"] == str(db)
    assert set(info["methods"]) >= EVENT_METHODS | STORAGE_METHODS
    assert len(info["methods"]) == len(set(info["methods"]))


def test_every_method_storage_info_advertises_is_known_to_the_daemon(daemon: Daemon) -> None:
    for method in daemon.result("storage.info")["methods"]:
        if method == "storage.shutdown":
            continue
        reply = daemon.request(method, {"no_such_param": 1}, id=method)
        assert error_of(reply, -32602, method)["data"]["field"], reply


def test_storage_stats_counts_what_the_daemon_received_stored_rejected_and_answered(daemon: Daemon) -> None:
    daemon.send(init("a"), prompt("a", "2026-06-07T14:03:22Z"), init("b"))
    daemon.send_raw(b'{"jsonrpc":"2.0","method":"session.init","params":{}}\n')
    error_of(daemon.request("no.such.method", id="x"), -32601, "x")
    stats = daemon.result("storage.stats")
    assert set(stats) == {
        "received",
        "persisted",
        "rejected",
        "errors",
        "sessions",
        "queue_depth",
        "commits",
        "uptime_s",
    }
    assert stats["persisted"] == 3
    assert stats["rejected"] == 1
    assert stats["errors"] == 1
    assert stats["sessions"] == 2
    assert stats["queue_depth"] == 0
    assert 1 <= stats["commits"] <= 4
    assert 5 <= stats["received"] <= 6  # five messages before it, and perhaps this request
    assert isinstance(stats["uptime_s"], int | float) and 0 <= stats["uptime_s"] < 60
    later = daemon.result("storage.stats")
    assert later["uptime_s"] >= stats["uptime_s"]
    assert later["received"] == stats["received"] + 1


# --- 7. byte-for-byte storage ---------------------------------------------------------------------


def test_every_shared_vector_is_accepted_and_stored_byte_for_byte(db: Path) -> None:
    messages = [json.loads(vector) for vector in vectors()]
    with Daemon(db) as daemon:
        for seq, (vector, message) in enumerate(zip(vectors(), messages, strict=True), start=1):
            daemon.send_raw(vector[:-1] + b',"id":' + str(seq).encode() + b"}\n")
            ack = result_of(daemon.response(seq), seq)
            assert ack == {"session_id": message["params"]["session_id"], "seq": seq}
        for session in dict.fromkeys(m["params"]["session_id"] for m in messages):
            stored = daemon.result("storage.get_session", {"session_id": session})
            assert sorted(map(json.dumps, stored)) == sorted(
                json.dumps(m) for m in messages if m["params"]["session_id"] == session
            )
        assert daemon.close() == 0
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
def test_params_are_stored_exactly_as_received_whatever_their_spelling(
    db: Path, method: str, params: bytes
) -> None:
    raw = stored_form(method, params)
    with Daemon(db) as daemon:
        daemon.send_raw(raw + b"\n")
        (event,) = daemon.result("storage.get_session", {"session_id": "w"})
        assert event == {"jsonrpc": "2.0", "method": method, "params": json.loads(params)}
        assert daemon.close() == 0
    assert payloads(db) == [stored_form(method, params)]


def test_a_spaced_and_reordered_envelope_is_stored_compactly_around_the_exact_params(db: Path) -> None:
    params = b'{"session_id" : "w", "turn_id":"t",  "prompt":"hi","timestamp":"2026-06-07T14:03:21Z"}'
    raw = b'{ "params" :  ' + params + b' ,\t"id" : 5, "method" : "user.prompt.submit", "jsonrpc" : "2.0" } '
    with Daemon(db) as daemon:
        daemon.send_raw(raw + b"\n")
        assert result_of(daemon.read_line(), 5) == {"session_id": "w", "seq": 1}
        assert daemon.close() == 0
    assert payloads(db) == [stored_form("user.prompt.submit", params)]


# --- 8. transports --------------------------------------------------------------------------------


def test_stdin_as_a_regular_file_is_read_to_the_end_and_every_event_stored(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "events.jsonl"
    request = line(rpc("storage.get_session", {"session_id": "9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21"}, "f"))
    path.write_bytes(b"\n".join(vectors()) + b"\n" + request)  # the last line has no newline
    with path.open("rb") as stdin, Daemon(db, stdin=stdin) as daemon:
        assert len(result_of(daemon.read_line(), "f")) == 8
        assert daemon.wait() == 0
    assert payloads(db) == [stored_form(json.loads(v)["method"], params_text(v)) for v in vectors()]


def test_stdin_from_a_fifo_is_read_until_the_writer_closes_it(tmp_path: Path, db: Path) -> None:
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    write_fd = os.open(fifo, os.O_WRONLY)
    os.set_blocking(read_fd, True)
    with Daemon(db, stdin=read_fd) as daemon:
        os.close(read_fd)
        with os.fdopen(write_fd, "wb") as writer:
            writer.write(line(init("fifo")) + b"\n" + line(rpc("storage.flush", request_id="f")) + b"\n")
            writer.flush()
            assert result_of(daemon.read_line(), "f") == {"seq": 1}
            writer.write(line(prompt("fifo", "2026-06-07T14:03:22Z")) + b"\n")
        assert daemon.wait() == 0
    assert len(payloads(db)) == 2


def test_crlf_line_endings_are_accepted_and_not_stored(daemon: Daemon, db: Path) -> None:
    daemon.send_raw(line(init("crlf")) + b"\r\n" + line(prompt("crlf", "2026-06-07T14:03:22Z")) + b"\r\n")
    daemon.send_raw(line(rpc("storage.get_session", {"session_id": "crlf"}, "c")) + b"\r\n")
    assert result_of(daemon.read_line(), "c") == [init("crlf"), prompt("crlf", "2026-06-07T14:03:22Z")]
    assert daemon.close() == 0
    assert all(not p.endswith(b"\r") and b"\r" not in p for p in payloads(db))


def test_blank_lines_are_ignored_without_an_answer_or_a_count(daemon: Daemon) -> None:
    daemon.send_raw(b"\n\n   \n\t\n\r\n" + line(init("blank")) + b"\n\n \r\n")
    fence(daemon)
    stats = daemon.result("storage.stats")
    assert (stats["persisted"], stats["rejected"], stats["errors"]) == (1, 0, 0)


def test_an_event_on_a_last_line_without_newline_is_stored_at_end_of_input(daemon: Daemon, db: Path) -> None:
    daemon.send_raw(line(init("last")) + b"\n" + line(prompt("last", "2026-06-07T14:03:22Z")))
    assert daemon.close() == 0
    assert len(payloads(db)) == 2


def test_a_request_on_a_last_line_without_newline_is_answered_at_end_of_input(daemon: Daemon) -> None:
    daemon.send_raw(line(init("last")) + b"\n" + line(rpc("storage.flush", request_id="end")))
    assert daemon.process.stdin is not None
    daemon.process.stdin.close()
    assert result_of(daemon.read_line(), "end") == {"seq": 1}
    assert daemon.wait() == 0


def test_a_five_megabyte_line_is_accepted_whole(daemon: Daemon) -> None:
    text = "abcdefghijklmnopqrstuvwxyz" * 200_000
    daemon.send(as_request(tool_result("huge", T, {"Ok": text}), "huge"))
    assert result_of(daemon.response("huge"), "huge") == {"session_id": "huge", "seq": 1}
    (event,) = daemon.result("storage.get_session", {"session_id": "huge"})
    assert event["params"]["result"]["Ok"] == text


def test_a_closed_stdout_does_not_stop_the_daemon_from_storing_every_event(db: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read the daemon's answers
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--db", str(db)],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    requests = [line(as_request(prompt("epipe", f"2026-06-07T14:03:21.{i:09d}Z"), i)) for i in range(200)]
    notifications = [line(prompt("epipe", f"2026-06-07T14:03:22.{i:09d}Z")) for i in range(200)]
    flushes = [line(rpc("storage.flush", request_id=i)) for i in range(10)]
    data = b"\n".join(requests + flushes + notifications + flushes) + b"\n"
    try:
        _, stderr = process.communicate(data, timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stderr.decode().count("stdout") == 1, stderr  # said once, not per response
    assert len(payloads(db)) == 400


# --- 9. flush and shutdown ------------------------------------------------------------------------


def test_storage_flush_as_a_notification_commits_silently(daemon: Daemon, db: Path) -> None:
    daemon.send(*(prompt("fl", f"2026-06-07T14:03:21.{i:09d}Z") for i in range(50)))
    daemon.send({"jsonrpc": "2.0", "method": "storage.flush"})
    fence(daemon)  # storage.info does not wait for commits; the flush before it did
    assert len(payloads(db)) == 50


def test_storage_shutdown_as_a_notification_exits_0_silently_with_every_event_committed(
    daemon: Daemon, db: Path
) -> None:
    daemon.send(*(prompt("sh", f"2026-06-07T14:03:21.{i:09d}Z") for i in range(50)))
    daemon.send({"jsonrpc": "2.0", "method": "storage.shutdown"})
    assert daemon.wait() == 0
    stdout_ends(daemon)
    assert len(payloads(db)) == 50


def test_storage_shutdown_as_a_request_answers_null_and_exits_0(daemon: Daemon, db: Path) -> None:
    daemon.send(init("sh"), rpc("storage.shutdown", request_id=99))
    assert result_of(daemon.read_line(), 99) is None
    assert daemon.wait() == 0
    stdout_ends(daemon)
    assert len(payloads(db)) == 1


# --- 10. ordering and timestamps ------------------------------------------------------------------

ORDERING = [
    pytest.param(
        ["2026-01-01T00:00:03Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"], [1, 2, 0], id="sorted"
    ),
    pytest.param(["2026-01-01T00:00:00Z"] * 3, [0, 1, 2], id="equal-keep-arrival-order"),
    pytest.param(
        ["2026-01-01T00:00:00.000000600Z", "2026-01-01T00:00:00.000000300Z"], [1, 0], id="300ns-apart"
    ),
    pytest.param(
        [
            "2026-01-01T00:00:00.000000900Z",
            "2026-01-01T00:00:00.000000600Z",
            "2026-01-01T00:00:00.000000600Z",
        ],
        [1, 2, 0],
        id="same-microsecond",
    ),
    pytest.param(["2026-01-01T09:00:00Z", "2026-01-01T10:00:00+02:00"], [1, 0], id="positive-offset"),
    pytest.param(["2026-01-01T05:00:00-05:00", "2026-01-01T09:30:00Z"], [1, 0], id="negative-offset"),
    pytest.param(
        ["2026-01-01 00:00:03Z", "2026-01-01t00:00:01z", "2026-01-01T00:00:02Z"], [1, 2, 0], id="separators"
    ),
    pytest.param(
        [
            "2026-01-01T00:00:00.5Z",
            "2026-01-01T00:00:00.123456789Z",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.12Z",
        ],
        [2, 3, 1, 0],
        id="fraction-lengths",
    ),
    pytest.param(["2400-01-01T00:00:00Z", "2300-01-01T00:00:00Z"], [1, 0], id="years-after-2262"),
]


def test_get_session_after_a_far_off_instant_compares_exact_instants(daemon: Daemon) -> None:
    far = ["2400-01-01T00:00:00Z", "1500-01-01T00:00:00Z", "2300-01-01T00:00:00Z"]
    daemon.send(*(prompt("far", stamp, text=str(i)) for i, stamp in enumerate(far)))
    for after, expected in [("2350-01-01T00:00:00Z", ["0"]), ("1400-01-01T00:00:00Z", ["1", "2", "0"])]:
        events = daemon.result("storage.get_session", {"session_id": "far", "after": after})
        assert [e["params"]["prompt"] for e in events] == expected


@pytest.mark.parametrize(("timestamps", "expected"), ORDERING)
def test_get_session_orders_events_by_instant_and_keeps_arrival_order_for_ties(
    daemon: Daemon, timestamps: list[str], expected: list[int]
) -> None:
    daemon.send(*(prompt("o", stamp, text=str(i)) for i, stamp in enumerate(timestamps)))
    events = daemon.result("storage.get_session", {"session_id": "o"})
    assert [int(e["params"]["prompt"]) for e in events] == expected
    assert [e["params"]["timestamp"] for e in events] == [timestamps[i] for i in expected]


INVALID_TIMESTAMPS = [
    "2026-13-01T00:00:00Z",
    "2026-01-01T00:00:00",
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00.1234567890Z",
    "yesterday",
]


@pytest.mark.parametrize("timestamp", INVALID_TIMESTAMPS)
def test_an_event_with_an_invalid_timestamp_is_answered_invalid_params_naming_timestamp(
    daemon: Daemon, timestamp: str
) -> None:
    daemon.send(as_request(prompt("bad", timestamp), "t"))
    assert error_of(daemon.read_line(), -32602, "t")["data"]["field"] == "timestamp"
    assert daemon.result("storage.get_session", {"session_id": "bad"}) == []
