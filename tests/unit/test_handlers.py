"""What each storage.* method does (sidecar/handlers.py), in-process over the memory and
SQLite stores: reads, listings, deletes, forks, search, flush, info, stats, shutdown and
the subscription methods' params. Events go in through the dispatcher, as on the wire.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import pytest
from events import (
    USAGE_CHARS,
    changed,
    error_of,
    fork,
    init,
    notification,
    prompt,
    response,
    stop,
    tool_call,
    tool_result,
)
from wire import WAIT_S, Wire, running

from sidecar.core import Core
from sidecar.handlers import ForkParams, ListSessionsParams, NoParams, SearchParams, SessionParams
from sidecar.protocol import InvalidParams, SessionNotFound
from sidecar.store.base import SearchHit, SessionSummary
from sidecar.store.memory import MemoryStore

Result = TypeVar("Result")
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
    "storage.list_sessions",
    "storage.delete_session",
    "storage.fork_session",
    "storage.search",
    "storage.flush",
    "storage.info",
    "storage.stats",
    "storage.shutdown",
}
SUBSCRIPTION_METHODS = {"storage.subscribe", "storage.unsubscribe"}


# --- waits and builders only this module uses ---------------------------------------------------


async def within(awaitable: Awaitable[Result]) -> Result:
    """What a handler returns, waited for at most WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        return await awaitable


def ts(second: int) -> str:
    return f"2026-03-01T10:00:{second:02d}Z"


def past(second: int) -> str:
    """An instant before any fork's own timestamp (the clock's now)."""
    return f"2020-01-01T00:00:{second:02d}Z"


def answer(session_id: str, timestamp: str) -> dict[str, Any]:
    return notification(
        "assistant.response",
        session_id=session_id,
        turn_id="t1",
        content=[{"text": "ok"}],
        timestamp=timestamp,
    )


# --- storage.get_session -------------------------------------------------------------------------------

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
    pytest.param({"session_id": "f", "last": 10**30}, [0, 1, 2, 3, 4, 5, 6], id="last-beyond-int64"),
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
async def test_get_session_filters_by_after_then_methods_then_last(
    any_wire: Wire, params: Any, expected: list[int]
) -> None:
    await any_wire.send(*SESSION, init("other", ts(3)), prompt("other", ts(4)))
    assert await any_wire.result("storage.get_session", params) == [SESSION[i] for i in expected]


@pytest.mark.parametrize("arrival", ["reversed", "shuffled"])
@pytest.mark.parametrize(("params", "expected"), GET_SESSION_CASES)
async def test_get_session_answers_the_same_whatever_order_the_events_arrived_in(
    any_wire: Wire, arrival: str, params: Any, expected: list[int]
) -> None:
    order = SESSION[::-1] if arrival == "reversed" else [SESSION[i] for i in (3, 6, 0, 5, 1, 4, 2)]
    await any_wire.send(*order, init("other", ts(3)), prompt("other", ts(4)))
    assert await any_wire.result("storage.get_session", params) == [SESSION[i] for i in expected]


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


@pytest.mark.parametrize(("timestamps", "expected"), ORDERING)
async def test_get_session_orders_events_by_instant_and_keeps_arrival_order_for_ties(
    any_wire: Wire, timestamps: list[str], expected: list[int]
) -> None:
    await any_wire.send(*(prompt("o", stamp, text=str(i)) for i, stamp in enumerate(timestamps)))
    events = await any_wire.result("storage.get_session", {"session_id": "o"})
    assert [int(e["params"]["prompt"]) for e in events] == expected
    assert [e["params"]["timestamp"] for e in events] == [timestamps[i] for i in expected]


async def test_get_session_after_a_far_off_instant_compares_exact_instants(any_wire: Wire) -> None:
    far = ["2400-01-01T00:00:00Z", "1500-01-01T00:00:00Z", "2300-01-01T00:00:00Z"]
    await any_wire.send(*(prompt("far", stamp, text=str(i)) for i, stamp in enumerate(far)))
    for after, expected in [("2350-01-01T00:00:00Z", ["0"]), ("1400-01-01T00:00:00Z", ["1", "2", "0"])]:
        events = await any_wire.result("storage.get_session", {"session_id": "far", "after": after})
        assert [e["params"]["prompt"] for e in events] == expected


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
async def test_get_session_with_invalid_params_is_answered_invalid_params_naming_the_field(
    wire: Wire, params: Any, field: str
) -> None:
    assert await wire.invalid_field("storage.get_session", params) == field


# --- storage.list_sessions -----------------------------------------------------------------------------


async def two_sessions(wire: Wire) -> None:
    """ "old": stopped, last active at ts(2); "new": a resumed init with another model at ts(4)."""
    await wire.send(
        init("old", ts(0)),
        prompt("old", ts(1), text="Refactor   the\nparser please"),
        stop("old", ts(2)),
        init("new", ts(3)),
        changed(init("new", "2026-03-01T12:00:04+02:00"), model="M2", provider="p2"),
    )


async def test_list_sessions_summarises_each_session_newest_activity_first(any_wire: Wire) -> None:
    await two_sessions(any_wire)
    assert await within(any_wire.handlers.list_sessions(ListSessionsParams())) == [
        SessionSummary(
            session_id="new",
            event_count=2,
            first_timestamp="2026-03-01T10:00:03.000000000Z",
            last_timestamp="2026-03-01T10:00:04.000000000Z",
            model="M2",
            provider="p2",
            parent_session_id=None,
            status="active",
            success=None,
            usage={},
            title=None,
        ),
        SessionSummary(
            session_id="old",
            event_count=3,
            first_timestamp="2026-03-01T10:00:00.000000000Z",
            last_timestamp="2026-03-01T10:00:02.000000000Z",
            model="m",
            provider="p",
            parent_session_id=None,
            status="stopped",
            success=True,
            usage=USAGE_CHARS,
            title="Refactor the parser please",
        ),
    ]


LIST_CASES = [
    pytest.param({}, ["new", "old"], id="everything"),
    pytest.param({"limit": 1}, ["new"], id="limit"),
    pytest.param({"before": ts(4)}, ["old"], id="before-is-strict"),
    pytest.param({"before": "2026-03-01T12:00:02.000000001+02:00"}, ["old"], id="before-an-offset"),
    pytest.param({"before": ts(2)}, [], id="before-excludes-the-instant-itself"),
    pytest.param({"query": "m2"}, ["new"], id="query-the-model-any-case"),
    pytest.param({"query": "PARSER"}, ["old"], id="query-the-title"),
    pytest.param({"query": "ol"}, ["old"], id="query-the-id"),
    pytest.param({"query": ""}, ["new", "old"], id="query-empty-means-no-filter"),
    pytest.param({"query": "system"}, [], id="query-never-other-event-text"),
]


@pytest.mark.parametrize(("params", "expected"), LIST_CASES)
async def test_list_sessions_takes_a_limit_a_strict_before_cursor_and_a_text_query(
    any_wire: Wire, params: dict[str, Any], expected: list[str]
) -> None:
    await two_sessions(any_wire)
    summaries = await any_wire.result("storage.list_sessions", params)
    assert [summary["session_id"] for summary in summaries] == expected


async def test_list_sessions_pages_by_before_and_before_id_without_skipping_tied_sessions(
    any_wire: Wire,
) -> None:
    tied = "2026-06-07T14:00:01Z"
    await any_wire.send(*(init(f"s{n:02d}", tied) for n in range(12)))
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 5}
    while page := await any_wire.result("storage.list_sessions", params):
        seen += [summary["session_id"] for summary in page]
        last = page[-1]
        params = {"limit": 5, "before": last["last_timestamp"], "before_id": last["session_id"]}
    assert seen == [f"s{n:02d}" for n in range(11, -1, -1)]


async def test_list_sessions_of_an_empty_store_is_empty(any_wire: Wire) -> None:
    assert await any_wire.result("storage.list_sessions") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": None}, "limit"),
        ({"before": "soon"}, "before"),
        ({"before_id": "s1"}, "before_id"),
        (["x"], "params"),
    ],
    ids=["limit-0", "limit-null", "before-not-a-timestamp", "before-id-without-before", "an-array"],
)
async def test_list_sessions_with_invalid_params_names_the_field(wire: Wire, params: Any, field: str) -> None:
    assert await wire.invalid_field("storage.list_sessions", params) == field


# --- storage.delete_session ------------------------------------------------------------------------------


async def test_delete_session_removes_its_events_those_still_queued_included(any_wire: Wire) -> None:
    await any_wire.send(init("d", ts(0)), prompt("d", ts(1), text="doomed"), init("keep", ts(2)))
    assert await within(any_wire.handlers.delete_session(SessionParams("d"))) == {"deleted": 2}
    assert await any_wire.result("storage.get_session", ["d"]) == []
    assert [s.session_id for s in await within(any_wire.handlers.list_sessions(ListSessionsParams()))] == [
        "keep"
    ]
    assert await within(any_wire.handlers.search(SearchParams("doomed"))) == []
    assert await any_wire.result("storage.get_session", ["keep"]) == [init("keep", ts(2))]


async def test_delete_session_of_an_unknown_session_deletes_nothing(any_wire: Wire) -> None:
    assert await any_wire.result("storage.delete_session", {"session_id": "nobody"}) == {"deleted": 0}


async def test_events_received_after_a_delete_start_the_session_anew(any_wire: Wire) -> None:
    await any_wire.send(init("d", ts(0)), prompt("d", ts(1)))
    await any_wire.send({"jsonrpc": "2.0", "method": "storage.delete_session", "params": ["d"]})
    await any_wire.send(prompt("d", ts(5)))
    assert await any_wire.result("storage.get_session", ["d"]) == [prompt("d", ts(5))]
    (summary,) = await within(any_wire.handlers.list_sessions(ListSessionsParams()))
    assert (summary.session_id, summary.event_count) == ("d", 1)


async def test_delete_session_of_an_empty_id_names_the_session_id(wire: Wire) -> None:
    assert await wire.invalid_field("storage.delete_session", {"session_id": ""}) == "session_id"


# --- storage.fork_session --------------------------------------------------------------------------------


async def test_a_fork_copies_every_parent_event_but_its_forks_then_adds_its_own_fork_event(
    any_wire: Wire,
) -> None:
    parent = [fork("p", "grand", past(0)), init("p", past(1)), prompt("p", past(2)), stop("p", past(3))]
    await any_wire.send(*parent)
    assert await within(any_wire.handlers.fork_session(ForkParams("p", "child"))) == {
        "session_id": "child",
        "copied": 3,
    }
    *copies, own = await any_wire.result("storage.get_session", ["child"])
    assert copies == [changed(event, session_id="child") for event in parent[1:]]
    assert own["method"] == "session.fork"
    assert set(own["params"]) == {"session_id", "parent_session_id", "timestamp"}
    assert (own["params"]["session_id"], own["params"]["parent_session_id"]) == ("child", "p")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", own["params"]["timestamp"])
    assert await any_wire.result("storage.get_session", ["p"]) == parent  # the parent is not changed
    summaries = {s.session_id: s for s in await within(any_wire.handlers.list_sessions(ListSessionsParams()))}
    assert (summaries["child"].parent_session_id, summaries["child"].event_count) == ("p", 4)


async def test_a_fork_without_a_new_id_gets_a_random_uuid(any_wire: Wire) -> None:
    await any_wire.send(init("p", past(0)))
    result = await any_wire.result("storage.fork_session", ["p"])
    assert result["copied"] == 1
    assert uuid.UUID(result["session_id"]).version == 4
    assert len(await any_wire.result("storage.get_session", [result["session_id"]])) == 2


async def test_a_fork_sent_as_a_notification_with_a_new_id_takes_effect(any_wire: Wire) -> None:
    await any_wire.send(init("p", past(0)))
    notice = {
        "jsonrpc": "2.0",
        "method": "storage.fork_session",
        "params": {"session_id": "p", "new_session_id": "c"},
    }
    await any_wire.send(notice)
    events = await any_wire.result("storage.get_session", ["c"])
    assert [e["method"] for e in events] == ["session.init", "session.fork"]


async def test_a_fork_of_an_unknown_parent_is_session_not_found(any_wire: Wire) -> None:
    with pytest.raises(SessionNotFound) as raised:
        await within(any_wire.handlers.fork_session(ForkParams("nobody")))
    assert raised.value.data == {"reason": "no events in session 'nobody'", "session_id": "nobody"}
    error = error_of(await any_wire.request("storage.fork_session", ["nobody"], 5), -32004, 5)
    assert error["data"] == {"reason": "no events in session 'nobody'", "session_id": "nobody"}
    assert await any_wire.result("storage.list_sessions") == []


async def test_a_fork_of_an_emptied_parent_is_session_not_found(any_wire: Wire) -> None:
    await any_wire.send(init("old", past(0)))
    assert await any_wire.result("storage.delete_session", ["old"]) == {"deleted": 1}
    error = error_of(await any_wire.request("storage.fork_session", ["old"], 5), -32004, 5)
    assert error["data"] == {"reason": "no events in session 'old'", "session_id": "old"}


@pytest.mark.parametrize("new_id", ["taken", "p"], ids=["another-session", "the-parent-itself"])
async def test_a_fork_onto_a_session_that_has_events_names_new_session_id(
    any_wire: Wire, new_id: str
) -> None:
    await any_wire.send(init("p", past(0)), init("taken", past(1)))
    with pytest.raises(InvalidParams) as raised:
        await within(any_wire.handlers.fork_session(ForkParams("p", new_id)))
    assert raised.value.data == {
        "reason": f"session {new_id!r} already has events",
        "field": "new_session_id",
    }
    assert len(await any_wire.result("storage.get_session", [new_id])) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [({"session_id": ""}, "session_id"), ({"session_id": "p", "new_session_id": ""}, "new_session_id")],
    ids=["empty-parent-id", "empty-new-id"],
)
async def test_a_fork_with_an_empty_id_names_it(wire: Wire, params: dict[str, Any], field: str) -> None:
    await wire.send(init("p", past(0)))
    assert await wire.invalid_field("storage.fork_session", params) == field


# --- storage.search -------------------------------------------------------------------------------------


async def searchable(wire: Wire) -> None:
    """The session of docs/protocol.md's example, and another that mentions the parser."""
    await wire.send(
        init("old", "2026-06-07T14:00:00Z"),
        prompt("old", "2026-06-07T14:00:01Z", text="Refactor the parser please, it's slow"),
        response(
            "old",
            "2026-06-07T14:00:02Z",
            "The parser's hot loop is in parse_expr; I rewrote the Parser tokenizer.",
        ),
        stop("old", "2026-06-07T14:00:03Z", result="parser done"),
        tool_call("other", "2026-06-07T15:00:00Z", path="parser"),
        tool_result("other", "2026-06-07T15:00:01Z", {"Ok": "the parser is fine"}),
    )


async def test_search_finds_whole_words_any_case_newest_first_with_seq_and_snippet(any_wire: Wire) -> None:
    await searchable(any_wire)
    hits = await within(any_wire.handlers.search(SearchParams("PARSER", session_id="old", limit=2)))
    assert hits == [
        SearchHit("old", 4, "session.stop", "2026-06-07T14:00:03Z", "[parser] done"),
        SearchHit(
            "old",
            3,
            "assistant.response",
            "2026-06-07T14:00:02Z",
            "The [parser]'s hot loop is in parse_expr; I rewrote the [Parser] tokenizer.",
        ),
    ]


async def test_search_across_sessions_never_finds_tool_input_and_takes_its_query_positionally(
    any_wire: Wire,
) -> None:
    await searchable(any_wire)
    hits = await any_wire.result("storage.search", ["parser"])
    assert [(hit["session_id"], hit["method"]) for hit in hits] == [
        ("other", "tool.result"),
        ("old", "session.stop"),
        ("old", "assistant.response"),
        ("old", "user.prompt.submit"),
    ]
    assert await any_wire.result("storage.search", {"query": "parser", "limit": 1}) == hits[:1]
    assert await any_wire.result("storage.search", {"query": "parser", "session_id": "nobody"}) == []
    assert await any_wire.result("storage.search", {"query": "pars"}) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": " ?! "}, "query"),
        ({"query": "x", "limit": 0}, "limit"),
        ({"query": "x", "limit": 1001}, "limit"),
        ({}, "query"),
    ],
    ids=["empty", "no-words", "limit-0", "limit-1001", "query-missing"],
)
async def test_search_with_invalid_params_names_the_field(
    wire: Wire, params: dict[str, Any], field: str
) -> None:
    assert await wire.invalid_field("storage.search", params) == field


# --- storage.flush, storage.info, storage.stats ---------------------------------------------------------


async def test_flush_commits_what_came_before_and_answers_the_latest_seq(any_wire: Wire) -> None:
    assert await within(any_wire.handlers.flush(NoParams())) == {"seq": 0}
    await any_wire.send(init("a", ts(0)), prompt("a", ts(1)), init("b", ts(2)))
    assert await any_wire.result("storage.flush") == {"seq": 3}
    assert any_wire.core.ingest.queue_depth == 0


async def test_storage_info_names_the_daemon_its_store_and_every_method(
    any_wire: Wire, tmp_path: Path
) -> None:
    info = await any_wire.result("storage.info")
    assert info["name"] == "microagents-sidecar"
    assert info["version"] == version("microagents-sidecar")
    assert {"0.1", "0.2", "0.3A", "0.3B", "0.4"} <= set(info["protocol_versions"])
    expected = {"memory": ":memory:", "sqlite": str(tmp_path / "sessions.db")}
    assert info["location"] == expected[info["backend"]]
    assert info["backend"] == any_wire.core.store.backend
    assert set(info["methods"]) == EVENT_METHODS | STORAGE_METHODS | SUBSCRIPTION_METHODS
    assert info["methods"] == sorted(set(info["methods"]))  # each once


async def test_every_method_storage_info_advertises_is_known(wire: Wire) -> None:
    for method in (await wire.result("storage.info"))["methods"]:
        if method == "storage.shutdown":
            continue
        reply = await wire.request(method, {"no_such_param": 1}, method)
        assert error_of(reply, -32602, method)["data"]["field"], reply


async def test_without_an_output_there_are_no_subscription_methods() -> None:
    async with running(MemoryStore(), output=False) as wire:
        assert set((await wire.result("storage.info"))["methods"]) == EVENT_METHODS | STORAGE_METHODS
        error_of(await wire.request("storage.subscribe", {}, 1), -32601, 1)


async def test_storage_stats_counts_what_was_received_stored_rejected_and_answered(any_wire: Wire) -> None:
    await any_wire.send(init("a"), prompt("a", "2026-06-07T14:03:22Z"), init("b"))
    await any_wire.send({"jsonrpc": "2.0", "method": "session.init", "params": {}})
    error_of(await any_wire.request("no.such.method", request_id="x"), -32601, "x")
    stats = await any_wire.result("storage.stats")
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
    assert stats["commits"] >= 1  # how many depends on how the events were grouped
    assert stats["received"] == 6  # five messages before it, and this request
    assert isinstance(stats["uptime_s"], int | float) and stats["uptime_s"] >= 0
    later = await any_wire.result("storage.stats")
    assert later["uptime_s"] >= stats["uptime_s"]
    assert later["received"] == stats["received"] + 1


async def test_storage_stats_counts_the_sessions_list_sessions_lists(any_wire: Wire) -> None:
    await any_wire.send(init("a", ts(0)), prompt("a", ts(1)), init("b", ts(2)), prompt("c", ts(3)))
    assert (await any_wire.result("storage.stats"))["sessions"] == 3
    assert len(await any_wire.result("storage.list_sessions")) == 3
    await any_wire.result("storage.delete_session", {"session_id": "b"})
    await any_wire.result("storage.fork_session", {"session_id": "a", "new_session_id": "a2"})
    assert (await any_wire.result("storage.stats"))["sessions"] == 3
    assert sorted(s["session_id"] for s in await any_wire.result("storage.list_sessions")) == ["a", "a2", "c"]


# --- storage.shutdown -------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_request", [True, False], ids=["request", "notification"])
async def test_shutdown_asks_the_front_end_to_stop_once_what_came_before_is_committed(
    as_request: bool,
) -> None:
    persisted_when_asked: list[int] = []
    cores: list[Core] = []

    def request_shutdown() -> None:
        persisted_when_asked.append(cores[0].ingest.persisted)

    async with running(MemoryStore(), request_shutdown=request_shutdown) as wire:
        cores.append(wire.core)
        await wire.send(init("sh", ts(0)), prompt("sh", ts(1)))
        if as_request:
            assert await wire.result("storage.shutdown") is None
        else:
            await wire.send({"jsonrpc": "2.0", "method": "storage.shutdown"})
        assert persisted_when_asked == [2]


# --- storage.subscribe and storage.unsubscribe ----------------------------------------------------------


async def test_a_subscription_is_numbered_and_ends_once_unsubscribed(wire: Wire) -> None:
    assert await wire.result("storage.subscribe", {"session_id": "s", "methods": ["tool.*"], "from": 0}) == {
        "subscription": 1
    }
    assert await wire.result("storage.subscribe") == {"subscription": 2}
    assert await wire.result("storage.unsubscribe", [1]) == {"unsubscribed": True}
    assert await wire.invalid_field("storage.unsubscribe", {"subscription": 1}) == "subscription"
    assert await wire.result("storage.unsubscribe", {"subscription": 2}) == {"unsubscribed": True}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": -1}, "from"),
        ({"from": "later"}, "from"),
        ({"from": 1.5}, "from"),
        ({"methods": ["tool*"]}, "methods[0]"),
        ({"session_id": 5}, "session_id"),
        ({"sesion_id": "s"}, "sesion_id"),
    ],
    ids=[
        "from-negative",
        "from-a-word",
        "from-a-fraction",
        "methods-bad-pattern",
        "session-a-number",
        "typo",
    ],
)
async def test_subscribe_with_invalid_params_names_the_field(
    wire: Wire, params: dict[str, Any], field: str
) -> None:
    assert await wire.invalid_field("storage.subscribe", params) == field


@pytest.mark.parametrize(
    ("params", "field"),
    [({}, "subscription"), ({"subscription": "1"}, "subscription"), ({"subscription": 99}, "subscription")],
    ids=["missing", "a-string", "no-such-subscription"],
)
async def test_unsubscribe_with_invalid_params_names_the_subscription(
    wire: Wire, params: dict[str, Any], field: str
) -> None:
    assert await wire.invalid_field("storage.unsubscribe", params) == field
