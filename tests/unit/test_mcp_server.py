"""The MCP front-end's own pieces in-process (sidecar.mcp_server): cursors, pages that never
cut silently, the tools over a real in-memory core, and the watcher over the real hub."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from events import changed, event, init, prompt, response, stop
from mcp_sessions import long_session

from sidecar.config import Settings
from sidecar.core import Core, compose
from sidecar.mcp_server.paging import (
    BadCursor,
    SessionsCursor,
    TranscriptCursor,
    decode_cursor,
    encode_cursor,
    page_sessions,
    page_transcript,
)
from sidecar.mcp_server.tools import PAGE_CHARS, TOOLS, ToolError, Tools, UnknownTool, schema
from sidecar.mcp_server.watch import Watcher
from sidecar.store import open_store
from sidecar.store.base import SessionSummary

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


def render(events: list[dict[str, Any]], first_turn: int) -> str:
    """A stand-in renderer whose text grows with its events: one line per event."""
    return "".join(f"{first_turn}:{e['params'].get('prompt', e['method'])}\n" for e in events)


# --- cursors ----------------------------------------------------------------------------------


def test_a_cursor_comes_back_as_what_it_stands_for() -> None:
    cursor = TranscriptCursor("s", 120, 5, 300, ("tool.*",), True)
    assert decode_cursor(encode_cursor(cursor), TranscriptCursor) == cursor


def test_a_cursor_not_given_by_the_server_is_refused_with_a_way_on() -> None:
    with pytest.raises(BadCursor, match="start again without one"):
        decode_cursor("not-a-cursor!", TranscriptCursor)


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
        assert len(page.text) <= 2_000
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
        page = page_transcript(raw, start, 2, offset, render, 4_000)
        assert len(page.text) <= 4_000
        parts.append(page.text)
        if page.next_start is None:
            break
        start, offset = page.next_start, page.next_offset
    assert len(parts) == 4
    assert "".join(parts) == render([msgspec.json.decode(raw[1])], 1)


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
        assert len(page.structured["text"]) <= PAGE_CHARS
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
