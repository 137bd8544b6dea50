from __future__ import annotations

import json
from itertools import count
from typing import Any

import msgspec
import pytest
from events import USAGE_TOKENS, notification, vector_session

from sidecar.transcript import (
    AssistantText,
    Marker,
    OrphanResult,
    SkillLoad,
    Stop,
    TaskUpdate,
    Thinking,
    ToolCall,
    Transcript,
    build,
)


class Run:
    """Events of one session with increasing timestamps."""

    def __init__(self) -> None:
        self.clock = count()

    def __call__(self, method: str, **params: Any) -> dict[str, Any]:
        second = next(self.clock)
        params = {"session_id": "s", "turn_id": "t1", "timestamp": f"2026-06-07T14:00:{second:02}Z", **params}
        return notification(method, **params)

    def prompt(self, text: str = "hi", turn_id: str = "t1") -> dict[str, Any]:
        return self("user.prompt.submit", prompt=text, turn_id=turn_id)

    def call(self, call_id: str | None, name: str = "read", **input: Any) -> dict[str, Any]:
        extra = {} if call_id is None else {"tool_call_id": call_id}
        return self("tool.call", name=name, input=input, **extra)

    def result(self, call_id: str | None, ok: str | None = None, err: str | None = None) -> dict[str, Any]:
        extra = {} if call_id is None else {"tool_call_id": call_id}
        return self("tool.result", result={"Err": err} if err is not None else {"Ok": ok or ""}, **extra)

    def delta(self, text: str, kind: str = "Text") -> dict[str, Any]:
        return self("stream.delta", delta=text, delta_type=kind)

    def response(self, text: str, tool_calls: Any = None) -> dict[str, Any]:
        return self("assistant.response", full_text=text, tool_calls=tool_calls)

    def parts(self, *content: dict[str, Any]) -> dict[str, Any]:
        return self("assistant.response", content=list(content))

    def stop(self, success: bool = True, error: str | None = None) -> dict[str, Any]:
        return self("session.stop", success=success, result=None, error=error, usage=USAGE_TOKENS)


def only_turn(t: Transcript) -> list[Any]:
    assert len(t.turns) == 1
    return list(t.turns[0].items)


def kinds(items: list[Any]) -> list[type]:
    return [type(item) for item in items]


# --- every protocol generation ------------------------------------------------------------------


def test_a_0_1_session_becomes_one_turn_with_its_tool_call_paired_and_the_delta_superseded() -> None:
    events = vector_session("9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21")
    t = build(events)
    assert (t.session_id, t.model, t.provider) == (
        "9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21",
        "anthropic/claude-sonnet-4.5",
        "openrouter",
    )
    assert (t.started, t.ended) == ("2026-06-07T14:03:21.482913577Z", "2026-06-07T14:03:23.904162513Z")
    assert t.header == (
        Marker(what="start", model=t.model, provider=t.provider, timestamp=t.started, index=0),
    )
    turn = t.turns[0]
    assert turn.prompt is not None and turn.prompt.text == "List the files in src/ and summarise them."
    assert (turn.prompt.turn_id, turn.prompt.index) == ("t-1", 1)
    call, skill, text = only_turn(t)
    # The id-less 0.1 call takes the id of its result, and the response naming it adds nothing new.
    assert isinstance(call, ToolCall)
    assert (call.id, call.name, call.input, call.indexes) == (
        "call_01",
        "list_dir",
        {"path": "src/", "depth": 1},
        (3, 6),
    )
    assert call.result is not None and (call.result.ok, call.result.text, call.result.index) == (
        True,
        "lib.rs\nmain.rs",
        4,
    )
    assert skill == SkillLoad(name="rust", timestamp="2026-06-07T14:03:22.700210Z", index=5)
    assert isinstance(text, AssistantText) and not text.partial
    assert text.text == "There are two files: lib.rs and main.rs — ½ of them is a binary."
    assert "Let me look" not in json.dumps(msgspec.to_builtins(t))
    assert t.stop is not None and t.stop.success is True and t.stop.result == "There are two files."
    assert t.stop.usage is not None and t.stop.usage["latency"] == 2421 and t.stop.index == 7


def test_a_0_2_task_before_any_prompt_goes_to_a_turn_without_prompt_and_the_failed_stop_ends_it() -> None:
    t = build(vector_session("0c3a9f1e-77aa-4c2b-9d10-5f6e7d8c9b0a"))
    assert t.turns[0].prompt is None and t.turns[0].turn_id == "t-9"
    assert only_turn(t) == [
        TaskUpdate(
            name="write tests", status="InProgress", timestamp="2026-06-25T10:11:12.345678901Z", index=0
        )
    ]
    assert t.stop is not None
    assert (t.stop.success, t.stop.error, t.stop.incomplete_tasks) == (
        False,
        "provider timed out",
        ("write tests",),
    )
    assert t.ended == "2026-06-25T10:11:15Z"


def test_a_0_3_fork_names_the_parent_in_the_header_and_the_transcript() -> None:
    t = build(vector_session("5e6f7a8b-0000-4000-8000-000000000001"))
    assert t.parent_session_id == "9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21"
    assert [(m.what, m.parent_session_id) for m in t.header if isinstance(m, Marker)] == [
        ("fork", "9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21")
    ]
    assert t.turns == () and t.stop is None and t.ended is None


def test_a_0_3b_response_gives_thinking_text_and_tool_call_in_their_order() -> None:
    t = build(vector_session("1d2e3f40-aaaa-4bbb-8ccc-ddddeeeeffff")[:2])
    thinking, text, call = only_turn(t)
    assert isinstance(thinking, Thinking) and thinking.text == "The user wants the weather."
    assert isinstance(text, AssistantText) and text.text == "It is sunny and 27°C."
    assert isinstance(call, ToolCall)
    assert (call.id, call.name, call.input, call.result) == ("toolu_01", "weather", {"city": "Paris"}, None)
    assert t.stop is not None and t.stop.result == "It is sunny and 27°C."
    assert t.stop.usage is not None and t.stop.usage["cache_read_tokens"] == 1920


def test_0_4_tool_calls_of_both_methods_keep_their_ids() -> None:
    t = build(vector_session("1d2e3f40-aaaa-4bbb-8ccc-ddddeeeeffff")[2:])
    assert [(c.id, c.name, c.input) for c in only_turn(t)] == [
        ("toolu_02", "tasks", {"task_name": "write tests", "task_status": "Queued"}),
        ("toolu_03", "read", {"path": "src/lib.rs"}),
    ]


def test_events_after_a_stop_mean_it_did_not_end_the_session() -> None:
    t = build(vector_session("1d2e3f40-aaaa-4bbb-8ccc-ddddeeeeffff"))
    assert t.stop is None and t.ended is None and t.last_activity == "2026-08-01T12:00:00.500Z"
    assert kinds(only_turn(t)) == [Thinking, AssistantText, ToolCall, Stop, ToolCall, ToolCall]


# --- tool calls and their results ---------------------------------------------------------------


def test_results_pair_with_their_calls_by_tool_call_id_in_any_order() -> None:
    run = Run()
    t = build(
        [
            run.prompt(),
            run.call("c1", path="a"),
            run.call("c2", path="b"),
            run.result("c2", "B"),
            run.result("c1", "A"),
        ]
    )
    first, second = only_turn(t)
    assert (first.id, first.result.text, first.result.index) == ("c1", "A", 4)
    assert (second.id, second.result.text, second.result.index) == ("c2", "B", 3)


def test_a_result_that_comes_before_its_call_is_paired_when_the_call_arrives() -> None:
    run = Run()
    t = build([run.prompt(), run.result("c1", "early"), run.call("c1")])
    (call,) = only_turn(t)
    assert isinstance(call, ToolCall) and call.result is not None
    assert (call.result.text, call.result.index, call.index) == ("early", 1, 2)


def test_a_result_of_an_unknown_call_or_a_second_result_is_kept_as_an_orphan() -> None:
    run = Run()
    t = build(
        [
            run.prompt(),
            run.call("c1"),
            run.result("c1", "one"),
            run.result("c1", "two"),
            run.result("c9", err="boom"),
        ]
    )
    call, again, unknown = only_turn(t)
    assert isinstance(call, ToolCall) and call.result is not None and call.result.text == "one"
    assert isinstance(again, OrphanResult) and (again.result.text, again.index) == ("two", 3)
    assert isinstance(unknown, OrphanResult)
    assert (unknown.result.ok, unknown.result.text, unknown.result.tool_call_id) == (False, "boom", "c9")


def test_a_call_without_an_id_takes_the_next_result_of_its_turn() -> None:
    run = Run()
    t = build([run.prompt(), run.call(None, path="a"), run.result(None, "A")])
    (call,) = only_turn(t)
    assert call.id is None and call.result.text == "A"


def test_a_full_text_response_shows_its_tool_calls_and_their_results_follow() -> None:
    run = Run()
    calls = [{"id": "c1", "call_type": "function", "function": {"name": "grep", "arguments": '{"q":"x"}'}}]
    t = build([run.prompt(), run.response("Searching.", calls), run.result("c1", "found")])
    text, call = only_turn(t)
    assert isinstance(text, AssistantText) and text.text == "Searching."
    assert isinstance(call, ToolCall)
    assert (call.id, call.name, call.input, call.index) == ("c1", "grep", {"q": "x"}, 1)
    assert call.result is not None and call.result.text == "found"


def test_a_call_named_by_a_response_and_then_run_is_one_call_with_the_input_that_ran() -> None:
    run = Run()
    events = [
        run.prompt(),
        run.parts({"id": "c1", "name": "read", "arguments": '{"path":"a"}'}),
        run("tool.any_call", name="read", input={"path": "a", "lines": 5}, tool_call_id="c1"),
        run.result("c1", "text of a"),
    ]
    (call,) = only_turn(build(events))
    assert (call.input, call.indexes, call.index, call.result.text) == (
        {"path": "a", "lines": 5},
        (1, 2),
        1,
        "text of a",
    )


def test_arguments_that_are_not_json_stay_as_their_text() -> None:
    run = Run()
    (call,) = only_turn(build([run.parts({"id": "c1", "name": "sh", "arguments": "ls -l"})]))
    assert call.input == "ls -l"


# --- stream.delta --------------------------------------------------------------------------------


def test_consecutive_deltas_fold_into_one_text_that_the_response_supersedes() -> None:
    run = Run()
    deltas = [run.prompt(), run.delta("Hel"), run.delta("lo "), run.delta("there")]
    folded = only_turn(build(deltas))
    assert folded == [
        AssistantText(
            text="Hello there",
            indexes=(1, 2, 3),
            partial=True,
            timestamp=deltas[1]["params"]["timestamp"],
            index=1,
        )
    ]
    answered = only_turn(build([*deltas, run.response("Hello there.")]))
    assert [(i.text, i.partial, i.index) for i in answered] == [("Hello there.", False, 4)]


def test_deltas_no_response_follows_are_kept_as_partial_text_and_thinking() -> None:
    run = Run()
    t = build(
        [
            run.prompt(),
            run.delta("hmm", "Thinking"),
            run.delta(" ok", "Thinking"),
            run.delta("So"),
            run.call("c1"),
            run.delta("Then"),
        ]
    )
    thinking, text, call, after = only_turn(t)
    assert isinstance(thinking, Thinking) and (thinking.text, thinking.partial) == ("hmm ok", True)
    assert isinstance(text, AssistantText) and (text.text, text.partial) == ("So", True)
    assert isinstance(call, ToolCall)
    assert isinstance(after, AssistantText) and (after.text, after.indexes) == ("Then", (5,))


def test_thinking_deltas_stay_whole_when_the_response_has_no_thinking() -> None:
    run = Run()
    t = build([run.prompt(), run.delta("let me see", "Thinking"), run.delta("Yes"), run.response("Yes.")])
    thinking, text = only_turn(t)
    assert isinstance(thinking, Thinking) and (thinking.text, thinking.partial) == ("let me see", False)
    assert isinstance(text, AssistantText) and text.text == "Yes."


def test_a_response_with_thinking_supersedes_the_thinking_deltas_too() -> None:
    run = Run()
    events = [
        run.prompt(),
        run.delta("th", "Thinking"),
        run.delta("Ye"),
        run.parts({"thinking": "thought", "signature": None}, {"text": "Yes"}),
    ]
    assert [(type(i), i.text) for i in only_turn(build(events))] == [
        (Thinking, "thought"),
        (AssistantText, "Yes"),
    ]


def test_deltas_after_a_response_belong_to_the_next_answer_and_stay_partial() -> None:
    run = Run()
    t = build([run.prompt(), run.delta("A"), run.response("A."), run.delta("B")])
    assert [(i.text, i.partial) for i in only_turn(t)] == [("A.", False), ("B", True)]


# --- turns, stops, usage, indexes ---------------------------------------------------------------


def test_events_go_to_the_latest_turn_of_their_turn_id() -> None:
    run = Run()
    t = build(
        [
            run.prompt("one", "t1"),
            run.prompt("two", "t2"),
            run.result(None, "late"),
            run("skill.load", skill_name="k", turn_id="t1"),
            run("skill.load", skill_name="j", turn_id="t3"),
        ]
    )
    assert [turn.prompt.text for turn in t.turns if turn.prompt] == ["one", "two"]
    assert [type(i) for i in t.turns[0].items] == [OrphanResult, SkillLoad]
    assert [getattr(i, "name", None) for i in t.turns[1].items] == ["j"]


def test_a_stop_followed_by_a_resumed_run_stays_in_its_turn_and_the_last_stop_ends_the_session() -> None:
    run = Run()
    resume = run("session.init", model="m2", provider="p", system="", init_type="Resume")
    events = [run.prompt("one"), run.stop(False, "boom"), resume, run.prompt("two"), run.stop()]
    t = build(events)
    first, second = t.turns
    stop, marker = first.items
    assert isinstance(stop, Stop) and (stop.success, stop.error) == (False, "boom")
    assert isinstance(marker, Marker) and (marker.what, marker.model) == ("resume", "m2")
    assert second.items == ()
    assert t.stop is not None and (t.stop.success, t.stop.index) == (True, 4)
    assert t.ended == events[4]["params"]["timestamp"]


def test_usage_of_a_response_rides_on_its_last_text() -> None:
    run = Run()
    with_text = run("assistant.response", content=[{"text": "a"}, {"text": "b"}], usage=USAGE_TOKENS)
    without_text = run("assistant.response", content=[], usage=USAGE_TOKENS)
    a, b, empty = only_turn(build([with_text, without_text]))
    assert (a.usage, b.usage) == (None, USAGE_TOKENS)
    assert (empty.text, empty.usage) == ("", USAGE_TOKENS)


def test_every_item_keeps_the_index_of_the_event_it_came_from() -> None:
    events = vector_session("9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21")
    t = build(events)
    methods = {events[item.index]["method"] for item in only_turn(t)}
    assert methods == {"tool.call", "skill.load", "assistant.response"}


def test_the_transcript_encodes_to_json_with_item_kinds_and_decodes_back() -> None:
    t = build(vector_session("9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21"))
    encoded = msgspec.json.encode(t)
    assert [item["kind"] for item in json.loads(encoded)["turns"][0]["items"]] == [
        "tool_call",
        "skill",
        "text",
    ]
    assert msgspec.json.decode(encoded, type=Transcript) == t


# --- what storage may hold ----------------------------------------------------------------------

ODD: list[Any] = [
    None,
    "text",
    {},
    {"method": None},
    {"method": "user.prompt.submit"},
    {"method": "user.prompt.submit", "params": []},
    {"method": "some.future.method", "params": {"session_id": "s"}},
    {"method": "user.prompt.submit", "params": {"prompt": 7, "timestamp": 12, "turn_id": ["x"]}},
    {"method": "tool.call", "params": {"name": None}},
    {"method": "tool.result", "params": {"result": "plain"}},
    {"method": "tool.result", "params": {"result": {"Neither": 1}, "tool_call_id": 5}},
    {"method": "assistant.response", "params": {"content": "not a list", "tool_calls": {"x": 1}}},
    {"method": "assistant.response", "params": {"content": [1, None, {"unknown": 1}], "tool_calls": [1, {}]}},
    {"method": "assistant.response", "params": {"full_text": None, "tool_calls": [{"function": "f"}]}},
    {"method": "stream.delta", "params": {"delta": None, "delta_type": "Other"}},
    {
        "method": "session.stop",
        "params": {"success": "yes", "result": [{"text": 1}, 2], "usage": [], "incomplete_tasks": "x"},
    },
    {"method": "session.init", "params": {"model": 3, "init_type": None}},
]


@pytest.mark.parametrize("odd", ODD, ids=range(len(ODD)))
def test_odd_or_missing_fields_give_what_can_be_read(odd: Any) -> None:
    run = Run()
    t = build([run.prompt("before"), odd, run.response("after")])
    assert t.turns[0].prompt is not None and t.turns[0].prompt.text == "before"
    texts = [i.text for turn in t.turns for i in turn.items if isinstance(i, AssistantText)]
    assert texts[-1] == "after"


def test_odd_fields_are_read_as_text_where_text_is_shown() -> None:
    run = Run()
    odd_prompt = notification("user.prompt.submit", prompt=7, timestamp=12)
    odd_result = notification("tool.result", result={"Neither": 1})
    odd_stop = notification("session.stop", success="yes", result=[{"text": "a"}, 2], incomplete_tasks="x")
    t = build([odd_prompt, run.call(None), odd_result, odd_stop])
    assert t.turns[0].prompt is not None and (t.turns[0].prompt.text, t.turns[0].prompt.timestamp) == (
        "7",
        None,
    )
    (call,) = only_turn(t)
    assert call.result.text == '{"Neither": 1}'
    assert t.stop is not None and (t.stop.success, t.stop.result, t.stop.incomplete_tasks) == (None, "a", ())


def test_no_events_build_an_empty_transcript() -> None:
    assert build([]) == Transcript(
        session_id=None,
        model=None,
        provider=None,
        parent_session_id=None,
        started=None,
        ended=None,
        last_activity=None,
        header=(),
        turns=(),
        stop=None,
    )
