"""The MCP tools in domain words: their arguments, results, schemas and descriptions, run on
the core's handlers. Knows no SDK and no wire: a tool answers structured data and the text
a model reads, or raises ToolError with a message the model can act on.

Read-only: every tool reads through the handlers; none writes, deletes or forks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from sidecar.clock import Clock, rfc3339
from sidecar.handlers import (
    MAX_INT,
    MAX_QUERY_CHARS,
    GetSessionParams,
    Handlers,
    ListSessionsParams,
    Methods,
    SearchParams,
)
from sidecar.markdown import Page, transcript_markdown
from sidecar.mcp_server.paging import (
    ASCII_CHARS_PER_TOKEN,
    MAX_CURSOR_CHARS,
    BadCursor,
    Render,
    SessionsCursor,
    TranscriptCursor,
    activity_ns,
    decode_cursor,
    encode_cursor,
    estimate_tokens,
    first_turn,
    fitting_chars,
    page_sessions,
    page_transcript,
    tail_start,
)
from sidecar.protocol import InvalidParams
from sidecar.store.base import SearchHit, SessionSummary, StoreFailure
from sidecar.transcript import build

# One page of read_session, in estimated tokens (paging.estimate_tokens), the line naming
# the cursor included. A result carries the page twice, as its text and as
# structuredContent.text: clients pass one or the other to the model (Claude Code and VS
# Code the structured one whenever there is one), so together they stay under the 20,000
# tokens aimed at, and under Claude Code's 25,000-token limit.
PAGE_TOKENS = 9_000
RESOURCE_TOKENS = PAGE_TOKENS  # a resource is the latest part of a session that fits this
EVERYTHING = 2**31  # a list_sessions limit that means all of them
URI_PREFIX = "microagents://sessions/"
CLOCK = Clock(utc=True)

S = TypeVar("S", bound=Struct)
SessionId = Annotated[str, Meta(min_length=1, max_length=MAX_QUERY_CHARS)]
Query = Annotated[str, Meta(max_length=MAX_QUERY_CHARS)]
Cursor = Annotated[str, Meta(min_length=1, max_length=MAX_CURSOR_CHARS)]


class ToolError(Exception):
    """What the model did wrong or what went wrong, said so that it can try again."""


class UnknownTool(Exception):
    """A name that is no tool: a protocol error, not a tool error."""


# --- arguments --------------------------------------------------------------------------------


def _doc(text: str) -> Meta:
    return Meta(description=text)


class ListSessionsArgs(Struct, forbid_unknown_fields=True):
    query: Annotated[
        Query | None, _doc("only sessions whose id, model, provider, parent or title holds this text")
    ] = None
    model: Annotated[Query | None, _doc("only sessions whose model name holds this text, e.g. 'sonnet'")] = (
        None
    )
    status: Annotated[
        Literal["active", "stopped"] | None, _doc("'active': not stopped yet; 'stopped': ended")
    ] = None
    since: Annotated[
        Query | None,
        _doc(
            "only sessions active since then: a duration back from now (90m, 2h, 7d, 2w), "
            "a date (2026-06-07) or an RFC 3339 time"
        ),
    ] = None
    before: Annotated[Query | None, _doc("only sessions last active before then; same forms as since")] = None
    limit: Annotated[int, Meta(ge=1, le=200, description="sessions per page (default 20)")] = 20
    cursor: Annotated[
        Cursor | None,
        _doc("next_cursor of an earlier list_sessions call: its next page, with the filters it had"),
    ] = None


class SearchSessionsArgs(Struct, forbid_unknown_fields=True):
    query: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            description="words that must all occur, each as a whole word, case-insensitive "
            "(not a phrase; no operators; at most 64 words)",
        ),
    ]
    session_id: Annotated[
        SessionId | None, _doc("search this session only: its id, or a unique start of it")
    ] = None
    limit: Annotated[int, Meta(ge=1, le=200, description="most hits returned, newest first (default 20)")] = (
        20
    )


class ReadSessionArgs(Struct, forbid_unknown_fields=True):
    session_id: Annotated[SessionId | None, _doc("the session's id, or a unique start of it")] = None
    methods: Annotated[
        Methods | None,
        _doc(
            "only events of these methods; 'tool.*' names a family "
            "(e.g. ['user.prompt.submit', 'assistant.response'])"
        ),
    ] = None
    last: (
        Annotated[int, Meta(ge=1, le=MAX_INT, description="only the last N events (after methods)")] | None
    ) = None
    first_event: (
        Annotated[int, Meta(ge=0, le=MAX_INT, description="the range's first event, from 0")] | None
    ) = None
    last_event: (
        Annotated[int, Meta(ge=0, le=MAX_INT, description="the range's last event, included")] | None
    ) = None
    full: Annotated[bool, _doc("tool input and output uncut (default: each cut at 2,000 characters)")] = False
    cursor: Annotated[
        Cursor | None,
        _doc("next_cursor of an earlier read_session call: the next page of that read, same filters"),
    ] = None


class SessionInfoArgs(Struct, forbid_unknown_fields=True):
    session_id: Annotated[SessionId, _doc("the session's id, or a unique start of it")]


# --- results ----------------------------------------------------------------------------------


class SessionList(Struct):
    sessions: list[SessionSummary]
    next_cursor: Annotated[str | None, Meta(description="pass as cursor for the next page; null on the last")]


class SearchResult(Struct):
    hits: Annotated[list[SearchHit], _doc("newest first; each snippet has the matched words in [brackets]")]


class SessionPage(Struct):
    session_id: str
    text: Annotated[
        str, Meta(description="this page of the transcript, as markdown (the same as the text content)")
    ]
    page: Annotated[int, Meta(description="the number of this page of the read, from 1")]
    first_event: Annotated[int, Meta(description="the page's first event, counted from 0")]
    last_event: Annotated[int, Meta(description="the page's last event, included")]
    total_events: Annotated[int, Meta(description="events in the session (of the methods asked, if any)")]
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
        "is not null, call again with cursor=next_cursor for more (the filters are kept; a cursor "
        "is valid as long as this server process runs).",
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
        f"sessions come in pages of at most about {PAGE_TOKENS:,} tokens (estimated: "
        f"{ASCII_CHARS_PER_TOKEN} characters of ASCII text or 1 other character a token), the "
        "page given both as text and as structuredContent.text, so under 20,000 tokens a call; "
        "pages are cut between turns where possible, never silently: when next_cursor is not "
        "null, call again with cursor=next_cursor (alone) for the next page. A cursor is valid "
        "only as long as this server process runs: after a restart, start again without it.",
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
        except BadCursor as exc:
            raise ToolError(f"cursor: {exc}") from None
        except InvalidParams as exc:
            field = exc.data.get("field")
            raise ToolError(f"{field}: {exc}" if field else str(exc)) from None
        except StoreFailure as exc:
            raise ToolError(f"the session store failed ({exc}); try again") from None

    # --- the tools ----------------------------------------------------------------------------

    async def list_sessions(self, args: ListSessionsArgs) -> ToolOutput:
        if args.cursor is not None:
            at = decode_cursor(args.cursor, SessionsCursor)
            _same(args, at, ("query", "model", "status", "since", "before"))
        else:
            at = SessionsCursor(
                None,
                "",
                args.query,
                args.model,
                args.status,
                _time("since", args.since),
                _time("before", args.before),
                args.since,
                args.before,
            )
        before = None if at.before_ns is None else rfc3339(at.before_ns)
        summaries = await self.handlers.list_sessions(
            _params(ListSessionsParams, limit=EVERYTHING, before=before, query=at.query)
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
        session_id = None if args.session_id is None else await self.resolve(args.session_id)
        hits = await self.handlers.search(
            _params(SearchParams, query=args.query, session_id=session_id, limit=args.limit)
        )
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
            _same(args, at, ("last", "first_event", "last_event"))
            if args.methods is not None and tuple(args.methods) != at.methods:
                raise ToolError(f"methods differ from the cursor's ({list(at.methods)}): {_WITHOUT_CURSOR}")
            if args.full and not at.full:
                raise ToolError(f"full differs from the cursor's (false): {_WITHOUT_CURSOR}")
        else:
            if args.session_id is None:
                raise ToolError("read_session needs session_id (or a cursor); list_sessions shows the ids")
            at = await self._first_read(args)
        payloads = await self.handlers.session_events(
            _params(GetSessionParams, session_id=at.session_id, methods=list(at.methods) or None)
        )
        total = len(payloads)
        end = total if at.end is None else min(at.end, total)
        if at.start >= end:
            if not payloads and args.cursor is None:
                raise ToolError(f"no events of session {at.session_id!r} match methods {list(at.methods)}")
            raise ToolError(f"session {at.session_id!r} has no events from {at.start} (it has {end})")
        summary = await self.summary(at.session_id)
        # The line naming the next cursor comes on top of the page: keep room for it.
        budget = PAGE_TOKENS - len(encode_cursor(at)) // 2 - 100
        render = _renderer(summary, at.page, total, bool(at.methods), at.full)
        try:  # folding and rendering thousands of events: off the event loop
            page = await asyncio.to_thread(
                page_transcript, payloads, at.start, end, at.offset, render, budget
            )
        except ValueError:  # a cursor of this process, but not for this session as it is now
            raise ToolError(f"cursor: {BadCursor.__doc__}; start again without it") from None
        cursor = None
        if page.next_start is not None:
            following = msgspec.structs.replace(
                at, start=page.next_start, offset=page.next_offset, page=at.page + 1
            )
            cursor = encode_cursor(following)
        first, last = page.first, page.end - 1
        heading = ""
        if at.offset:  # the rendered title is on the page where this event began
            heading = (
                f"*Page {at.page:,}: event {first:,} of {total:,}, "
                f"continued from character {at.offset:,}.*\n\n"
            )
        if cursor is None:
            footer = ""
        elif page.next_offset:
            footer = f'\n\n---\nEvent {last} goes on: call read_session with cursor "{cursor}".'
        else:
            footer = (
                f"\n\n---\nMore follows (events {page.end} to {end - 1}): "
                f'call read_session with cursor "{cursor}".'
            )
        result = SessionPage(at.session_id, heading + page.text, at.page, first, last, total, cursor)
        return _output(result, heading + page.text + footer)

    async def _first_read(self, args: ReadSessionArgs) -> TranscriptCursor:
        assert args.session_id is not None
        session_id = await self.resolve(args.session_id)
        methods = tuple(args.methods or ())
        if args.last is not None and (args.first_event is not None or args.last_event is not None):
            raise ToolError("give either last or first_event/last_event, not both")
        end: int | None
        if args.last is not None:
            query = _params(GetSessionParams, session_id=session_id, methods=list(methods) or None)
            count = len(await self.handlers.session_events(query))
            start, end = max(0, count - args.last), count
        else:
            start = args.first_event or 0
            end = None if args.last_event is None else args.last_event + 1
            if end is not None and end <= start:
                raise ToolError(f"last_event ({args.last_event}) comes before first_event ({start})")
        return TranscriptCursor(
            session_id,
            start,
            0,
            end,
            methods,
            args.full,
            last=args.last,
            first_event=args.first_event,
            last_event=args.last_event,
        )

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

    # --- the resource -------------------------------------------------------------------------

    async def resource_text(self, session_id: str) -> str | None:
        """A session's transcript as markdown (None: it has no events): the whole of it, or
        for a long session its latest part within RESOURCE_TOKENS and a line saying how to
        read the rest."""
        payloads = await self.handlers.session_events(_params(GetSessionParams, session_id=session_id))
        if not payloads:
            return None
        summary = await self.summary(session_id)
        render = _renderer(summary, None, len(payloads), False, False)
        return await asyncio.to_thread(_latest, session_id, payloads, render)

    # --- sessions by id -----------------------------------------------------------------------

    async def resolve(self, reference: str) -> str:
        """The id of the session `reference` names: its id or a unique start of it."""
        if await self.handlers.session_events(_params(GetSessionParams, session_id=reference, last=1)):
            return reference
        summaries = await self.handlers.list_sessions(
            _params(ListSessionsParams, limit=EVERYTHING, query=reference)
        )
        matches = sorted(s.session_id for s in summaries if s.session_id.startswith(reference))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ToolError(f"no session {reference!r}; list_sessions or search_sessions show the ids")
        shown = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
        raise ToolError(f"{reference!r} starts {len(matches)} session ids ({shown}): give more of it")

    async def summary(self, session_id: str) -> SessionSummary | None:
        summaries = await self.handlers.list_sessions(
            _params(ListSessionsParams, limit=EVERYTHING, query=session_id)
        )
        return next((s for s in summaries if s.session_id == session_id), None)


_WITHOUT_CURSOR = "a cursor goes on with the arguments it was made with; call without it to change them"


def _same(args: Struct, at: Struct, fields: Sequence[str]) -> None:
    """ToolError if an argument given beside a cursor is not the one the cursor was made with."""
    for field in fields:
        given, kept = getattr(args, field), getattr(at, field)
        if given is not None and given != kept:
            raise ToolError(f"{field} differs from the cursor's ({kept!r}): {_WITHOUT_CURSOR}")


def _params(kind: type[S], **fields: Any) -> S:
    """The handlers' params, validated as the daemon validates them (a Struct built directly
    is not: msgspec checks bounds on decode and convert only)."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise ToolError(f"bad arguments: {exc}") from None


def _renderer(
    summary: SessionSummary | None, number: int | None, total: int, filtered: bool, full: bool
) -> Render:
    """Markdown of part of a session, titled with where it lies and the session's facts from
    its summary (None: the session is gone; the part's own events tell what they can)."""

    def render(events: list[dict[str, Any]], first_turn: int, first: int) -> str:
        transcript = build(events)
        page = Page(
            number=number,
            first=first,
            last=first + len(events) - 1,
            total=total,
            filtered=filtered,
            model=summary.model if summary else transcript.model,
            provider=summary.provider if summary else transcript.provider,
            parent_session_id=summary.parent_session_id if summary else transcript.parent_session_id,
            started=summary.first_timestamp if summary else None,
            last_activity=summary.last_timestamp if summary else None,
            stopped=summary is not None and summary.status == "stopped",
            success=summary.success if summary else None,
            usage=summary.usage if summary else None,
        )
        return transcript_markdown(
            transcript, format_time=CLOCK.show, full=full, first_turn=first_turn, page=page
        )

    return render


def _latest(session_id: str, payloads: list[bytes], render: Render) -> str:
    start = tail_start(payloads, render, RESOURCE_TOKENS)
    if start == 0:  # the whole session fits: as `show --format markdown` gives it
        events = [msgspec.json.decode(raw) for raw in payloads]
        return transcript_markdown(build(events), format_time=CLOCK.show)
    note = (
        f"*A long session: the latest events only, from event {start:,} of {len(payloads):,}. "
        f"The read_session tool gives the rest in pages (session_id {session_id!r}, and "
        "first_event/last_event or its cursor).*\n\n"
    )
    events = [msgspec.json.decode(raw) for raw in payloads[start:]]
    text = render(events, first_turn(payloads, start), start)
    if estimate_tokens(text) > RESOURCE_TOKENS:  # one event too long on its own
        cut = fitting_chars(text, RESOURCE_TOKENS)
        text = text[:cut] + "\n\n*(cut here: read_session gives it whole)*\n"
    return note + text


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
