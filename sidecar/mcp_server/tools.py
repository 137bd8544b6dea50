"""The MCP tools in domain words: their arguments, results, schemas and descriptions, run on
the core's handlers. Knows no SDK and no wire: a tool answers structured data and the text
a model reads, or raises ToolError with a message the model can act on.

Read-only: every tool reads through the handlers; none writes, deletes or forks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from sidecar.clock import Clock, rfc3339
from sidecar.handlers import METHOD_PATTERN, GetSessionParams, Handlers, ListSessionsParams, SearchParams
from sidecar.markdown import transcript_markdown
from sidecar.mcp_server.paging import (
    BadCursor,
    SessionsCursor,
    TranscriptCursor,
    activity_ns,
    decode_cursor,
    encode_cursor,
    page_sessions,
    page_transcript,
)
from sidecar.protocol import InvalidParams
from sidecar.store.base import SearchHit, SessionSummary, StoreFailure
from sidecar.transcript import build

# One page of read_session: ~15,000 tokens at ~4 characters a token, well under the
# 25,000-token default limit of Claude Code even where a client shows the structured
# copy too. The heading and the line naming the cursor come on top.
PAGE_CHARS = 60_000
EVERYTHING = 2**31  # a list_sessions limit that means all of them
URI_PREFIX = "microagents://sessions/"
CLOCK = Clock(utc=True)

MethodPattern = Annotated[str, Meta(pattern=METHOD_PATTERN)]


class ToolError(Exception):
    """What the model did wrong or what went wrong, said so that it can try again."""


class UnknownTool(Exception):
    """A name that is no tool: a protocol error, not a tool error."""


# --- arguments --------------------------------------------------------------------------------


def _doc(text: str) -> Meta:
    return Meta(description=text)


class ListSessionsArgs(Struct, forbid_unknown_fields=True):
    query: Annotated[
        str | None, _doc("only sessions whose id, model, provider, parent or title holds this text")
    ] = None
    model: Annotated[str | None, _doc("only sessions whose model name holds this text, e.g. 'sonnet'")] = None
    status: Annotated[
        Literal["active", "stopped"] | None, _doc("'active': not stopped yet; 'stopped': ended")
    ] = None
    since: Annotated[
        str | None,
        _doc(
            "only sessions active since then: a duration back from now (90m, 2h, 7d, 2w), "
            "a date (2026-06-07) or an RFC 3339 time"
        ),
    ] = None
    before: Annotated[str | None, _doc("only sessions last active before then; same forms as since")] = None
    limit: Annotated[int, Meta(ge=1, le=200, description="sessions per page (default 20)")] = 20
    cursor: Annotated[
        str | None,
        _doc("next_cursor of an earlier list_sessions call: its next page, with the filters it had"),
    ] = None


class SearchSessionsArgs(Struct, forbid_unknown_fields=True):
    query: Annotated[
        str,
        Meta(
            min_length=1,
            description="words that must all occur, each as a whole word, case-insensitive "
            "(not a phrase; no operators)",
        ),
    ]
    session_id: Annotated[str | None, _doc("search this session only")] = None
    limit: Annotated[int, Meta(ge=1, le=200, description="most hits returned, newest first (default 20)")] = (
        20
    )


class ReadSessionArgs(Struct, forbid_unknown_fields=True):
    session_id: Annotated[str | None, _doc("the session's id, or a unique start of it")] = None
    methods: Annotated[
        list[MethodPattern] | None,
        _doc(
            "only events of these methods; 'tool.*' names a family "
            "(e.g. ['user.prompt.submit', 'assistant.response'])"
        ),
    ] = None
    last: Annotated[int, Meta(ge=1, description="only the last N events (after methods)")] | None = None
    first_event: Annotated[int, Meta(ge=0, description="the range's first event, from 0")] | None = None
    last_event: Annotated[int, Meta(ge=0, description="the range's last event, included")] | None = None
    full: Annotated[bool, _doc("tool input and output uncut (default: each cut at 2,000 characters)")] = False
    cursor: Annotated[
        str | None,
        _doc("next_cursor of an earlier read_session call: the next page of that read, same filters"),
    ] = None


class SessionInfoArgs(Struct, forbid_unknown_fields=True):
    session_id: Annotated[str, _doc("the session's id, or a unique start of it")]


# --- results ----------------------------------------------------------------------------------


class SessionList(Struct):
    sessions: list[SessionSummary]
    next_cursor: Annotated[str | None, Meta(description="pass as cursor for the next page; null on the last")]


class SearchResult(Struct):
    hits: Annotated[list[SearchHit], _doc("newest first; each snippet has the matched words in [brackets]")]


class SessionPage(Struct):
    session_id: str
    text: Annotated[str, Meta(description="this page of the transcript, as markdown")]
    first_event: Annotated[int, Meta(description="the page's first event, counted from 0")]
    last_event: Annotated[int, Meta(description="the page's last event, included")]
    total_events: Annotated[int, Meta(description="events in the read (after filters and range)")]
    next_cursor: Annotated[str | None, Meta(description="pass as cursor for the next page; null on the last")]


class SessionInfo(Struct):
    session: SessionSummary
    uri: Annotated[str, Meta(description="the session as an MCP resource: its whole transcript as markdown")]


class ToolOutput(Struct, frozen=True):
    structured: dict[str, Any]
    text: str


class ToolSpec(Struct, frozen=True):
    name: str
    title: str
    description: str
    arguments: type[Struct]
    result: type[Struct]


TOOLS = (
    ToolSpec(
        "list_sessions",
        "List agent sessions",
        "List the recorded agent sessions, most recently active first: id, event count, first and "
        "last activity, model, provider, status (active or stopped), success, token usage, parent "
        "session of a fork, and title (the first prompt, shortened). Filter by text, model, status "
        "and time (since/before take '2h', '7d', '2026-06-07' or RFC 3339). Paged: when next_cursor "
        "is not null, call again with cursor=next_cursor for more (the filters are kept).",
        ListSessionsArgs,
        SessionList,
    ),
    ToolSpec(
        "search_sessions",
        "Search agent sessions",
        "Find events whose text (prompts, answers, thinking, tool calls and results) holds every "
        "word of the query, each as a whole word, case-insensitive. Returns hits newest first: "
        "session_id, seq, method, time and a snippet with the matched words in [brackets]. Read "
        "the surroundings of a hit with read_session (session_id, and methods or last to narrow).",
        SearchSessionsArgs,
        SearchResult,
    ),
    ToolSpec(
        "read_session",
        "Read an agent session",
        "Read a session as a markdown transcript: turns with the user's prompts, the assistant's "
        "text (streamed deltas joined), thinking, tool calls each with its result, errors, usage "
        "and how the session ended. Narrow it with methods (e.g. ['user.prompt.submit', "
        "'assistant.response']), last N events, or first_event/last_event (counted from 0). Long "
        f"sessions come in pages of at most {PAGE_CHARS:,} characters (about "
        f"{PAGE_CHARS // 4:,} tokens), cut between turns where possible, never silently: when "
        "next_cursor is not null, call again with cursor=next_cursor for the next page.",
        ReadSessionArgs,
        SessionPage,
    ),
    ToolSpec(
        "session_info",
        "Describe an agent session",
        "The summary of one session without its events: event count, first and last activity, "
        "model, provider, status, success, token usage, the parent session it was forked from, "
        "title, and its resource URI.",
        SessionInfoArgs,
        SessionInfo,
    ),
)


def schema(struct: type[Struct]) -> dict[str, Any]:
    """A Struct's JSON schema with the object at the top, as MCP wants it, and its
    nested definitions beside it (their references stay valid)."""
    generated = msgspec.json.schema(struct)
    definitions = generated["$defs"]
    top = dict(definitions.pop(struct.__name__))
    top.pop("title", None)
    if definitions:
        top["$defs"] = definitions
    return _ecma_patterns(top)


def _ecma_patterns(node: dict[str, Any]) -> dict[str, Any]:
    fixed: dict[str, Any] = _fix_patterns(node)
    return fixed


def _fix_patterns(node: Any) -> Any:
    """msgspec writes a pattern's `$` as Python's `\\Z`, which JSON Schema's (ECMA 262)
    regular expressions do not know: clients in JavaScript would reject the schema."""
    if isinstance(node, dict):
        return {
            key: value.replace("\\Z", "$")
            if key == "pattern" and isinstance(value, str)
            else _fix_patterns(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_fix_patterns(value) for value in node]
    return node


class Tools:
    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self._run: dict[str, tuple[type[Struct], Callable[[Any], Awaitable[ToolOutput]]]] = {
            "list_sessions": (ListSessionsArgs, self.list_sessions),
            "search_sessions": (SearchSessionsArgs, self.search_sessions),
            "read_session": (ReadSessionArgs, self.read_session),
            "session_info": (SessionInfoArgs, self.session_info),
        }

    async def call(self, name: str, arguments: dict[str, Any] | None) -> ToolOutput:
        """UnknownTool for a name that is no tool; ToolError for anything a model can fix or retry."""
        if name not in self._run:
            raise UnknownTool(f"no tool {name!r}; the tools are {', '.join(self._run)}")
        kind, run = self._run[name]
        try:
            args = msgspec.convert(arguments or {}, kind)
        except msgspec.ValidationError as exc:
            raise ToolError(f"bad arguments for {name}: {exc}") from None
        try:
            return await run(args)
        except (InvalidParams, BadCursor) as exc:
            raise ToolError(str(exc)) from None
        except StoreFailure as exc:
            raise ToolError(f"the session store failed ({exc}); try again") from None

    # --- the tools ----------------------------------------------------------------------------

    async def list_sessions(self, args: ListSessionsArgs) -> ToolOutput:
        if args.cursor is not None:
            at = decode_cursor(args.cursor, SessionsCursor)
        else:
            at = SessionsCursor(
                None,
                "",
                args.query,
                args.model,
                args.status,
                _time("since", args.since),
                _time("before", args.before),
            )
        before = None if at.before_ns is None else rfc3339(at.before_ns)
        summaries = await self.handlers.list_sessions(
            ListSessionsParams(limit=EVERYTHING, before=before, query=at.query)
        )
        kept = [s for s in summaries if _keeps(at, s)]
        page, last = page_sessions(kept, at if args.cursor is not None else None, args.limit)
        cursor = None
        if last is not None:
            cursor = encode_cursor(msgspec.structs.replace(at, last_ns=last[0], session_id=last[1]))
        lines = [_session_line(s) for s in page] or ["No sessions match."]
        if cursor is not None:
            lines.append(f'\nMore sessions: call list_sessions with cursor "{cursor}".')
        return _output(SessionList(page, cursor), "\n".join(lines))

    async def search_sessions(self, args: SearchSessionsArgs) -> ToolOutput:
        hits = await self.handlers.search(SearchParams(args.query, args.session_id, args.limit))
        lines = [
            f"- `{h.session_id}` seq {h.seq if h.seq is not None else '?'} · {h.method} · "
            f"{CLOCK.show(h.timestamp)}: {_one_line(h.snippet)}"
            for h in hits
        ]
        if not lines:
            lines = [f"No event holds every word of {args.query!r}."]
        elif len(hits) == args.limit:
            lines.append(f"\n{len(hits)} hits shown, the newest; there may be more (raise limit, up to 200).")
        return _output(SearchResult(hits), "\n".join(lines))

    async def read_session(self, args: ReadSessionArgs) -> ToolOutput:
        if args.cursor is not None:
            at = decode_cursor(args.cursor, TranscriptCursor)
            if args.session_id is not None and args.session_id != at.session_id:
                raise ToolError(f"this cursor reads session {at.session_id!r}, not {args.session_id!r}")
        else:
            if args.session_id is None:
                raise ToolError("read_session needs session_id (or a cursor); list_sessions shows the ids")
            at = await self._first_read(args)
        payloads = await self.handlers.session_events(
            GetSessionParams(session_id=at.session_id, methods=list(at.methods) or None)
        )
        end = len(payloads) if at.end is None else min(at.end, len(payloads))
        if at.start >= end:
            if not payloads and args.cursor is None:
                raise ToolError(f"no events of session {at.session_id!r} match methods {list(at.methods)}")
            raise ToolError(f"session {at.session_id!r} has no events from {at.start} (it has {end})")

        def render(events: list[dict[str, Any]], first_turn: int) -> str:
            return transcript_markdown(
                build(events), format_time=CLOCK.show, full=at.full, first_turn=first_turn
            )

        page = page_transcript(payloads, at.start, end, at.offset, render, PAGE_CHARS)
        cursor = None
        if page.next_start is not None:
            cursor = encode_cursor(
                msgspec.structs.replace(at, start=page.next_start, offset=page.next_offset, end=at.end)
            )
        first, last = page.first, page.end - 1
        part = f" (part from character {at.offset:,})" if at.offset else ""
        whole = (first, last + 1, at.offset, cursor) == (0, end, 0, None)
        shown = f"Event {first}" if first == last else f"Events {first} to {last}"
        heading = "" if whole else f"*{shown} of {end} (counted from 0){part}.*\n\n"
        if cursor is None:
            footer = ""
        elif page.next_offset:
            footer = f'\n\n---\nEvent {last} goes on: call read_session with cursor "{cursor}".'
        else:
            footer = (
                f"\n\n---\nMore follows (events {page.end} to {end - 1}): "
                f'call read_session with cursor "{cursor}".'
            )
        result = SessionPage(at.session_id, page.text, first, last, end, cursor)
        return _output(result, heading + page.text + footer)

    async def _first_read(self, args: ReadSessionArgs) -> TranscriptCursor:
        assert args.session_id is not None
        session_id = await self.resolve(args.session_id)
        methods = tuple(args.methods or ())
        if args.last is not None and (args.first_event is not None or args.last_event is not None):
            raise ToolError("give either last or first_event/last_event, not both")
        if args.last is not None:
            query = GetSessionParams(session_id, methods=list(methods) or None)
            count = len(await self.handlers.session_events(query))
            return TranscriptCursor(session_id, max(0, count - args.last), 0, count, methods, args.full)
        start = args.first_event or 0
        end = None if args.last_event is None else args.last_event + 1
        if end is not None and end <= start:
            raise ToolError(f"last_event ({args.last_event}) comes before first_event ({start})")
        return TranscriptCursor(session_id, start, 0, end, methods, args.full)

    async def session_info(self, args: SessionInfoArgs) -> ToolOutput:
        session_id = await self.resolve(args.session_id)
        summary = await self.summary(session_id)
        if summary is None:
            raise ToolError(f"no session {args.session_id!r}; list_sessions shows the ids")
        info = SessionInfo(summary, session_uri(session_id))
        usage = ", ".join(f"{k} {v:,}" for k, v in summary.usage.items()) or "none recorded"
        lines = [
            f"Session `{summary.session_id}`: {summary.title or '(no prompt)'}",
            f"- {_events(summary.event_count)}",
            f"- first activity: {CLOCK.show(summary.first_timestamp)}",
            f"- last activity: {CLOCK.show(summary.last_timestamp)}",
            f"- status: {_status(summary)}",
            f"- model: {summary.model or '?'} (provider {summary.provider or '?'})",
            f"- usage: {usage}",
        ]
        if summary.parent_session_id:
            lines.append(f"- forked from: `{summary.parent_session_id}`")
        lines.append(f"- resource: {info.uri}")
        return _output(info, "\n".join(lines))

    # --- sessions by id -----------------------------------------------------------------------

    async def resolve(self, reference: str) -> str:
        """The id of the session `reference` names: its id or a unique start of it."""
        if await self.handlers.session_events(GetSessionParams(session_id=reference, last=1)):
            return reference
        summaries = await self.handlers.list_sessions(ListSessionsParams(limit=EVERYTHING, query=reference))
        matches = sorted(s.session_id for s in summaries if s.session_id.startswith(reference))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ToolError(f"no session {reference!r}; list_sessions or search_sessions show the ids")
        shown = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
        raise ToolError(f"{reference!r} starts {len(matches)} session ids ({shown}): give more of it")

    async def summary(self, session_id: str) -> SessionSummary | None:
        summaries = await self.handlers.list_sessions(ListSessionsParams(limit=EVERYTHING, query=session_id))
        return next((s for s in summaries if s.session_id == session_id), None)


def session_uri(session_id: str) -> str:
    from urllib.parse import quote

    return URI_PREFIX + quote(session_id, safe="")


def _output(result: Struct, text: str) -> ToolOutput:
    return ToolOutput(msgspec.to_builtins(result), text)


def _time(field: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return CLOCK.parse(text)
    except ValueError as exc:
        raise ToolError(f"{field}: {exc}") from None


def _keeps(at: SessionsCursor, summary: SessionSummary) -> bool:
    if at.status is not None and summary.status != at.status:
        return False
    if at.model is not None and at.model.casefold() not in (summary.model or "").casefold():
        return False
    if at.since_ns is not None:
        ns = activity_ns(summary)
        return ns is not None and ns >= at.since_ns
    return True


def _status(summary: SessionSummary) -> str:
    return summary.status + (
        "" if summary.success is None else (", succeeded" if summary.success else ", failed")
    )


def _session_line(s: SessionSummary) -> str:
    title = f" — {_one_line(s.title)}" if s.title else ""
    return (
        f"- `{s.session_id}` · {_events(s.event_count)} · last {CLOCK.show(s.last_timestamp) or '?'} · "
        f"{_status(s)} · {s.model or '?'}{title}"
    )


def _events(count: int) -> str:
    return f"{count:,} event{'' if count == 1 else 's'}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
