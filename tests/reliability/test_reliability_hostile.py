"""Hostile input, one table: each line gets its expected answer (or none), the daemon stays
up, and the valid traffic after it is stored and served. Cases that end the input get a
daemon of their own and must end it with exit 0.

test_wire_e2e checks single bad lines in detail; this table is about surviving them all.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability import PolledDaemon, SqliteReader, as_request, complete_notification, stored_event

pytestmark = pytest.mark.reliability

DEEP = 100_000
T = "2026-06-07T14:03:21Z"
ANY = object()


@dataclass(frozen=True)
class Reply:
    """One expected response: an error with `code` (naming `field`), or a result."""

    id: Any
    code: int | None = None
    field: str | None = None
    result: Any = ANY


def error(code: int, request_id: Any = None, field: str | None = None) -> Reply:
    return Reply(request_id, code, field)


def ok(request_id: Any, result: Any = ANY) -> Reply:
    return Reply(request_id, result=result)


@dataclass(frozen=True)
class Case:
    data: bytes  # sent as it is; a newline is added unless the case ends the input
    replies: tuple[Reply | tuple[Reply, ...], ...] = ()  # a tuple inside: one batch response
    ends_input: bool = False  # the data is the last thing sent; the daemon must exit 0


def request(method: str, request_id: Any = "h", params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode()


def event(method: str, request_id: Any = "h", **params: Any) -> bytes:
    return request(method, request_id, params)


INFO = b'{"jsonrpc":"2.0","id":"h","method":"storage.info"}'
PROMPT = {"session_id": "hostile", "turn_id": "t", "prompt": "p", "timestamp": T}
USAGE = {"latency": 1, "input_tokens": 1, "output_tokens": 1, "cache_write_tokens": 0, "cache_read_tokens": 0}
# Valid params of every event method; each field is given a wrong type below.
PARAMS: dict[str, dict[str, Any]] = {
    "session.init": {"model": "m", "provider": "p", "system": "s", "init_type": "Start"},
    "session.stop": {"success": True, "result": "r", "error": None, "usage": USAGE, "incomplete_tasks": []},
    "session.fork": {"parent_session_id": "p"},
    "user.prompt.submit": {"turn_id": "t", "prompt": "p"},
    "stream.delta": {"turn_id": "t", "delta": "d", "delta_type": "Text"},
    "tool.call": {"turn_id": "t", "name": "n", "tool_call_id": "c"},
    "tool.any_call": {"turn_id": "t", "name": "n", "tool_call_id": "c"},
    "tool.result": {"turn_id": "t", "result": {"Ok": "x"}, "tool_call_id": "c"},
    "skill.load": {"turn_id": "t", "skill_name": "s"},
    "assistant.response": {"turn_id": "t", "full_text": "f", "tool_calls": None},
    "assistant.task": {"turn_id": "t", "task_name": "n", "task_status": "Done"},
}


def wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "true"
    if isinstance(value, str) or value is None:
        return 7
    if isinstance(value, dict):
        return "x"
    return {"a": 1}  # a list


def wrong_type_cases() -> Iterator[Any]:
    for method, params in PARAMS.items():
        full = {"session_id": "hostile", "timestamp": T, **params}
        for field, value in full.items():
            bad = {**full, field: wrong_type(value)}
            yield pytest.param(
                Case(event(method, **bad), (error(-32602, "h", field),)), id=f"{method}-{field}"
            )


def nested(depth: int, open_: bytes = b"[", close: bytes = b"]", inner: bytes = b"") -> bytes:
    return open_ * depth + inner + close * depth


CASES = [
    # --- not JSON, not UTF-8, stray bytes
    pytest.param(Case(b"not json", (error(-32700),)), id="words"),
    pytest.param(
        Case(b'{"jsonrpc":"2.0","method":"session.init","params":{', (error(-32700),)), id="cut-object"
    ),
    pytest.param(Case(INFO + b" x", (error(-32700),)), id="trailing-garbage"),
    pytest.param(Case(b"\xff\xfe\xfd", (error(-32700),)), id="invalid-utf8"),
    pytest.param(
        Case(event("user.prompt.submit", **PROMPT).replace(b'"p"', b'"\xff"'), (error(-32700),)),
        id="invalid-utf8-in-an-event",
    ),
    pytest.param(Case(INFO[:-1] + b',"x":"\xc0\xaf"}', (error(-32700),)), id="overlong-utf8"),
    pytest.param(Case(INFO[:-1] + b',"x":"\xed\xa0\x80"}', (error(-32700),)), id="utf8-encoded-surrogate"),
    pytest.param(Case(INFO[:-1] + b',"x":"\xe2\x82"}', (error(-32700),)), id="cut-multibyte-character"),
    pytest.param(Case(b"\x00\x00\x00", (error(-32700),)), id="nul-bytes"),
    pytest.param(Case(INFO.replace(b"info", b"info\x00"), (error(-32700),)), id="raw-nul-in-a-string"),
    pytest.param(Case(INFO.replace(b",", b",\x00", 1), (error(-32700),)), id="nul-between-tokens"),
    pytest.param(Case(b"\xef\xbb\xbf" + INFO, (error(-32700),)), id="byte-order-mark"),
    pytest.param(Case(INFO.replace(b",", b",\x0c", 1), (error(-32700),)), id="form-feed-between-tokens"),
    pytest.param(Case(b"\x0b\x0c \t"), id="vertical-tab-and-form-feed-only"),
    pytest.param(Case(b"\r"), id="lone-cr"),
    pytest.param(Case(INFO.replace(b",", b",\r", 1), (ok("h"),)), id="cr-between-tokens"),
    pytest.param(Case(INFO + b"\r\r", (ok("h"),)), id="two-crs-at-the-end"),
    pytest.param(Case(b"\n" * 1_000_000), id="a-million-blank-lines"),
    pytest.param(Case(b"\n".join([b"{"] * 2000), (error(-32700),) * 2000), id="two-thousand-garbage-lines"),
    pytest.param(
        Case(event("user.prompt.submit", **{**PROMPT, "prompt": "x" * (100 << 20)}), (error(-32003),)),
        id="a-100-megabyte-line",
    ),
    # --- strings the store must keep as they are
    pytest.param(
        Case(event("user.prompt.submit", **{**PROMPT, "prompt": "a\x00b"}), (ok("h"),)), id="escaped-nul"
    ),
    pytest.param(
        Case(event("user.prompt.submit", **{**PROMPT, "session_id": "../../etc/passwd\x00\n"}), (ok("h"),)),
        id="path-and-nul-in-session-id",
    ),
    pytest.param(
        Case(
            event("user.prompt.submit", **{**PROMPT, "session_id": "s" * 1_000_000}),
            (error(-32602, "h", "session_id"),),  # longer than any backend can index
        ),
        id="megabyte-session-id",
    ),
    pytest.param(
        Case(
            event("user.prompt.submit", **PROMPT).replace(b'"p"', b'"\\ud800"'),
            (error(-32700),),  # as serde_json, a lone surrogate is not accepted
        ),
        id="lone-surrogate-escape",
    ),
    pytest.param(
        Case(event("user.prompt.submit", **PROMPT).replace(b'"prompt"', b'"\\u0070rompt"'), (ok("h"),)),
        id="escaped-key",
    ),
    # --- nesting
    pytest.param(Case(nested(DEEP), (error(-32700),)), id="100k-nested-arrays"),
    pytest.param(Case(nested(DEEP, b'{"a":', b"}", b"1"), (error(-32700),)), id="100k-nested-objects"),
    pytest.param(Case(b"[" * DEEP, (error(-32700),)), id="100k-unclosed-arrays"),
    pytest.param(
        Case(
            event("tool.call", **PARAMS["tool.call"], session_id="s", timestamp=T, input=0).replace(
                b'"input":0', b'"input":' + nested(DEEP)
            ),
            (error(-32700),),
        ),
        id="100k-nested-tool-input",
    ),
    pytest.param(
        Case(b"[" + nested(DEEP, b'{"a":', b"}", b"1") + b"]", (error(-32700),)),
        id="100k-nested-batch-element",
    ),
    pytest.param(
        Case(
            event("tool.call", **PARAMS["tool.call"], session_id="s", timestamp=T, input=nested(64).decode()),
            (ok("h"),),
        ),
        id="deep-but-fine-string",
    ),
    # --- numbers
    pytest.param(Case(INFO.replace(b'"h"', b"1e400"), (error(-32600),)), id="id-1e400"),
    pytest.param(
        Case(INFO.replace(b'"h"', b"123456789012345678901234567890"), (ok(123456789012345678901234567890),)),
        id="id-30-digits",
    ),
    pytest.param(Case(INFO.replace(b'"h"', b"9" * 5000), (error(-32600),)), id="id-5000-digits"),
    pytest.param(Case(INFO.replace(b'"h"', b"-0.0"), (ok(-0.0),)), id="id-minus-zero"),
    pytest.param(
        Case(
            event("session.stop", **PARAMS["session.stop"], session_id="s", timestamp=T).replace(
                b'"latency":1', b'"latency":1e400'
            ),
            (error(-32602, "h", "usage.latency"),),
        ),
        id="latency-1e400",
    ),
    pytest.param(
        Case(
            event("session.stop", **PARAMS["session.stop"], session_id="s", timestamp=T).replace(
                b'"latency":1', b'"latency":' + b"9" * 30
            ),
            (ok("h"),),
        ),
        id="latency-30-digits",
    ),
    pytest.param(
        Case(
            event("session.stop", **PARAMS["session.stop"], session_id="s", timestamp=T).replace(
                b'"input_tokens":1', b'"input_tokens":-1'
            ),
            (error(-32602, "h", "usage.input_tokens"),),
        ),
        id="negative-token-count",
    ),
    pytest.param(
        Case(
            event("tool.call", **PARAMS["tool.call"], session_id="s", timestamp=T, input=0).replace(
                b'"input":0', b'"input":1e400'
            ),
            (error(-32602, "h", "input"),),
        ),
        id="tool-input-1e400",
    ),
    pytest.param(
        Case(
            event("tool.call", **PARAMS["tool.call"], session_id="s", timestamp=T, input=10**40), (ok("h"),)
        ),
        id="tool-input-40-digits",
    ),
    pytest.param(
        Case(request("storage.get_session", "h", {"session_id": "nobody", "last": 10**30}), (ok("h", []),)),
        id="last-30-digits",
    ),
    pytest.param(
        Case(
            request("storage.get_session", "h", {"session_id": "s"})[:-2] + b',"last":1e400}}',
            (error(-32602, "h", "last"),),
        ),
        id="last-1e400",
    ),
    pytest.param(
        Case(
            event("user.prompt.submit", **{**PROMPT, "timestamp": "99999-01-01T00:00:00Z"}),
            (error(-32602, "h", "timestamp"),),
        ),
        id="five-digit-year",
    ),
    # --- the envelope
    pytest.param(Case(b'{"id":"h","method":"storage.info"}', (error(-32600, "h"),)), id="jsonrpc-missing"),
    pytest.param(Case(INFO.replace(b'"2.0"', b'"1.0"'), (error(-32600, "h"),)), id="jsonrpc-1.0"),
    pytest.param(Case(INFO.replace(b'"2.0"', b"2.0"), (error(-32600, "h"),)), id="jsonrpc-a-number"),
    pytest.param(Case(INFO.replace(b'"2.0"', b"null"), (error(-32600, "h"),)), id="jsonrpc-null"),
    pytest.param(
        Case(INFO.replace(b'"jsonrpc"', b'"JSONRPC"'), (error(-32600, "h"),)), id="jsonrpc-upper-case"
    ),
    pytest.param(Case(INFO.replace(b'"storage.info"', b"null"), (error(-32600, "h"),)), id="method-null"),
    pytest.param(
        Case(INFO.replace(b'"storage.info"', b'["storage.info"]'), (error(-32600, "h"),)),
        id="method-an-array",
    ),
    pytest.param(Case(INFO.replace(b"storage.info", b""), (error(-32601, "h"),)), id="method-empty"),
    pytest.param(
        Case(INFO.replace(b"storage.info", b"storage.drop_everything"), (error(-32601, "h"),)),
        id="unknown-method",
    ),
    pytest.param(
        Case(b'{"jsonrpc":"2.0","method":"storage.drop_everything"}'), id="unknown-method-notification"
    ),
    pytest.param(Case(INFO.replace(b'"h"', b"[1]"), (error(-32600),)), id="id-an-array"),
    pytest.param(
        Case(event("user.prompt.submit").replace(b"{}", b'["s","t"]'), (error(-32602, "h", "params"),)),
        id="event-params-an-array",
    ),
    pytest.param(
        Case(event("user.prompt.submit").replace(b"{}", b'"s"'), (error(-32602, "h", "params"),)),
        id="event-params-a-string",
    ),
    pytest.param(
        Case(event("user.prompt.submit").replace(b"{}", b"null"), (error(-32602, "h", "params"),)),
        id="event-params-null",
    ),
    pytest.param(Case(request("storage.info", "h", 5), (error(-32602, "h"),)), id="storage-params-a-number"),
    pytest.param(Case(b"null", (error(-32600),)), id="null"),
    pytest.param(Case(b"{}", (error(-32600),)), id="empty-object"),
    pytest.param(Case(json.dumps(INFO.decode()).encode(), (error(-32600),)), id="request-inside-a-string"),
    pytest.param(Case(INFO[:-1] + b',"result":1}', (ok("h"),)), id="request-with-a-result-key"),
    pytest.param(Case(INFO[:-1] + b',"id":"second"}', (ok("second"),)), id="duplicate-id"),
    pytest.param(
        Case(INFO[:-1] + b',"method":"storage.flush"}', (ok("h", {"seq": ANY}),)), id="duplicate-method"
    ),
    pytest.param(
        Case(
            event("user.prompt.submit", **PROMPT)[:-2] + b',"session_id":"second"}}',
            (ok("h", {"session_id": "second", "seq": ANY}),),
        ),
        id="duplicate-session-id",
    ),
    # --- batches
    pytest.param(Case(b"[]", (error(-32600),)), id="empty-batch"),
    pytest.param(Case(b"[ \t ]", (error(-32600),)), id="blank-batch"),
    pytest.param(Case(b'[1,"x",null,[],{}]', ((error(-32600),) * 5,)), id="batch-of-garbage"),
    pytest.param(Case(b"[[]]", ((error(-32600),),)), id="batch-of-an-empty-batch"),
    pytest.param(Case(b"[1,]", (error(-32700),)), id="batch-with-a-trailing-comma"),
    pytest.param(
        Case(
            b"[" + b",".join(request("storage.info", n) for n in range(1000)) + b"]",
            (tuple(ok(n) for n in range(1000)),),
        ),
        id="batch-of-a-thousand-requests",
    ),
    pytest.param(
        Case(
            b"["
            + b",".join([event("user.prompt.submit", "e", **PROMPT), b"7", request("no.such", "u")])
            + b"]",
            ((ok("e"), error(-32600), error(-32601, "u")),),
        ),
        id="batch-of-an-event-garbage-and-unknown",
    ),
    pytest.param(
        Case(
            b"["
            + json.dumps({"jsonrpc": "2.0", "method": "user.prompt.submit", "params": PROMPT}).encode()
            + b"]"
        ),
        id="batch-of-one-notification",
    ),
    # --- wrong types in every field of every event
    *wrong_type_cases(),
    # --- the input ends in the middle of something
    pytest.param(
        Case(b'{"jsonrpc":"2.0","id":"x","meth', (error(-32700),), ends_input=True), id="end-inside-a-line"
    ),
    pytest.param(Case(b'{"a":"\xe2\x82', (error(-32700),), ends_input=True), id="end-inside-a-character"),
    pytest.param(Case(b"\r", ends_input=True), id="end-after-a-lone-cr"),
    pytest.param(Case(b"[" * DEEP, (error(-32700),), ends_input=True), id="end-inside-100k-nesting"),
    pytest.param(
        Case(b"x" * (65 << 20), (error(-32003),), ends_input=True), id="end-inside-an-oversize-line"
    ),
    pytest.param(Case(INFO, (ok("h"),), ends_input=True), id="end-after-a-request-without-newline"),
]


def matches(message: Any, expected: Reply | tuple[Reply, ...]) -> bool:
    if isinstance(expected, tuple):
        if not isinstance(message, list) or len(message) != len(expected):
            return False
        remaining = list(expected)
        for item in message:
            found = next((e for e in remaining if matches(item, e)), None)
            if found is None:
                return False
            remaining.remove(found)
        return True
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "id" not in message:
        return False
    if message["id"] != expected.id or type(message["id"]) is not type(expected.id):
        return False
    if expected.code is None:
        return set(message) == {"jsonrpc", "id", "result"} and same(message["result"], expected.result)
    error = message.get("error", {})
    return (
        set(message) == {"jsonrpc", "id", "error"}
        and error.get("code") == expected.code
        and (expected.field is None or error.get("data", {}).get("field") == expected.field)
    )


def same(value: Any, pattern: Any) -> bool:
    if pattern is ANY:
        return True
    if isinstance(pattern, dict):
        return (
            isinstance(value, dict)
            and value.keys() == pattern.keys()
            and all(same(value[k], p) for k, p in pattern.items())
        )
    return bool(value == pattern)


def expect_replies(daemon: PolledDaemon, replies: tuple[Reply | tuple[Reply, ...], ...]) -> None:
    remaining = list(replies)
    while remaining:
        message = daemon.read_line()
        found = next((r for r in remaining if matches(message, r)), None)
        assert found is not None, f"unexpected {json.dumps(message)[:300]}; still expecting {remaining[:3]}"
        remaining.remove(found)


_follow_ups = itertools.count()


def valid_traffic_is_served(daemon: PolledDaemon) -> None:
    """Nothing else was answered; then a valid event is acknowledged, stored and served."""
    n = next(_follow_ups)
    daemon.send_raw(request("storage.info", f"fence-{n}") + b"\n")
    assert daemon.read_line()["id"] == f"fence-{n}", "an answer nobody asked for"
    assert daemon.no_output()
    follow_up = stored_event(f"after-{n}", "still here", 1, n)
    daemon.send_raw(as_request(follow_up, f"after-{n}") + b"\n")
    assert daemon.response(f"after-{n}")["result"]["session_id"] == f"after-{n}"
    assert daemon.result("storage.get_session", {"session_id": f"after-{n}"}) == [json.loads(follow_up)]


class Shared:
    """One daemon for the cases that leave it running; a new one if a case killed it."""

    def __init__(self, directory: Path) -> None:
        self.db = directory / "sessions.db"
        self.daemon = PolledDaemon(self.db)
        self.restarts = 0

    def live(self) -> PolledDaemon:
        if self.daemon.process.poll() is not None:
            self.daemon.kill()
            self.daemon = PolledDaemon(self.db)
            self.restarts += 1
        return self.daemon


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    running = Shared(tmp_path_factory.mktemp("hostile"))
    yield running
    with running.daemon as daemon:
        assert daemon.close() == 0
        assert "Traceback" not in daemon.stderr
    stored = SqliteReader(running.db)
    stored.check_integrity()
    for _, payload in stored.events():
        complete_notification(payload)
    assert running.restarts == 0


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_gets_its_answer_and_the_valid_traffic_after_it_is_served(
    case: Case, shared: Shared, tmp_path: Path
) -> None:
    if case.ends_input:
        with PolledDaemon(tmp_path / "sessions.db") as daemon:
            before = stored_event("before", "kept", 1, 0)
            daemon.send_raw(as_request(before, "before") + b"\n" + case.data)
            assert daemon.close() == 0
            expect_replies(daemon, (ok("before"), *case.replies))
            assert daemon.rest() == []
            assert "Traceback" not in daemon.stderr
        assert [payload for _, payload in SqliteReader(tmp_path / "sessions.db").events()][:1] == [before]
        return
    daemon = shared.live()
    stderr_before = len(daemon.stderr)
    daemon.send_raw(case.data + b"\n")
    expect_replies(daemon, case.replies)
    valid_traffic_is_served(daemon)
    assert daemon.process.poll() is None
    assert "Traceback" not in daemon.stderr[stderr_before:]


def test_stdout_closed_by_the_reader_mid_run_stops_no_event_from_being_stored(db: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--db", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    events = [stored_event("epipe", str(n), 1, n) for n in range(3000)]
    process.stdin.write(b"\n".join(as_request(e, f"a{n}") for n, e in enumerate(events[:10])) + b"\n")
    process.stdin.flush()
    assert json.loads(process.stdout.readline())["id"] == "a0"
    process.stdout.close()  # the reader goes away; the daemon's next answers hit EPIPE
    rest = [as_request(e, f"a{n}") if n % 2 else e for n, e in enumerate(events[10:], start=10)]
    try:
        _, stderr = process.communicate(b"\n".join(rest) + b"\n", timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stderr.decode().count("stdout is closed") == 1, stderr
    assert [payload for _, payload in SqliteReader(db).events()] == events
