from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import msgspec.inspect
import pytest
from events import USAGE_CHARS, USAGE_TOKENS, vectors

from sidecar.events import EVENT_METHODS, STRICT_EVENT_TYPES, InvalidEvent, decode_event, stored_keys

TS = "2026-06-07T14:03:21.482913577Z"
TURN = {"session_id": "s", "turn_id": "t", "timestamp": TS}
PART_TEXT = {"text": "hi"}
PART_THINKING = {"thinking": "hmm", "signature": None}
PART_CALL = {"id": "c1", "name": "read", "arguments": "{}"}
TOOL_CALL = {"id": "c1", "call_type": "function", "function": {"name": "read", "arguments": "{}"}}

VALID = [
    (
        "session.init",
        {
            "session_id": "s",
            "timestamp": TS,
            "model": "m",
            "provider": "p",
            "system": "",
            "init_type": "Resume",
        },
    ),
    (
        "session.stop",
        {
            "session_id": "s",
            "timestamp": TS,
            "success": True,
            "result": "done",
            "error": None,
            "usage": USAGE_CHARS,
        },
    ),
    (
        "session.stop",
        {
            "session_id": "s",
            "timestamp": TS,
            "success": False,
            "result": None,
            "error": "boom",
            "incomplete_tasks": ["a"],
            "usage": USAGE_CHARS,
        },
    ),
    (
        "session.stop",
        {
            "session_id": "s",
            "timestamp": TS,
            "success": True,
            "result": [PART_TEXT, PART_THINKING, PART_CALL],
            "usage": USAGE_TOKENS,
        },
    ),
    # one generation's result with another's usage: each field is checked on its own
    (
        "session.stop",
        {"session_id": "s", "timestamp": TS, "success": True, "result": "x", "usage": USAGE_TOKENS},
    ),
    ("session.fork", {"session_id": "s", "timestamp": TS, "parent_session_id": "p"}),
    ("user.prompt.submit", {**TURN, "prompt": "hi"}),
    ("stream.delta", {**TURN, "delta": "to", "delta_type": "Thinking"}),
    ("tool.call", {**TURN, "name": "read", "input": {"path": "x"}}),
    ("tool.call", {**TURN, "name": "read"}),  # 0.1: a missing input is null
    ("tool.call", {**TURN, "name": "read", "tool_call_id": "c1", "input": [1, 2.5e16, None]}),
    ("tool.any_call", {**TURN, "name": "tasks", "tool_call_id": "c1", "input": {}}),
    ("tool.result", {**TURN, "result": {"Ok": "fine"}, "tool_call_id": "c1"}),
    ("tool.result", {**TURN, "result": {"Err": "bad"}, "tool_call_id": "c1"}),
    ("skill.load", {**TURN, "skill_name": "rust"}),
    ("assistant.response", {**TURN, "full_text": "x", "tool_calls": None}),
    ("assistant.response", {**TURN, "full_text": "x", "tool_calls": [TOOL_CALL]}),
    ("assistant.response", {**TURN, "full_text": "x"}),
    ("assistant.response", {**TURN, "content": [PART_THINKING, PART_TEXT, PART_CALL]}),
    ("assistant.task", {**TURN, "task_name": "t", "task_status": "InProgress"}),
]


@pytest.mark.parametrize(("method", "params"), VALID)
def test_every_generation_shape_is_accepted(method: str, params: dict[str, object]) -> None:
    event, instant = decode_event(method, json.dumps(params).encode())
    assert event.session_id == "s"
    assert instant == 1780841001482913577


def test_unknown_keys_are_accepted() -> None:
    decode_event("user.prompt.submit", json.dumps({**TURN, "prompt": "p", "novel": {"x": 1}}).encode())


def objects_in(value: object) -> Iterator[dict[str, object]]:
    """Every JSON object in a decoded value, itself first."""
    if isinstance(value, dict):
        yield value
        for inner in value.values():
            yield from objects_in(inner)
    elif isinstance(value, list):
        for item in value:
            yield from objects_in(item)


def with_unknown_key(params: dict[str, object], number: str) -> Iterator[bytes]:
    """The params once for each object in them, that object holding an unknown key with
    this number (written as given: json cannot write a number beyond a float64)."""
    for index in range(len(list(objects_in(params)))):
        variant = copy.deepcopy(params)
        list(objects_in(variant))[index]["novel"] = "NUMBER"
        yield json.dumps(variant).replace('"NUMBER"', number).encode()


@pytest.mark.parametrize(("method", "params"), VALID)
def test_a_number_no_reader_could_decode_is_refused_under_an_unknown_key_at_any_depth(
    method: str, params: dict[str, object]
) -> None:
    for variant in with_unknown_key(params, "1e999999"):
        with pytest.raises(InvalidEvent):  # under `input` (any JSON) the typed decode refuses it
            decode_event(method, variant)
    for variant in with_unknown_key(params, "1e308"):  # a float64 holds it
        assert decode_event(method, variant)[1] == 1780841001482913577


def struct_types(info: msgspec.inspect.Type) -> Iterator[msgspec.inspect.StructType]:
    """The Struct shapes a decode of `info` reaches."""
    if isinstance(info, msgspec.inspect.StructType):
        yield info
        for field in info.fields:
            yield from struct_types(field.type)
    elif isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            yield from struct_types(member)
    elif isinstance(info, msgspec.inspect.ListType):
        yield from struct_types(info.item_type)


def test_every_shape_the_strict_decoders_reach_refuses_unknown_keys() -> None:
    """Else an unknown key there would be skipped unread and never checked."""
    for info in msgspec.inspect.multi_type_info(list(STRICT_EVENT_TYPES.values())):
        for shape in struct_types(info):
            assert shape.forbid_unknown_fields, shape.cls


@pytest.mark.parametrize("line", vectors(), ids=lambda line: json.loads(line)["method"])
def test_every_shared_example_vector_is_accepted(line: bytes) -> None:
    message = json.loads(line)
    decode_event(message["method"], json.dumps(message["params"]).encode())


def test_all_eleven_methods_are_known() -> None:
    assert len(EVENT_METHODS) == 11


INVALID = [
    (
        "session.init",
        {
            "session_id": "s",
            "timestamp": TS,
            "model": "m",
            "provider": "p",
            "system": "",
            "init_type": "start",
        },
        "init_type",
    ),
    (
        "session.init",
        {"session_id": "s", "timestamp": TS, "provider": "p", "system": "", "init_type": "Start"},
        "model",
    ),
    (
        "session.init",
        {
            "session_id": "",
            "timestamp": TS,
            "model": "m",
            "provider": "p",
            "system": "",
            "init_type": "Start",
        },
        "session_id",
    ),
    ("session.stop", {"session_id": "s", "timestamp": TS, "success": "yes", "usage": USAGE_CHARS}, "success"),
    (
        "session.stop",
        {"session_id": "s", "timestamp": TS, "success": True, "usage": {"latency": 1, "input_chars": 1}},
        "usage",
    ),
    (
        "session.stop",
        {"session_id": "s", "timestamp": TS, "success": True, "usage": {**USAGE_TOKENS, "input_tokens": -1}},
        "usage.input_tokens",
    ),
    (
        "session.stop",
        {"session_id": "s", "timestamp": TS, "success": True, "result": [{"x": 1}], "usage": USAGE_CHARS},
        "result[0]",
    ),
    ("user.prompt.submit", {"session_id": "s", "timestamp": TS, "prompt": "p"}, "turn_id"),
    ("user.prompt.submit", {**TURN, "prompt": 5}, "prompt"),
    ("stream.delta", {**TURN, "delta": "x", "delta_type": "text"}, "delta_type"),
    ("tool.result", {**TURN, "result": {}, "tool_call_id": "c"}, "result"),
    ("tool.result", {**TURN, "result": {"Ok": "a", "Err": "b"}, "tool_call_id": "c"}, "result"),
    ("tool.result", {**TURN, "result": "ok", "tool_call_id": "c"}, "result"),
    ("assistant.response", {**TURN}, "params"),
    ("assistant.response", {**TURN, "full_text": "x", "tool_calls": [{"id": "c"}]}, "tool_calls[0]"),
    ("assistant.task", {**TURN, "task_name": "t", "task_status": "Later"}, "task_status"),
    ("session.fork", {"session_id": "s", "timestamp": TS}, "parent_session_id"),
    ("skill.load", {**TURN, "skill_name": "x", "timestamp": "yesterday"}, "timestamp"),
    ("skill.load", {**TURN, "skill_name": "x", "timestamp": 5}, "timestamp"),
]


@pytest.mark.parametrize(("method", "params", "field"), INVALID)
def test_invalid_events_name_the_field(method: str, params: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(method, json.dumps(params).encode())
    assert caught.value.field.startswith(field), caught.value


def test_params_that_are_not_an_object_are_invalid() -> None:
    with pytest.raises(InvalidEvent):
        decode_event("skill.load", b"[1, 2]")


def test_stored_keys_read_method_and_instant_from_a_stored_notification() -> None:
    payload = json.dumps({"jsonrpc": "2.0", "method": "skill.load", "params": {**TURN, "skill_name": "x"}})
    assert stored_keys(payload) == ("s", "skill.load", 1780841001482913577)
    assert stored_keys(b"not json") is None
    bad_time = '{"jsonrpc":"2.0","method":"x","params":{"session_id":"s","timestamp":"never"}}'
    assert stored_keys(bad_time) is None
