"""One contract for every store backend, checked through the real daemon.

Each test runs once per backend (the `backend` fixture): sqlite, jsonl and memory today;
a new backend joins by adding a class to tests/backends.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from backends import Backend
from daemon import Daemon
from events import USAGE_TOKENS, expected_read, init, line, notification, prompt, response, stop, vectors


def ts(second: float) -> str:
    whole, fraction = divmod(round(second * 1_000_000_000), 1_000_000_000)
    return f"2026-06-07T14:{whole // 60:02d}:{whole % 60:02d}.{fraction:09d}Z"


def params_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event["params"] for event in events]


def read(daemon: Daemon, session_id: str, **filters: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = daemon.result("storage.get_session", {"session_id": session_id, **filters})
    return events


def raw_read(daemon: Daemon, session_id: str) -> bytes:
    """The whole get_session response line as the daemon wrote it."""
    request = {
        "jsonrpc": "2.0",
        "id": "raw",
        "method": "storage.get_session",
        "params": {"session_id": session_id},
    }
    daemon.send(request)
    return daemon.read_raw_line()


@pytest.fixture
def store(backend: Backend) -> Any:
    with backend.daemon() as daemon:
        yield daemon


# --- the Rust crate's own scenarios -------------------------------------------------------


def test_a_new_session_reads_back_its_one_init_event(store: Daemon) -> None:
    store.send(init("s1"))
    assert read(store, "s1") == [init("s1")]


def test_init_prompt_response_stop_read_back_as_four_events_in_order(store: Daemon) -> None:
    sent = [init("s1", ts(0)), prompt("s1", ts(1)), response("s1", ts(2)), stop("s1", ts(3))]
    store.send(*sent)
    assert read(store, "s1") == sent


# --- one contract where the Rust backends differed -----------------------------------------


def test_an_event_of_a_session_without_init_is_stored(store: Daemon) -> None:
    store.send(prompt("orphan", ts(1)))
    assert read(store, "orphan") == [prompt("orphan", ts(1))]


def test_a_second_init_is_appended_not_replacing_the_first(store: Daemon) -> None:
    resumed = init("s", ts(1))
    resumed["params"]["init_type"] = "Resume"
    store.send(init("s", ts(0)), resumed)
    assert read(store, "s") == [init("s", ts(0)), resumed]


def test_an_unknown_session_reads_as_an_empty_array(store: Daemon) -> None:
    store.send(init("known"))
    assert read(store, "unknown") == []
    assert raw_read(store, "unknown") == b'{"jsonrpc":"2.0","id":"raw","result":[]}\n'


def test_a_session_whose_events_are_all_filtered_out_reads_as_empty(store: Daemon) -> None:
    store.send(init("s", ts(0)))
    assert read(store, "s", methods=["tool.*"]) == []
    assert read(store, "s", after=ts(5)) == []


# --- ordering ------------------------------------------------------------------------------

ORDERINGS = [
    pytest.param([ts(3), ts(1), ts(2)], [1, 2, 0], id="out-of-order"),
    pytest.param([ts(1), ts(1), ts(1)], [0, 1, 2], id="equal-keep-arrival"),
    pytest.param(
        ["2026-06-07T14:00:00.000000300Z", "2026-06-07T14:00:00.000000001Z", "2026-06-07T14:00:00Z"],
        [2, 1, 0],
        id="nanoseconds",
    ),
    pytest.param(
        ["2026-06-07T10:00:00+02:00", "2026-06-07T09:00:00Z", "2026-06-07T08:30:00-00:45"],
        [0, 1, 2],
        id="offsets-as-instants",
    ),
    pytest.param(
        ["2400-01-01T00:00:00Z", "1500-01-01T00:00:00Z", "2300-01-01T00:00:00Z"], [1, 2, 0], id="far-years"
    ),
]


@pytest.mark.parametrize(("stamps", "expected"), ORDERINGS)
def test_events_read_back_ordered_by_instant_stable_on_arrival(
    store: Daemon, stamps: list[str], expected: list[int]
) -> None:
    store.send(*(prompt("o", stamp, text=str(i)) for i, stamp in enumerate(stamps)))
    assert [int(p["prompt"]) for p in params_of(read(store, "o"))] == expected


def test_filters_apply_after_then_methods_then_last(store: Daemon) -> None:
    sent = [init("f", ts(0)), prompt("f", ts(1)), response("f", ts(2)), prompt("f", ts(3)), stop("f", ts(4))]
    store.send(*reversed(sent))
    assert read(store, "f", after=ts(1)) == sent[2:]
    assert read(store, "f", methods=["user.*"]) == [sent[1], sent[3]]
    assert read(store, "f", after=ts(1), methods=["user.prompt.submit", "session.*"], last=1) == [sent[4]]
    assert read(store, "f", last=2) == sent[3:]


# Ties, a nanosecond apart, and instants outside int64 nanoseconds.
MIXED = [
    prompt("q", ts(2), text="tie"),
    stop("q", ts(4)),
    prompt("q", "2400-01-01T00:00:00Z", text="2400"),
    init("q", ts(0)),
    response("q", ts(2)),
    prompt("q", "1500-01-01T00:00:00Z", text="1500"),
    prompt("q", ts(2.000000001), text="1ns later"),
    response("q", "2300-01-01T00:00:00Z"),
    prompt("q", ts(1), text="p1"),
]


@pytest.mark.parametrize("arrival", ["in-time-order", "out-of-order"])
def test_every_combination_of_after_methods_and_last_reads_as_the_whole_session_sorted(
    store: Daemon, arrival: str
) -> None:
    sent = expected_read(MIXED) if arrival == "in-time-order" else MIXED
    store.send(*sent)
    for after in [None, ts(1), ts(2), "1550-01-01T00:00:00Z", "2350-01-01T00:00:00Z"]:
        for methods in [(), ("user.prompt.submit",), ("session.*", "assistant.response")]:
            for last in [None, 1, 2]:
                given = {"after": after, "methods": list(methods) or None, "last": last}
                filters = {name: value for name, value in given.items() if value is not None}
                assert read(store, "q", **filters) == expected_read(sent, after, methods, last), filters


# --- what is stored is what was sent -------------------------------------------------------


def test_every_protocol_generation_is_stored_and_served_byte_for_byte(store: Daemon) -> None:
    lines = vectors()
    store.send_raw(b"".join(line + b"\n" for line in lines))
    sessions = {json.loads(line)["params"]["session_id"] for line in lines}
    served = b"".join(raw_read(store, session_id) for session_id in sessions)
    for sent in lines:
        params = sent[sent.index(b'"params":') + len(b'"params":') : -1]
        assert params in served
    assert store.result("storage.stats")["rejected"] == 0


def test_params_keep_their_bytes_whitespace_key_order_escapes_and_unknown_keys(store: Daemon) -> None:
    params = (
        b'{ "timestamp" : "2026-06-07T14:00:00Z", "session_id":"b", "turn_id":"t",'
        b' "prompt":"caf\\u00e9 \\ud83d\\ude00 \\/ 1e3", "zz_unknown": {"n": 1.50, "list": [1 , 2]} }'
    )
    store.send_raw(b'{"method":"user.prompt.submit","params":' + params + b',"jsonrpc":"2.0"}\n')
    served = raw_read(store, "b")
    assert (
        served
        == b'{"jsonrpc":"2.0","id":"raw","result":[{"jsonrpc":"2.0","method":"user.prompt.submit","params":'
        + params
        + b"}]}\n"
    )


@pytest.mark.parametrize(
    "text",
    ["astral 😀𝄞 and 中文", "line\u2028separator\u2029paragraph", 'nul-free \t tab \\ backslash "quote"'],
    ids=["astral", "u2028", "escapes"],
)
def test_unicode_text_survives_the_round_trip(store: Daemon, text: str) -> None:
    store.send(prompt("u", ts(1), text=text))
    assert params_of(read(store, "u"))[0]["prompt"] == text
    assert line(prompt("u", ts(1), text=text)) in raw_read(store, "u")


def test_a_ten_megabyte_tool_result_is_stored_and_served_whole(store: Daemon) -> None:
    big = "x" * (10 * 1024 * 1024)
    result = notification(
        "tool.result", session_id="big", turn_id="t", result={"Ok": big}, tool_call_id="c", timestamp=ts(1)
    )
    store.send(init("big", ts(0)), result)
    events = read(store, "big")
    assert len(events) == 2 and events[1]["params"]["result"]["Ok"] == big


# --- many sessions, acknowledgements, counters ---------------------------------------------


def test_many_interleaved_sessions_each_read_back_alone_and_in_order(store: Daemon) -> None:
    sessions = [f"s{n:02d}" for n in range(40)]
    store.send(*(prompt(s, ts(i), text=f"{s}-{i}") for i in range(25) for s in sessions))
    for session_id in sessions:
        assert [p["prompt"] for p in params_of(read(store, session_id))] == [
            f"{session_id}-{i}" for i in range(25)
        ]
    assert store.result("storage.stats")["sessions"] == 40


def test_events_sent_as_requests_are_acknowledged_with_increasing_seqs(store: Daemon) -> None:
    first = store.result("user.prompt.submit", prompt("a", ts(1))["params"])
    store.send(prompt("a", ts(2)))
    second = store.result("user.prompt.submit", prompt("a", ts(3))["params"])
    assert first["session_id"] == second["session_id"] == "a"
    assert second["seq"] == first["seq"] + 2
    assert store.result("storage.flush") == {"seq": second["seq"]}


def test_info_names_the_backend_and_stats_count_what_came_in(store: Daemon, backend: Backend) -> None:
    store.send(init("s"), b"not json", notification("no.such.method", session_id="s"))
    stats = store.result("storage.stats")
    assert (stats["received"], stats["persisted"], stats["rejected"]) == (4, 1, 2)  # 4: with itself
    assert store.result("storage.info")["backend"] == backend.name


# --- quarantine ----------------------------------------------------------------------------


def test_rejected_lines_are_kept_in_quarantine_and_valid_neighbours_stored(backend: Backend) -> None:
    garbage = [
        b"{not json",
        b'{"jsonrpc":"2.0","method":"user.prompt.submit","params":{"session_id":"q"}}',
        b"\xff\xfe",
    ]
    with backend.daemon() as daemon:
        daemon.send(prompt("q", ts(1)))
        daemon.send_raw(b"\n".join(garbage) + b"\n")
        daemon.send(prompt("q", ts(2)))
        assert len(read(daemon, "q")) == 2
        assert daemon.result("storage.stats")["rejected"] == 3
        assert daemon.close() == 0
    if backend.persistent:
        assert backend.quarantined() == garbage


# --- restarts ------------------------------------------------------------------------------


def test_a_restarted_daemon_serves_what_the_last_one_stored_and_appends_to_it(backend: Backend) -> None:
    with backend.daemon() as daemon:
        daemon.send(init("r", ts(0)), prompt("r", ts(2)))
        assert daemon.close() == 0
    with backend.daemon() as daemon:
        daemon.send(prompt("r", ts(1)))
        expected = [init("r", ts(0)), prompt("r", ts(1)), prompt("r", ts(2))]
        assert read(daemon, "r") == (expected if backend.persistent else [prompt("r", ts(1))])
        assert daemon.close() == 0


def test_usage_and_structured_results_of_later_generations_round_trip(store: Daemon) -> None:
    parts = [
        {"thinking": "hm", "signature": None},
        {"text": "done"},
        {"id": "c", "name": "n", "arguments": "{}"},
    ]
    final = notification(
        "session.stop",
        session_id="g",
        success=True,
        result=parts,
        error=None,
        usage=USAGE_TOKENS,
        timestamp=ts(2),
    )
    store.send(init("g", ts(0)), final)
    assert read(store, "g")[1] == final


# --- managing sessions: list, delete, fork, search -----------------------------------------


def tool_result(session_id: str, timestamp: str, **result: str) -> dict[str, Any]:
    return notification(
        "tool.result",
        session_id=session_id,
        turn_id="t1",
        result=result,
        tool_call_id="c1",
        timestamp=timestamp,
    )


def content_response(session_id: str, timestamp: str, text: str) -> dict[str, Any]:
    parts = [{"thinking": "hmm", "signature": None}, {"text": text}]
    return notification(
        "assistant.response", session_id=session_id, turn_id="t1", content=parts, timestamp=timestamp
    )


def test_list_sessions_summarises_each_session_newest_activity_first(store: Daemon) -> None:
    store.send(
        init("old", ts(0)),
        prompt("old", ts(1), text="Refactor the   parser\nplease"),
        stop("old", ts(2)),
        init("old", ts(3)),  # resumed: active again, a second stop sums usage
        stop("old", ts(4)),
        init("new", ts(10)),
        prompt("new", ts(11)),
    )
    summaries = store.result("storage.list_sessions")
    assert [s["session_id"] for s in summaries] == ["new", "old"]
    old = summaries[1]
    assert old["event_count"] == 5
    assert (old["first_timestamp"], old["last_timestamp"]) == (ts(0), ts(4))
    assert (old["model"], old["provider"], old["parent_session_id"]) == ("m", "p", None)
    assert (old["status"], old["success"]) == ("stopped", True)
    assert old["usage"]["latency"] == 20 and old["usage"]["input_chars"] == 2
    assert old["title"] == "Refactor the parser please"
    assert (summaries[0]["status"], summaries[0]["success"]) == ("active", None)


def test_list_sessions_pages_with_limit_and_before_and_filters_by_text(store: Daemon) -> None:
    store.send(*(init(f"s{n}", ts(n)) for n in range(5)), prompt("s1", ts(0.5), text="needle in here"))

    def listed(**params: Any) -> list[str]:
        return [s["session_id"] for s in store.result("storage.list_sessions", params)]

    assert listed(limit=2) == ["s4", "s3"]
    assert listed(limit=2, before=ts(3)) == ["s2", "s1"]
    assert listed(query="NEEDLE") == ["s1"]
    assert listed(query="s3") == ["s3"]
    assert listed(query="nothing like it") == []


def test_list_sessions_pages_through_many_sessions_of_one_instant_and_stats_count_them(store: Daemon) -> None:
    store.send(*(init(f"s{n:03d}", ts(1)) for n in range(520)), init("late", ts(2)))

    def listed(**params: Any) -> list[str]:
        return [s["session_id"] for s in store.result("storage.list_sessions", params)]

    everyone = ["late", *(f"s{n:03d}" for n in range(519, -1, -1))]  # ties: by id, descending
    assert listed(limit=1000) == everyone
    assert listed(limit=3, before=ts(2)) == everyone[1:4]
    assert listed(query="s0", limit=30) == [f"s{n:03d}" for n in range(99, 69, -1)]
    assert listed(query="9", limit=1000) == [sid for sid in everyone if "9" in sid]
    assert store.result("storage.stats")["sessions"] == 521


def test_list_sessions_pages_by_before_and_before_id_through_sessions_of_one_instant(
    store: Daemon,
) -> None:
    store.send(*(init(f"s{n:03d}", ts(1)) for n in range(40)), init("late", ts(2)), init("early", ts(0)))
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 7}
    while True:
        page = store.result("storage.list_sessions", params)
        seen += [s["session_id"] for s in page]
        if len(page) < 7:
            break
        last = page[-1]
        params = {"limit": 7, "before": last["last_timestamp"], "before_id": last["session_id"]}
    assert seen == ["late", *(f"s{n:03d}" for n in range(39, -1, -1)), "early"]


def test_delete_session_removes_its_events_summary_and_search_entries_only(store: Daemon) -> None:
    store.send(init("gone", ts(0)), prompt("gone", ts(1), text="zebra"), init("kept", ts(2)))
    assert store.result("storage.search", {"query": "zebra"})  # indexed before the delete
    assert store.result("storage.delete_session", {"session_id": "gone"}) == {"deleted": 2}
    assert read(store, "gone") == []
    assert [s["session_id"] for s in store.result("storage.list_sessions")] == ["kept"]
    assert store.result("storage.search", {"query": "zebra"}) == []
    assert store.result("storage.delete_session", ["nobody"]) == {"deleted": 0}
    assert read(store, "kept") == [init("kept", ts(2))]


def test_fork_copies_every_event_but_forks_then_appends_a_fork_event(store: Daemon) -> None:
    earlier_fork = notification("session.fork", session_id="p", parent_session_id="gp", timestamp=ts(0.5))
    parent = [init("p", ts(0)), earlier_fork, prompt("p", ts(1)), response("p", ts(2))]
    store.send(*parent)
    result = store.result("storage.fork_session", {"session_id": "p", "new_session_id": "child"})
    assert result == {"session_id": "child", "copied": 3}
    events = read(store, "child")
    copies = [parent[0], parent[2], parent[3]]
    assert events[:3] == [{**m, "params": {**m["params"], "session_id": "child"}} for m in copies]
    fork = events[3]
    assert fork["method"] == "session.fork"
    assert fork["params"]["session_id"] == "child" and fork["params"]["parent_session_id"] == "p"
    assert len(fork["params"]["timestamp"]) == len("2026-06-07T14:03:21.123456789Z")
    assert fork["params"]["timestamp"].endswith("Z")
    assert read(store, "p") == sorted(parent, key=lambda m: m["params"]["timestamp"])  # untouched
    child = next(s for s in store.result("storage.list_sessions") if s["session_id"] == "child")
    assert child["parent_session_id"] == "p" and child["event_count"] == 4


def test_fork_without_a_new_id_makes_a_uuid_and_an_unknown_parent_is_session_not_found(store: Daemon) -> None:
    store.send(init("p", ts(0)))
    new_id = store.result("storage.fork_session", ["p"])["session_id"]
    assert len(new_id) == 36 and new_id.count("-") == 4
    missing = store.request("storage.fork_session", {"session_id": "nobody"})
    assert missing["error"]["code"] == -32004
    taken = store.request("storage.fork_session", {"session_id": "p", "new_session_id": "p"})
    assert taken["error"]["code"] == -32602 and taken["error"]["data"]["field"] == "new_session_id"


def test_search_finds_words_in_prompts_answers_tool_results_and_final_results(store: Daemon) -> None:
    store.send(
        prompt("a", ts(1), text="Where is the Kestrel config?"),
        response("a", ts(2), text="The kestrel config lives in etc"),
        content_response("b", ts(3), "Parts can mention kestrel too"),
        tool_result("b", ts(4), Ok="file kestrel.toml found"),
        tool_result("b", ts(5), Err="kestrel permission denied"),
        stop("c", ts(6), result="final kestrel answer"),
        prompt("c", ts(7), text="unrelated words"),
    )
    hits = store.result("storage.search", {"query": "KESTREL"})
    assert [(h["session_id"], h["method"]) for h in hits] == [
        ("c", "session.stop"),
        ("b", "tool.result"),
        ("b", "tool.result"),
        ("b", "assistant.response"),
        ("a", "assistant.response"),
        ("a", "user.prompt.submit"),
    ]
    assert all("[" in h["snippet"] and "]" in h["snippet"] for h in hits)
    assert hits[0]["timestamp"] == ts(6)
    assert [h["session_id"] for h in store.result("storage.search", {"query": "kestrel config"})] == [
        "a",
        "a",
    ]
    assert len(store.result("storage.search", {"query": "kestrel", "session_id": "b", "limit": 2})) == 2
    assert store.result("storage.search", {"query": "absent"}) == []


def test_search_needs_a_word(store: Daemon) -> None:
    reply = store.request("storage.search", {"query": " ?! "})
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["field"] == "query"


def test_summaries_and_search_survive_a_restart(backend: Backend) -> None:
    if not backend.persistent:
        pytest.skip("the memory backend keeps nothing across runs, by design")
    with backend.daemon() as daemon:
        daemon.send(init("r", ts(0)), prompt("r", ts(1), text="persistent heron"))
        assert daemon.close() == 0
    with backend.daemon() as daemon:
        daemon.send(prompt("r", ts(2)))
        [summary] = daemon.result("storage.list_sessions")
        assert summary["event_count"] == 3 and summary["title"] == "persistent heron"
        assert [h["session_id"] for h in daemon.result("storage.search", ["heron"])] == ["r"]
        assert daemon.close() == 0


def test_search_words_split_at_underscores_and_keep_sharp_s(store: Daemon) -> None:
    store.send(prompt("w", ts(1), text="see parse_expr now"), prompt("w", ts(2), text="Die Straße"))
    assert [h["snippet"] for h in store.result("storage.search", ["parse"])] == ["see [parse]_expr now"]
    assert [h["snippet"] for h in store.result("storage.search", ["STRASSE"])] == []
    assert [h["snippet"] for h in store.result("storage.search", ["straße"])] == ["Die [Straße]"]


def test_a_session_another_process_deletes_and_recreates_is_summarised_afresh(backend: Backend) -> None:
    if not backend.persistent:
        pytest.skip("one process only: the memory backend is not shared")
    with backend.daemon() as writer:
        writer.send(prompt("s", ts(5), text="first life"))
        assert writer.result("storage.flush")["seq"] >= 1
        with backend.daemon() as other:
            assert other.result("storage.delete_session", ["s"]) == {"deleted": 1}
            assert other.close() == 0
        writer.send(prompt("s", ts(9), text="second life"))
        [summary] = writer.result("storage.list_sessions")
        assert (summary["event_count"], summary["title"]) == (1, "second life")
        assert writer.close() == 0
