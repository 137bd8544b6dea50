"""The MCP front-end's own pieces in-process (sidecar.mcp_server): cursors, pages that never
cut silently, the tools over a real in-memory core, and the watcher over the real hub."""

from __future__ import annotations

import asyncio
import base64
import re
import threading
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import mcp_types as types
import msgspec
import pytest
from events import changed, event, init, prompt, response, stop
from mcp_sessions import at, long_session

from sidecar.config import Settings
from sidecar.core import Core, compose
from sidecar.mcp_server import tools as tools_module
from sidecar.mcp_server.paging import (
    BadCursor,
    SessionsCursor,
    TranscriptCursor,
    decode_cursor,
    encode_cursor,
    estimate_tokens,
    page_sessions,
    page_transcript,
)
from sidecar.mcp_server.server import McpApp
from sidecar.mcp_server.tools import (
    PAGE_TOKENS,
    RESOURCE_TOKENS,
    TOOLS,
    ToolError,
    Tools,
    UnknownTool,
    schema,
)
from sidecar.mcp_server.watch import Debounce, Watcher
from sidecar.store import open_store
from sidecar.store.base import SeqUnavailable, SessionSummary
from sidecar.transcript import build

WAIT_S = 5.0


class _NoLines:
    def write_line(self, line: bytes) -> None:
        pass

    @property
    def pending_bytes(self) -> int:
        return 0


@pytest.fixture
async def core() -> AsyncIterator[Core]:
    """The real core over a memory store: ingest to write the test's sessions, a hub to follow."""
    settings = Settings(backend="memory")
    store = open_store(settings)
    await store.open()
    composed = compose(store, settings, output=_NoLines())
    composed.ingest.start()
    yield composed
    assert composed.hub is not None
    await composed.hub.close()
    await composed.ingest.close(1.0)
    await store.close()


async def write(core: Core, messages: list[dict[str, Any]]) -> None:
    for message in messages:
        core.ingest.add(event(message))
    await core.ingest.drain()


def summary(session_id: str, last: str | None) -> SessionSummary:
    return SessionSummary(session_id, 1, last, last, None, None, None, "active", None, {}, None)


def render(events: list[dict[str, Any]], first_turn: int, first: int) -> str:
    """A stand-in renderer whose text grows with its events: one line per event."""
    return "".join(f"{first_turn}:{e['params'].get('prompt', e['method'])}\n" for e in events)


# --- cursors ----------------------------------------------------------------------------------


def test_a_cursor_comes_back_as_what_it_stands_for() -> None:
    cursor = TranscriptCursor("s", 120, 5, 300, ("tool.*",), True)
    assert decode_cursor(encode_cursor(cursor), TranscriptCursor) == cursor


def test_a_cursor_not_given_by_the_server_is_refused_with_a_way_on() -> None:
    with pytest.raises(BadCursor, match="start again without it"):
        decode_cursor("not-a-cursor!", TranscriptCursor)


@pytest.mark.parametrize(
    "cursor",
    [
        TranscriptCursor("s", -5),
        TranscriptCursor("s", 0, end=2**63),
        TranscriptCursor("s", 0, methods=("no such method!",)),
        SessionsCursor(None, "s", before_ns=2**63),
    ],
)
def test_a_cursor_out_of_bounds_is_refused_even_when_signed_here(cursor: Any) -> None:
    with pytest.raises(BadCursor, match="not one this server gave"):
        decode_cursor(encode_cursor(cursor), type(cursor))


def test_a_cursor_edited_or_from_another_process_is_refused() -> None:
    raw = bytearray(base64.urlsafe_b64decode(encode_cursor(TranscriptCursor("s", 0)) + "=="))
    raw[-3] ^= 1  # one bit of its JSON
    edited = base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(BadCursor, match="not one this server gave"):
        decode_cursor(edited, TranscriptCursor)


def test_a_cursor_of_another_listing_is_refused() -> None:
    listing = encode_cursor(SessionsCursor(1, "s"))
    with pytest.raises(BadCursor, match="another tool"):
        decode_cursor(listing, TranscriptCursor)


# --- sessions, newest first -------------------------------------------------------------------


def test_pages_of_sessions_show_each_once_newest_first_ties_by_id() -> None:
    sessions = [summary(f"s{n:02}", f"2026-06-07T14:00:{n // 3:02}Z") for n in range(20)]
    sessions.append(summary("no-time", None))
    seen: list[str] = []
    after = None
    while True:
        page, last = page_sessions(sessions, after, 6)
        seen += [s.session_id for s in page]
        if last is None:
            break
        after = SessionsCursor(last[0], last[1])
    assert sorted(seen) == sorted(s.session_id for s in sessions)
    assert seen[:3] == ["s18", "s19", "s15"]  # 14:00:06 first, then 14:00:05 by id
    assert seen[-1] == "no-time"


def test_a_session_active_since_the_listing_began_does_not_shift_the_next_page() -> None:
    sessions = [summary(f"s{n}", f"2026-06-07T14:00:0{n}Z") for n in range(6)]
    page, last = page_sessions(sessions, None, 3)
    assert last is not None
    sessions[0] = summary("s0", "2026-06-07T15:00:00Z")  # the oldest just got an event
    rest, _ = page_sessions(sessions, SessionsCursor(last[0], last[1]), 3)
    assert [s.session_id for s in page + rest] == ["s5", "s4", "s3", "s2", "s1"]


# --- transcripts in pages ---------------------------------------------------------------------


def payloads(messages: list[dict[str, Any]]) -> list[bytes]:
    return [msgspec.json.encode(m) for m in messages]


def test_pages_of_a_transcript_cover_every_event_once_and_fit_their_budget() -> None:
    raw = payloads(long_session("s", 300))
    start, offset, pages = 0, 0, []
    while True:
        page = page_transcript(raw, start, len(raw), offset, render, 2_000)
        assert estimate_tokens(page.text) <= 2_000
        assert page.first == start
        pages.append(page)
        if page.next_start is None:
            break
        start, offset = page.next_start, page.next_offset
    ends = [p.first for p in pages[1:]] + [len(raw)]
    assert [p.end for p in pages] == ends  # each page starts where the one before it ended
    text = "".join(p.text for p in pages)
    assert all(text.count(f"question-{n} ") == 1 for n in range(1, 301))


def test_a_page_ends_where_a_turn_begins_when_a_turn_fits() -> None:
    raw = payloads(long_session("s", 50))
    page = page_transcript(raw, 1, len(raw), 0, render, 1_000)
    assert page.next_start is not None
    assert msgspec.json.decode(raw[page.next_start])["method"] == "user.prompt.submit"


def test_the_turns_of_a_later_page_are_numbered_on_from_the_earlier_ones() -> None:
    raw = payloads(long_session("s", 50))
    page = page_transcript(raw, 1 + 4 * 10, len(raw), 0, render, 1_000)  # turn 11's prompt
    assert page.text.startswith("11:question-11 ")


def test_an_event_longer_than_a_page_goes_on_by_character_and_is_whole_once_joined() -> None:
    huge = "word " * 3_000
    raw = payloads(
        [init("s"), prompt("s", "2026-06-07T14:03:22Z", text=huge), stop("s", "2026-06-07T14:03:23Z")]
    )
    parts, start, offset = [], 1, 0
    while True:
        page = page_transcript(raw, start, 2, offset, render, 1_000)
        assert estimate_tokens(page.text) <= 1_000
        parts.append(page.text)
        if page.next_start is None:
            break
        start, offset = page.next_start, page.next_offset
    assert len(parts) == 6  # 15,000 characters at 3 a token, 1,000 tokens a part
    assert "".join(parts) == render([msgspec.json.decode(raw[1])], 1, 1)


# --- the tools --------------------------------------------------------------------------------


def test_every_tool_has_object_schemas_that_javascript_can_read() -> None:
    for spec in TOOLS:
        for struct in (spec.arguments, spec.result):
            document = schema(struct)
            assert document["type"] == "object"
            assert "\\Z" not in msgspec.json.encode(document).decode()


async def test_bad_arguments_are_a_tool_error_naming_the_field(core: Core) -> None:
    with pytest.raises(ToolError, match=r"bad arguments for list_sessions: .*limit"):
        await Tools(core.handlers).call("list_sessions", {"limit": "lots"})


async def test_an_unknown_argument_is_a_tool_error(core: Core) -> None:
    with pytest.raises(ToolError, match="sesion_id"):
        await Tools(core.handlers).call("session_info", {"sesion_id": "s"})


async def test_an_unknown_session_is_a_tool_error_pointing_to_list_sessions(core: Core) -> None:
    with pytest.raises(ToolError, match="no session 'nope'; list_sessions"):
        await Tools(core.handlers).call("read_session", {"session_id": "nope"})


async def test_an_unknown_tool_is_not_a_tool_error(core: Core) -> None:
    with pytest.raises(UnknownTool):
        await Tools(core.handlers).call("delete_session", {"session_id": "s"})


async def test_a_query_without_words_is_a_tool_error(core: Core) -> None:
    with pytest.raises(ToolError, match="no words"):
        await Tools(core.handlers).call("search_sessions", {"query": "!!"})


async def test_a_time_that_is_no_time_is_a_tool_error_with_examples(core: Core) -> None:
    with pytest.raises(ToolError, match=r"since: .*7d"):
        await Tools(core.handlers).call("list_sessions", {"since": "last tuesday"})


async def test_list_sessions_filters_by_model_and_status_and_pages_with_its_filters(core: Core) -> None:
    for n in range(5):
        model = "sonnet" if n % 2 else "gpt"
        await write(core, [changed(init(f"s{n}", f"2026-06-07T14:00:0{n}Z"), model=model)])
    await write(core, [stop("s3", "2026-06-07T14:00:09Z")])
    tools = Tools(core.handlers)
    first = await tools.call("list_sessions", {"model": "SONNET", "limit": 1})
    assert [s["session_id"] for s in first.structured["sessions"]] == ["s3"]
    cursor = first.structured["next_cursor"]
    assert f'cursor "{cursor}"' in first.text
    second = await tools.call("list_sessions", {"cursor": cursor, "limit": 5})
    assert [s["session_id"] for s in second.structured["sessions"]] == ["s1"]
    assert second.structured["next_cursor"] is None
    active = await tools.call("list_sessions", {"status": "active", "model": "sonnet"})
    assert [s["session_id"] for s in active.structured["sessions"]] == ["s1"]


async def test_read_session_pages_name_their_cursor_and_end_with_null(core: Core) -> None:
    await write(core, long_session("long", 600))
    tools = Tools(core.handlers)
    page = await tools.call("read_session", {"session_id": "long"})
    texts = [page.structured["text"]]
    while page.structured["next_cursor"] is not None:
        assert estimate_tokens(page.text) <= PAGE_TOKENS
        assert f'cursor "{page.structured["next_cursor"]}"' in page.text
        page = await tools.call("read_session", {"cursor": page.structured["next_cursor"]})
        texts.append(page.structured["text"])
    assert len(texts) > 1
    assert page.structured["last_event"] == page.structured["total_events"] - 1 == 4 * 600 + 1
    joined = "".join(texts)
    assert all(len(re.findall(rf"answer-{n}:", joined)) == 1 for n in range(1, 601))


async def test_read_session_takes_a_unique_start_of_an_id_and_the_last_events(core: Core) -> None:
    await write(core, [init("abc-123"), prompt("abc-123", "2026-06-07T14:03:22Z", text="opening question")])
    await write(core, [response("abc-123", "2026-06-07T14:03:23Z", text="the last word")])
    page = await Tools(core.handlers).call("read_session", {"session_id": "abc", "last": 1})
    assert page.structured["session_id"] == "abc-123"
    assert (page.structured["first_event"], page.structured["total_events"]) == (2, 3)
    assert "the last word" in page.text and "opening question" not in page.structured["text"]


async def test_session_info_says_what_the_store_knows_of_a_session(core: Core) -> None:
    await write(core, [init("s"), prompt("s", "2026-06-07T14:03:22Z", text="fix the build")])
    info = await Tools(core.handlers).call("session_info", {"session_id": "s"})
    assert info.structured["session"]["event_count"] == 2
    assert info.structured["uri"] == "microagents://sessions/s"
    assert "fix the build" in info.text


# --- watching sessions ------------------------------------------------------------------------


async def test_a_commit_to_a_watched_session_is_delivered_once_per_session(core: Core) -> None:
    assert core.hub is not None
    watcher = Watcher(core.hub)
    delivered: asyncio.Queue[str] = asyncio.Queue()

    async def deliver(session_id: str) -> None:
        await delivered.put(session_id)

    await watcher.hold("watched")
    await watcher.hold("watched")  # a second holder shares the one hub subscription
    task = asyncio.create_task(watcher.run(deliver))
    try:
        await write(core, [init("other")])
        await write(core, [init("watched"), prompt("watched", "2026-06-07T14:03:22Z")])
        assert await asyncio.wait_for(delivered.get(), WAIT_S) == "watched"
        watcher.release("watched")
        assert watcher.watched() == {"watched"}
        watcher.release("watched")
        assert watcher.watched() == set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- arguments the daemon would refuse --------------------------------------------------------


async def test_a_query_longer_than_the_daemon_takes_is_a_tool_error_naming_it(core: Core) -> None:
    with pytest.raises(ToolError, match="query"):
        await Tools(core.handlers).call("search_sessions", {"query": "a" * 10_000})


async def test_more_methods_than_the_daemon_takes_is_a_tool_error_naming_them(core: Core) -> None:
    await write(core, [init("s")])
    with pytest.raises(ToolError, match="methods"):
        await Tools(core.handlers).call("read_session", {"session_id": "s", "methods": ["a.b"] * 1_000})


async def test_an_empty_session_id_is_a_tool_error(core: Core) -> None:
    with pytest.raises(ToolError, match="session_id"):
        await Tools(core.handlers).call("session_info", {"session_id": ""})


async def test_a_forged_cursor_is_a_tool_error_not_a_crash(core: Core) -> None:
    forged = {"type": "sessions", "last_ns": None, "session_id": "", "before_ns": 10**30}
    cursor = base64.urlsafe_b64encode(msgspec.json.encode(forged)).decode()
    with pytest.raises(ToolError, match="not one this server gave"):
        await Tools(core.handlers).call("list_sessions", {"cursor": cursor})


async def test_arguments_beside_a_cursor_must_be_the_cursors(core: Core) -> None:
    await write(core, long_session("long", 600))
    tools = Tools(core.handlers)
    first = await tools.call("read_session", {"session_id": "long", "first_event": 3})
    cursor = first.structured["next_cursor"]
    again = await tools.call("read_session", {"session_id": "long", "first_event": 3, "cursor": cursor})
    assert again.structured["first_event"] == first.structured["last_event"] + 1
    with pytest.raises(ToolError, match="first_event differs from the cursor's"):
        await tools.call("read_session", {"first_event": 9, "cursor": cursor})
    await write(core, [init("other")])
    listing = (await tools.call("list_sessions", {"model": "m", "limit": 1})).structured["next_cursor"]
    with pytest.raises(ToolError, match="model differs"):
        await tools.call("list_sessions", {"model": "gpt", "cursor": listing})


async def test_search_takes_a_unique_start_of_a_session_id_and_names_an_unknown_one(core: Core) -> None:
    await write(core, [init("abc-123"), prompt("abc-123", at(1), text="kestrel config")])
    await write(core, [init("xyz"), prompt("xyz", at(2), text="kestrel config")])
    tools = Tools(core.handlers)
    found = await tools.call("search_sessions", {"query": "kestrel", "session_id": "abc"})
    assert {h["session_id"] for h in found.structured["hits"]} == {"abc-123"}
    with pytest.raises(ToolError, match="no session 'nope'"):
        await tools.call("search_sessions", {"query": "kestrel", "session_id": "nope"})


# --- what a page says -------------------------------------------------------------------------


async def test_a_page_of_non_ascii_text_stays_within_its_token_budget(core: Core) -> None:
    answers = [response("wide", at(2 * n + 2), text="キツツキ" * 500) for n in range(40)]
    await write(core, [init("wide", at(0)), prompt("wide", at(1), text="話して"), *answers])
    page = await Tools(core.handlers).call("read_session", {"session_id": "wide"})
    assert page.structured["next_cursor"] is not None
    assert estimate_tokens(page.text) <= PAGE_TOKENS
    assert estimate_tokens(page.text) + estimate_tokens(page.structured["text"]) < 20_000


async def test_every_page_of_a_stopped_session_says_it_stopped_and_its_model(core: Core) -> None:
    await write(core, long_session("long", 600))
    tools = Tools(core.handlers)
    first = await tools.call("read_session", {"session_id": "long"})
    second = await tools.call("read_session", {"cursor": first.structured["next_cursor"]})
    last, end = second.structured["last_event"], second.structured["first_event"]
    assert f"page 2: events {end:,}\N{EN DASH}{last:,} of 2,402" in second.text
    assert "**Stopped:**" in second.text and "not stopped" not in second.text
    assert "`m`" in second.text  # the model, from the session's summary
    assert f"**Started:** {tools_module.CLOCK.show(at(0))}" in second.text


async def test_a_result_whose_call_is_on_another_page_says_so(core: Core) -> None:
    await write(core, long_session("long", 3))
    page = await Tools(core.handlers).call("read_session", {"session_id": "long", "last": 3})
    assert "its call is on another page or filtered out" in page.text
    assert "not in this session" not in page.text


async def test_total_events_is_the_sessions_whatever_the_range(core: Core) -> None:
    await write(core, long_session("long", 10))
    page = await Tools(core.handlers).call(
        "read_session", {"session_id": "long", "first_event": 4, "last_event": 8}
    )
    assert (page.structured["first_event"], page.structured["last_event"]) == (4, 8)
    assert page.structured["total_events"] == 42


# --- resources and the event loop -------------------------------------------------------------


async def test_the_resource_of_a_long_session_is_its_latest_part_and_says_how_to_read_the_rest(
    core: Core,
) -> None:
    await write(core, long_session("long", 600))
    text = await Tools(core.handlers).resource_text("long")
    assert text is not None and text.startswith("*A long session: the latest events only")
    assert "read_session" in text and "answer-600:" in text and "answer-1:" not in text
    assert estimate_tokens(text) <= RESOURCE_TOKENS + 100  # the note on top


async def test_sessions_are_rendered_off_the_event_loop(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def recording(events: Any) -> Any:
        threads.add(threading.get_ident())
        return build(events)

    monkeypatch.setattr(tools_module, "build", recording)
    await write(core, long_session("long", 5))
    tools = Tools(core.handlers)
    await tools.call("read_session", {"session_id": "long"})
    await tools.resource_text("long")
    assert threads and loop_thread not in threads


# --- subscriptions through the server ---------------------------------------------------------


class GatedWatcher(Watcher):
    """A watcher whose hold waits at a gate, as a hub subscription waits for the store."""

    def __init__(self, core: Core) -> None:
        assert core.hub is not None
        super().__init__(core.hub)
        self.gate = asyncio.Event()
        self.waiting = 0
        self.all_waiting = asyncio.Event()

    async def hold(self, session_id: str) -> None:
        self.waiting += 1
        self.all_waiting.set()
        await self.gate.wait()
        await super().hold(session_id)


async def test_concurrent_subscribes_of_a_client_leave_nothing_held_after_its_unsubscribe(core: Core) -> None:
    watcher = GatedWatcher(core)
    app = McpApp(core, watcher)
    ctx = cast(Any, SimpleNamespace(session=object()))
    params = types.SubscribeRequestParams(uri="microagents://sessions/s")
    subscribes = [asyncio.create_task(app.subscribe(ctx, params)) for _ in range(3)]
    await asyncio.wait_for(watcher.all_waiting.wait(), WAIT_S)
    watcher.gate.set()
    await asyncio.wait_for(asyncio.gather(*subscribes), WAIT_S)
    await app.unsubscribe(ctx, types.UnsubscribeRequestParams(uri="microagents://sessions/s"))
    assert watcher.watched() == set()


# --- notices: debounced, and never silently ended ---------------------------------------------


def test_changes_within_the_interval_are_told_once_and_the_last_is_told_after_it() -> None:
    debounce = Debounce(1.0)
    debounce.changed("s")
    assert debounce.due(10.0) == ["s"]  # the first at once
    for now in (10.1, 10.2, 10.5):
        debounce.changed("s")
        assert debounce.due(now) == []
    assert debounce.wait(10.5) == pytest.approx(0.5)
    assert debounce.due(11.0) == ["s"]  # the trailing one
    assert debounce.wait(11.0) is None and debounce.due(20.0) == []


def test_sessions_are_debounced_each_on_its_own() -> None:
    debounce = Debounce(1.0)
    debounce.changed("a")
    assert debounce.due(0.0) == ["a"]
    debounce.changed("a")
    debounce.changed("b")
    assert debounce.due(0.5) == ["b"]


async def test_the_last_change_of_a_burst_is_told(core: Core) -> None:
    assert core.hub is not None
    watcher = Watcher(core.hub, interval=0.05)
    delivered: asyncio.Queue[str] = asyncio.Queue()

    async def deliver(session_id: str) -> None:
        await delivered.put(session_id)

    await watcher.hold("s")
    task = asyncio.create_task(watcher.run(deliver))
    try:
        await write(core, [init("s")])
        assert await asyncio.wait_for(delivered.get(), WAIT_S) == "s"
        await write(core, [prompt("s", at(1))])
        await write(core, [prompt("s", at(2))])
        assert await asyncio.wait_for(delivered.get(), WAIT_S) == "s"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_watch_the_hub_ended_is_renewed_and_told(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    assert core.hub is not None
    watcher = Watcher(core.hub, interval=0.0)
    delivered: asyncio.Queue[str] = asyncio.Queue()

    async def deliver(session_id: str) -> None:
        await delivered.put(session_id)

    store = core.ingest.store
    events_after = store.events_after
    failed = asyncio.Event()

    async def once_unavailable(after: int, limit: int, max_bytes: int | None = None) -> Any:
        if not failed.is_set():
            failed.set()
            raise SeqUnavailable("pruned")
        return await events_after(after, limit, max_bytes)

    await watcher.hold("s")
    monkeypatch.setattr(store, "events_after", once_unavailable)
    task = asyncio.create_task(watcher.run(deliver))
    try:
        await write(core, [init("s")])
        assert await asyncio.wait_for(delivered.get(), WAIT_S) == "s"
        assert failed.is_set() and watcher.watched() == {"s"}
        await write(core, [prompt("s", at(1))])  # followed again
        assert await asyncio.wait_for(delivered.get(), WAIT_S) == "s"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
