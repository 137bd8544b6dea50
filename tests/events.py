"""Builders of valid events, one per method and protocol generation, of requests and of the
forms events are stored in, and the checks of a JSON-RPC answer, for tests. No I/O."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sidecar.events import stored_keys
from sidecar.store.base import Event
from sidecar.timestamps import parse_instant

VECTORS = Path(__file__).resolve().parent / "data" / "events.ndjson"  # a copy of the shared vectors

USAGE_CHARS = {
    "latency": 10,
    "input_chars": 1,
    "estimated_input_tokens": 1,
    "output_chars": 1,
    "estimated_output_tokens": 1,
}
USAGE_TOKENS = {
    "latency": 10,
    "input_tokens": 1,
    "output_tokens": 1,
    "cache_write_tokens": 0,
    "cache_read_tokens": 0,
}


def notification(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def init(session_id: str, timestamp: str = "2026-06-07T14:03:21.000000001Z", **extra: Any) -> dict[str, Any]:
    return notification(
        "session.init",
        session_id=session_id,
        model="m",
        provider="p",
        system="s",
        init_type="Start",
        timestamp=timestamp,
        **extra,
    )


def prompt(session_id: str, timestamp: str, text: str = "hi", turn_id: str = "t1") -> dict[str, Any]:
    return notification(
        "user.prompt.submit", session_id=session_id, turn_id=turn_id, prompt=text, timestamp=timestamp
    )


def response(session_id: str, timestamp: str, text: str = "hello") -> dict[str, Any]:
    return notification(
        "assistant.response",
        session_id=session_id,
        turn_id="t1",
        full_text=text,
        tool_calls=None,
        timestamp=timestamp,
    )


def stop(session_id: str, timestamp: str, result: Any = "hello") -> dict[str, Any]:
    return notification(
        "session.stop",
        session_id=session_id,
        success=True,
        result=result,
        error=None,
        timestamp=timestamp,
        usage=USAGE_CHARS,
    )


def fork(session_id: str, parent: str, timestamp: str) -> dict[str, Any]:
    return notification("session.fork", session_id=session_id, parent_session_id=parent, timestamp=timestamp)


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


def changed(message: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {**message, "params": {**message["params"], **params}}


def as_request(message: dict[str, Any], request_id: Any) -> dict[str, Any]:
    return {**message, "id": request_id}


def rpc(method: str, params: Any = None, request_id: Any = "r") -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def vectors() -> list[bytes]:
    """The shared example lines of every protocol generation, exactly as written."""
    return [line for line in VECTORS.read_bytes().splitlines() if line.strip()]


def vector_session(session_id: str) -> list[dict[str, Any]]:
    """The example events of one session, decoded, in the order they were written."""
    decoded = [json.loads(raw) for raw in vectors()]
    return [e for e in decoded if e["params"]["session_id"] == session_id]


def in_turn(method: str, second: int, **params: Any) -> dict[str, Any]:
    """An event of session "s", turn "t1", at 14:00:SS."""
    params = {"session_id": "s", "turn_id": "t1", "timestamp": f"2026-06-07T14:00:{second:02}Z", **params}
    return notification(method, **params)


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def event(message: dict[str, Any]) -> Event:
    """A message as a store receives it from ingest: its line and the keys read from it."""
    payload = line(message)
    keys = stored_keys(payload)
    assert keys is not None
    return Event(keys.session_id, payload, keys.timestamp_ns, keys.method)


def events(*messages: dict[str, Any]) -> list[Event]:
    return [event(message) for message in messages]


def stored_form(method: str, params: bytes) -> bytes:
    """The line a store keeps for an event: the compact envelope around `params` as received."""
    return b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":' + params + b"}"


def params_text(vector: bytes) -> bytes:
    """The bytes of `params` in a compact vector line whose last key is `params`."""
    head, _, rest = vector.partition(b',"params":')
    assert rest.endswith(b"}") and head.startswith(b"{")
    params = rest[:-1]
    json.loads(params)
    return params


# --- checks of an answer ------------------------------------------------------------------------


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
    return dict(error)


def result_of(reply: Any, request_id: Any) -> Any:
    """The result of `reply`, after checking it is a proper result response."""
    assert isinstance(reply, dict), reply
    assert set(reply) == {"jsonrpc", "id", "result"}, reply
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == request_id and type(reply["id"]) is type(request_id), reply
    return reply["result"]


# --- what storage.get_session answers, computed the slow and obvious way -------------------------


def expected_read(
    sent: list[dict[str, Any]],
    after: str | None = None,
    methods: tuple[str, ...] = (),
    last: int | None = None,
) -> list[dict[str, Any]]:
    """The events of `sent` (one session, in arrival order) that get_session returns: every
    one sorted by its exact instant, stable, then those after `after`, of `methods`, the `last`."""
    ordered = sorted(sent, key=lambda event: parse_instant(event["params"]["timestamp"]))
    if after is not None:
        ordered = [e for e in ordered if parse_instant(e["params"]["timestamp"]) > parse_instant(after)]
    if methods:
        exact = {m for m in methods if not m.endswith(".*")}
        prefixes = tuple(m[:-1] for m in methods if m.endswith(".*"))
        ordered = [e for e in ordered if e["method"] in exact or e["method"].startswith(prefixes)]
    return ordered if last is None else ordered[-last:]
