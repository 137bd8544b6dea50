"""The command line's subcommands: the daemon's own handlers and ingest, run in-process
on the store the options name, with output for people or, with --json, for programs.

Exit codes: 0 success; 1 not found, or input lines rejected (import); 2 usage (invalid
arguments); 3 the store failed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from sidecar import protocol, render
from sidecar.clock import Clock, rfc3339
from sidecar.config import Settings, missing_store
from sidecar.core import compose
from sidecar.dispatch import Dispatcher
from sidecar.framing import LineSplitter
from sidecar.handlers import (
    ForkParams,
    GetSessionParams,
    Handlers,
    ListSessionsParams,
    SearchParams,
    SessionParams,
)
from sidecar.ingest import Ingest
from sidecar.markdown import transcript_markdown
from sidecar.output import Column, Output
from sidecar.protocol import InvalidParams, RpcError, SessionNotFound
from sidecar.stdio import StdoutWriter
from sidecar.store import Store, StoreFailure, open_store
from sidecar.store.base import Event, Rejected, SeqUnavailable, SessionQuery, SessionSummary
from sidecar.subscriptions import Hub
from sidecar.timestamps import TimestampError, parse_ns
from sidecar.transcript import build as build_transcript
from sidecar.transcript import decoded as decoded_events

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_STORE_FAILED = 3
EVERYTHING = 2**31  # a list_sessions limit that means all of them
PROGRESS_EVERY_S = 2.0
TAIL_OUTPUT_BYTES = 4 * 1024 * 1024  # what tail queues for a slow terminal before it pauses
TAIL_DRAIN_S = 1.0  # at exit, how long to wait for the terminal to take what is queued
READ_CHUNK = 1024 * 1024

Command = Callable[[argparse.Namespace, Handlers, Settings], Awaitable[int]]


class Failed(Exception):
    """A command's own error: a message for stderr and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# Commands that act on what a store holds: they never create one (a mistyped --db is an
# error); only the daemon and import create.
READ_ONLY = frozenset({"list", "show", "export", "search", "stats", "tail", "delete", "fork", "prune"})


async def run_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in READ_ONLY and (missing := missing_store(settings)) is not None:
        return _fail(f"no store at {missing}", EXIT_NOT_FOUND)
    store = open_store(settings)
    try:
        await store.open()
    except StoreFailure as exc:
        await store.close()
        return _fail(str(exc), EXIT_STORE_FAILED)
    core = compose(store, settings)
    ingest, handlers = core.ingest, core.handlers
    ingest.start()
    try:
        code = await COMMANDS[args.command](args, handlers, settings)
    except Failed as exc:
        code = _fail(str(exc), exc.code)
    except SessionNotFound as exc:
        code = _fail(str(exc), EXIT_NOT_FOUND)
    except InvalidParams as exc:
        code = _fail(str(exc), EXIT_USAGE)
    except (StoreFailure, RpcError) as exc:
        code = _fail(f"store failed: {exc}", EXIT_STORE_FAILED)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        code = EXIT_OK
    finally:
        unstored = await ingest.close(settings.shutdown_grace_s)
        await store.close()
    if unstored:
        return _fail(f"{len(unstored)} events could not be stored", EXIT_STORE_FAILED)
    return code


async def list_sessions(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    """Every session the filters keep, newest activity first, the first --limit shown
    (the store's `before` and `query` filter; since, model and status are tested here)."""
    clock = Clock(args.utc)
    before = None if args.before is None else rfc3339(clock.parse(args.before))
    params = ListSessionsParams(limit=EVERYTHING, before=before, query=args.query)
    since_ns = None if args.since is None else clock.parse(args.since)
    kept = [s for s in await handlers.list_sessions(params) if _keeps(args, s, since_ns)]
    shown = kept if args.limit == 0 else kept[: args.limit]
    out = _output(args)
    rows = [
        {
            "session": s.session_id,
            "events": str(s.event_count),
            "last": clock.show(s.last_timestamp),
            "status": s.status + ("" if s.success is None else (" ok" if s.success else " failed")),
            "model": s.model or "",
            "title": s.title or "",
        }
        for s in shown
    ]
    more = f"{len(shown)} of {len(kept)} sessions (--limit 0 for all)" if len(shown) < len(kept) else None
    out.records(SESSION_COLUMNS, rows, shown, empty="no sessions", footer=more)
    return EXIT_OK


# On a narrow terminal the title gives way first, then the model, then the id (a start of
# it is enough to name the session), then the status.
SESSION_COLUMNS = (
    Column("session", "SESSION", shrink=3, min_width=13),
    Column("events", "EVENTS"),
    Column("last", "LAST ACTIVITY"),
    Column("status", "STATUS", shrink=4, min_width=7),
    Column("model", "MODEL", shrink=2, min_width=10),
    Column("title", "TITLE", shrink=1, min_width=12),
)


def _keeps(args: argparse.Namespace, summary: SessionSummary, since_ns: int | None) -> bool:
    if args.status is not None and summary.status != args.status:
        return False
    if args.model is not None and args.model.casefold() not in (summary.model or "").casefold():
        return False
    if since_ns is not None:
        try:
            return summary.last_timestamp is not None and parse_ns(summary.last_timestamp) >= since_ns
        except TimestampError:
            return False
    return True


async def show(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    session_id = await resolve_session(handlers, args.session_id)
    payloads = await handlers.session_events(GetSessionParams(session_id=session_id))
    if not payloads:
        raise Failed(f"no session {args.session_id!r}", EXIT_NOT_FOUND)
    fmt = "json" if args.json else (args.format or "text")
    if fmt == "nl":
        _write_lines(payloads)
        return EXIT_OK
    out = _output(args)
    if fmt == "json":
        out.text("[" + ",".join(p.decode() for p in payloads) + "]")
        return EXIT_OK
    events = decoded_events(payloads)
    clock = Clock(args.utc)
    if fmt == "markdown":  # a document to read: terminal controls in it are shown, not kept
        text = render.visible(
            transcript_markdown(build_transcript(events), format_time=clock.show, full=args.full)
        )
    else:
        style = render.Style(out.color)
        text = render.transcript(events, style, full=args.full, format_time=clock.show)
    out.text(text)
    return EXIT_OK


async def export(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    """NDJSON of every event of each session, in time order; the oldest sessions first.
    With --html, a static site instead (sidecar.html)."""
    if args.html is not None:
        return await _export_html(args, handlers)
    session_ids = [await resolve_session(handlers, reference) for reference in args.session_ids]
    if not session_ids:
        summaries = await handlers.list_sessions(ListSessionsParams(limit=EVERYTHING))
        session_ids = [s.session_id for s in reversed(summaries)]
    missing = []
    for session_id in session_ids:
        payloads = await handlers.session_events(GetSessionParams(session_id=session_id))
        if not payloads:
            missing.append(session_id)
        _write_lines(payloads)
    if missing:
        raise Failed(f"no session {', '.join(map(repr, missing))}", EXIT_NOT_FOUND)
    return EXIT_OK


async def _export_html(args: argparse.Namespace, handlers: Handlers) -> int:
    try:
        from sidecar.html import export_site
    except ImportError as exc:
        raise Failed(
            f"export --html needs the web extra ({exc}): pip install 'microagents-sidecar[web]'", EXIT_USAGE
        ) from None
    session_ids = [await resolve_session(handlers, ref) for ref in args.session_ids]
    written = await export_site(
        handlers, args.html, session_ids or None, clock=Clock(getattr(args, "utc", False))
    )
    print(f"wrote {written} pages to {args.html.resolve()}", file=sys.stderr)
    return EXIT_OK


async def import_files(args: argparse.Namespace, handlers: Handlers, settings: Settings) -> int:
    """Events from NDJSON files into the store, as the daemon would take them from stdin.
    Requests and batches are not run (an import must not delete or shut down anything).
    Events their session already holds are skipped (see _NewEvents): importing a file
    again stores nothing."""
    total_rejected = 0
    for name in args.files:
        source = sys.stdin.buffer if name == "-" else _open(name)
        try:
            imported, skipped, rejected = await _import_one(name, source, handlers, settings)
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        total_rejected += rejected
        counts = f"{imported} events imported, {skipped} already stored (skipped), {rejected} lines rejected"
        print(f"{name}: {counts}", file=sys.stderr)
    return EXIT_NOT_FOUND if total_rejected else EXIT_OK


async def _import_one(
    name: str, source: BinaryIO, handlers: Handlers, settings: Settings
) -> tuple[int, int, int]:
    """Events imported, already stored, lines rejected."""
    number = 0
    rejected = 0

    def report(reason: str) -> None:
        nonlocal rejected
        rejected += 1
        print(f"{name}:{number}: rejected: {reason}", file=sys.stderr)

    new_events = _NewEvents(handlers.ingest)
    dispatcher = Dispatcher(handlers, new_events, on_reject=report)
    splitter = LineSplitter(settings.max_line_bytes)
    size = _size(source)
    done_bytes, started, shown = 0, time.monotonic(), time.monotonic()
    while chunk := await asyncio.to_thread(source.read, READ_CHUNK):
        done_bytes += len(chunk)
        for line in splitter.feed(chunk):
            number += 1
            _take(dispatcher, line, report)
        await new_events.pass_on()
        if not handlers.ingest.has_room:
            await handlers.ingest.wait_for_room()
        if time.monotonic() - shown >= PROGRESS_EVERY_S:
            shown = time.monotonic()
            _progress(name, number, done_bytes, size, shown - started)
    for line in splitter.finish():
        number += 1
        _take(dispatcher, line, report)
    await new_events.pass_on()
    await handlers.ingest.drain()
    return new_events.imported, new_events.skipped, rejected


def _take(dispatcher: Dispatcher, line: Any, report: Callable[[str], None]) -> None:
    reply = dispatcher.handle_line(line)
    if asyncio.iscoroutine(reply):
        reply.close()  # a storage method or a batch: import stores events, runs nothing
        report(f"{_what(line)}, not an event: import stores events and runs nothing else; skipped")


def _what(line: bytes) -> str:
    """What a line that is no event is, in the reader's words."""
    if line.lstrip().startswith(b"["):
        return "a batch"
    try:
        method = protocol.envelope_decoder.decode(line).method
    except msgspec.ValidationError:
        return "a message"
    return f"a {method} message" if isinstance(method, str) else "a message"


class _NewEvents:
    """The import's queue in front of the ingest: the events the dispatcher accepts are held
    until `pass_on` has compared them with what their session already holds.

    An event is skipped while its session holds more copies of its payload (the stored
    form, byte for byte) than the file has shown so far. So importing a file again stores
    nothing, and a session holding the same event twice (two equal deltas in one instant)
    still goes through export and import whole. A session's payloads are read once per
    file, when the file first names it, before any of its events are queued.
    """

    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest
        self._held: list[Event] = []
        self._unmatched: dict[str, Counter[bytes]] = {}  # session -> stored digests not yet met
        self.imported = 0
        self.skipped = 0

    def add(self, event: Event, acknowledged: bool = False) -> None:
        self._held.append(event)  # nobody waits on an import's acknowledgements

    def add_all(self, events: list[Event]) -> None:
        self._held += events

    def reject(self, rejected: Rejected) -> None:
        self._ingest.reject(rejected)

    async def pass_on(self) -> None:
        """Queue the held events their sessions do not hold yet, in the order received."""
        held, self._held = self._held, []
        for event in held:
            unmatched = self._unmatched.get(event.session_id)
            if unmatched is None:
                stored = await self._ingest.store.read_session(event.session_id, SessionQuery())
                unmatched = self._unmatched[event.session_id] = Counter(map(_digest, stored))
            if unmatched:  # a session with nothing (left) to match costs no digest
                digest = _digest(event.payload)
                if unmatched[digest]:
                    unmatched[digest] -= 1
                    if not unmatched[digest]:
                        del unmatched[digest]
                    self.skipped += 1
                    continue
            self._ingest.add(event)
            self.imported += 1


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


async def search(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    session_id = None if args.session_id is None else await resolve_session(handlers, args.session_id)
    hits = await handlers.search(SearchParams(query=args.query, session_id=session_id, limit=args.limit))
    clock = Clock(args.utc)
    rows = [
        {
            "time": clock.show(hit.timestamp),
            "session": hit.session_id,
            "seq": "" if hit.seq is None else str(hit.seq),
            "event": hit.method,
            "match": hit.snippet,
        }
        for hit in hits
    ]
    _output(args).records(HIT_COLUMNS, rows, hits, empty="no matches")
    return EXIT_OK


HIT_COLUMNS = (
    Column("time", "TIME"),
    Column("session", "SESSION", shrink=2, min_width=13),
    Column("seq", "SEQ"),
    Column("event", "EVENT"),
    Column("match", "MATCH", shrink=1, min_width=20),
)


async def fork(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    parent = await resolve_session(handlers, args.session_id)
    result = await handlers.fork_session(ForkParams(parent, args.new_session_id))
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        forked = f"forked {parent} as {result['session_id']} ({result['copied']} events copied)"
        print(render.visible(forked))
    return EXIT_OK


async def delete(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    """On a terminal it asks first (--yes does not); piped or scripted it does not ask."""
    session_id = await resolve_session(handlers, args.session_id)
    if not args.yes and sys.stdin.isatty():
        count = len(await handlers.session_events(GetSessionParams(session_id=session_id)))
        if not await _confirm(render.visible(f"delete session {session_id} ({count} events)? [y/N] ")):
            print("nothing deleted", file=sys.stderr)
            return EXIT_OK
    result = await handlers.delete_session(SessionParams(session_id))
    if not result["deleted"]:
        raise Failed(f"no session {args.session_id!r}", EXIT_NOT_FOUND)
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        print(render.visible(f"deleted {session_id} ({result['deleted']} events)"))
    return EXIT_OK


async def _confirm(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    answer = await asyncio.to_thread(sys.stdin.readline)
    return answer.strip().lower() in ("y", "yes")


async def prune(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    """Delete every session whose last activity is older than --older-than, then give the
    space back (SQLite: VACUUM). --dry-run lists them and deletes nothing."""
    clock = Clock(args.utc)
    cutoff_ns = time.time_ns() - args.older_than * 10**9
    params = ListSessionsParams(limit=EVERYTHING, before=rfc3339(cutoff_ns))
    old = await handlers.list_sessions(params)
    deleted = 0
    for summary in old:
        verb = "would delete" if args.dry_run else "deleted"
        if not args.dry_run:
            deleted += (await handlers.delete_session(SessionParams(summary.session_id)))["deleted"]
        if not args.json:
            last = clock.show(summary.last_timestamp)
            print(
                render.visible(
                    f"{verb} {summary.session_id} ({summary.event_count} events, last active {last})"
                )
            )
    reclaimed = 0 if args.dry_run or not old else await handlers.store.reclaim_space()
    if args.json:
        print(
            msgspec.json.encode(
                {
                    "sessions": [s.session_id for s in old],
                    "deleted_events": deleted,
                    "dry_run": args.dry_run,
                    "reclaimed_bytes": reclaimed,
                }
            ).decode()
        )
    elif not old:
        print(f"no session last active before {clock.show_ns(cutoff_ns)}")
    elif not args.dry_run:
        print(f"{len(old)} sessions, {deleted} events deleted; {reclaimed / 1e6:.1f} MB reclaimed")
    return EXIT_OK


async def stats(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    store: Store = handlers.store
    summaries = await handlers.list_sessions(ListSessionsParams(limit=EVERYTHING))
    usage: dict[str, int] = {}
    for summary in summaries:
        for key, value in summary.usage.items():
            usage[key] = usage.get(key, 0) + value
    figures: dict[str, Any] = {
        "backend": store.backend,
        "location": _absolute(store.location),
        "size_bytes": await store.size_bytes(),
        "sessions": len(summaries),
        "events": sum(s.event_count for s in summaries),
        "active_sessions": sum(1 for s in summaries if s.status == "active"),
        "quarantined": await store.count_quarantined(),
        "highest_seq": await _highest_seq(store),
        "first_activity": min((s.first_timestamp for s in summaries if s.first_timestamp), default=None),
        "last_activity": max((s.last_timestamp for s in summaries if s.last_timestamp), default=None),
        "usage": usage,
    }
    clock = Clock(args.utc)
    shown = {
        **{key: "-" if value is None else str(value) for key, value in figures.items()},
        "size_bytes": "-" if figures["size_bytes"] is None else _megabytes(figures["size_bytes"]),
        "first_activity": clock.show(figures["first_activity"]) or "-",
        "last_activity": clock.show(figures["last_activity"]) or "-",
        "usage": " ".join(f"{k}={v}" for k, v in usage.items()) or "-",
    }
    out = _output(args)
    if out.format in ("json", "nl"):
        out.text(msgspec.json.encode(figures).decode())
    else:
        rows = [
            {"figure": key.replace("_bytes", "").replace("_", " "), "value": value}
            for key, value in shown.items()
        ]
        out.records(STAT_COLUMNS, rows, figures)
    return EXIT_OK


STAT_COLUMNS = (Column("figure", "FIGURE"), Column("value", "VALUE", shrink=1, min_width=20))


async def _highest_seq(store: Store) -> int | None:
    try:
        return await store.last_seq()
    except StoreFailure:  # a backend without a store-wide seq (jsonl)
        return None


async def tail(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    """Follow the events any process commits, as `tail -f` does, until Ctrl-C, SIGTERM or
    stdout closes. A slow terminal pauses the following; nothing is skipped."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    failure: list[str] = []

    def lagged(_: int, last_seq: int) -> None:
        failure.append(f"the store no longer holds what followed seq {last_seq}")
        stop.set()

    sys.stdout.flush()
    # Each rendering ends its own lines: streamed deltas continue the line they started.
    writer = StdoutWriter(sys.stdout.fileno(), loop, TAIL_OUTPUT_BYTES, on_broken=stop.set, end=b"")
    hub = Hub(handlers.store, writer)
    writer.on_written = hub.output_written
    session_id = None if args.session_id is None else await resolve_session(handlers, args.session_id)
    render_event: Callable[[int, int, Event], bytes | None] = _json_event
    if not args.json:
        style = render.Style(_output(args).color)
        render_event = _transcript_event(
            style, Clock(args.utc), every_session=session_id is None, deltas=args.deltas
        )
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    writer.start()
    try:
        await hub.subscribe(
            args.from_seq, session_id=session_id, render=render_event, lagged=lagged, pause=True
        )
        await stop.wait()
    except SeqUnavailable as exc:
        raise Failed(f"--from {args.from_seq}: {exc}", EXIT_USAGE) from None
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await hub.close()
        await writer.drain(TAIL_DRAIN_S)
        writer.close()
    if failure:
        raise Failed(failure[0], EXIT_STORE_FAILED)
    return EXIT_OK


def _json_event(_: int, seq: int, event: Event) -> bytes:
    """{"seq": N, "event": {...}}: the seq is what --from takes to resume."""
    return b'{"seq":%d,"event":%b}\n' % (seq, event.payload)


def _transcript_event(
    style: render.Style, clock: Clock, *, every_session: bool, deltas: bool
) -> Callable[[int, int, Event], bytes | None]:
    """Each event as transcript lines; following every session, a line naming the session
    whenever it changes. With `deltas`, stream.delta text is printed as it streams (the
    line left open for the next delta), and the response that completes it then shows only
    what it adds (tool calls); anything else first ends an open line."""
    shown: list[str] = []  # the session of the last event shown
    streaming: list[str] = []  # the session whose deltas are being printed, line open

    def lines(_: int, __: int, event: Event) -> bytes | None:
        try:
            message = msgspec.json.decode(event.payload)
        except msgspec.DecodeError:
            message = None
        prefix = ""
        switched = every_session and shown != [event.session_id]
        if streaming and (switched or event.method != "stream.delta" or not deltas):
            prefix = "\n"  # end the streamed line first
        continuing = streaming == [event.session_id] and not switched
        if message is not None and event.method == "stream.delta" and deltas and continuing:
            return _delta_text(message, style).encode()
        if continuing or (streaming and switched):
            streaming.clear()
        if switched:
            if event.method != "session.init":  # which names its session itself
                prefix += style.bold(f"── {render.visible(event.session_id)}") + "\n"
            shown[:] = [event.session_id]
        if message is None:
            return (
                prefix + style.dim(f"(an event of {render.visible(event.session_id)} that cannot be read)\n")
            ).encode()
        if event.method == "stream.delta" and deltas:
            streaming[:] = [event.session_id]
            heading = style.bold(style.green("assistant")) + "  " + style.dim(clock.show(_timestamp(message)))
            return (prefix + "\n" + heading + "\n" + _delta_text(message, style)).encode()
        if prefix.startswith("\n") and event.method == "assistant.response" and continuing:
            message = _without_text(message)
            if not _has_parts(message):
                return prefix.encode()  # its text was streamed, and it adds nothing else
        text = render.transcript([message], style, format_time=clock.show)
        if not text:
            return prefix.encode() or None  # a lone stream.delta: the response holds its text
        return (prefix + (text.lstrip("\n") if prefix else text) + "\n").encode()

    return lines


def _delta_text(message: dict[str, Any], style: render.Style) -> str:
    text = render.visible(str((message.get("params") or {}).get("delta", "")))
    return style.dim(text) if _is_thinking(message) else text


def _has_parts(message: dict[str, Any]) -> bool:
    """Whether a response (its text taken out) still holds something: tool calls, usage."""
    params = message.get("params") or {}
    return bool(params.get("tool_calls") or params.get("content") or params.get("usage"))


def _timestamp(message: dict[str, Any]) -> str:
    return str((message.get("params") or {}).get("timestamp", ""))


def _is_thinking(message: dict[str, Any]) -> bool:
    return (message.get("params") or {}).get("delta_type") == "Thinking"


def _without_text(message: dict[str, Any]) -> dict[str, Any]:
    """A response without the text its deltas already printed."""
    params = dict(message.get("params") or {})
    if isinstance(params.get("full_text"), str):
        params["full_text"] = ""
    if isinstance(params.get("content"), list):
        params["content"] = [
            part for part in params["content"] if "text" not in part and "thinking" not in part
        ]
    return {**message, "params": params}


COMMANDS: dict[str, Command] = {
    "list": list_sessions,
    "show": show,
    "export": export,
    "import": import_files,
    "search": search,
    "fork": fork,
    "delete": delete,
    "stats": stats,
    "tail": tail,
    "prune": prune,
}


def _print_result(
    args: argparse.Namespace, result: Any, human: Callable[[list[dict[str, Any]]], str]
) -> None:
    encoded = msgspec.json.encode(result)
    print(encoded.decode() if args.json else human(msgspec.json.decode(encoded)))


def _write_lines(payloads: list[bytes]) -> None:
    out = sys.stdout.buffer
    for payload in payloads:
        out.write(payload + b"\n")
    out.flush()


def _output(args: argparse.Namespace) -> Output:
    fmt = "json" if getattr(args, "json", False) else (getattr(args, "format", None) or "table")
    return Output(fmt, getattr(args, "color", "auto"), getattr(args, "pager", True))


async def resolve_session(handlers: Handlers, reference: str) -> str:
    """A session id from what people type: the id itself, a unique start of one, or
    @last (the latest activity). Not found: exit 1; ambiguous: exit 2 naming them."""
    if reference == "@last":
        latest = await handlers.list_sessions(ListSessionsParams(limit=1))
        if not latest:
            raise Failed("no sessions: @last names none", EXIT_NOT_FOUND)
        return latest[0].session_id
    if await handlers.store.read_session(reference, SessionQuery(last=1)):
        return reference
    summaries = await handlers.list_sessions(ListSessionsParams(limit=EVERYTHING))
    matches = [s.session_id for s in summaries if s.session_id.startswith(reference)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise Failed(f"no session {reference!r}", EXIT_NOT_FOUND)
    listed = "\n  ".join(map(render.visible, matches[:AMBIGUOUS_SHOWN])) + (
        "\n  ..." if len(matches) > AMBIGUOUS_SHOWN else ""
    )
    raise Failed(f"{reference!r} is the start of {len(matches)} sessions:\n  {listed}", EXIT_USAGE)


AMBIGUOUS_SHOWN = 10


def _absolute(location: str) -> str:
    return (
        os.path.abspath(location) if location.startswith((".", "/")) or os.path.exists(location) else location
    )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB ({size} bytes)"


def _open(name: str) -> BinaryIO:
    try:
        return Path(name).open("rb")
    except OSError as exc:
        raise Failed(f"cannot read {name}: {exc.strerror}", EXIT_NOT_FOUND) from None


def _size(source: BinaryIO) -> int | None:
    try:
        return Path(source.name).stat().st_size if isinstance(source.name, str) else None
    except (OSError, AttributeError):
        return None


def _progress(name: str, lines: int, done: int, size: int | None, elapsed: float) -> None:
    share = f" of {size / 1e6:.0f} MB ({100 * done / size:.0f}%)" if size else ""
    print(f"{name}: {lines} lines, {done / 1e6:.0f} MB{share}, {elapsed:.0f} s", file=sys.stderr)


def _fail(message: str, code: int) -> int:
    print(f"microagents-sidecar: {message}", file=sys.stderr)
    return code
