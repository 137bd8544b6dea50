"""The command line's subcommands: the daemon's own handlers and ingest, run in-process
on the store the options name, with output for people or, with --json, for programs.

Exit codes: 0 success; 1 not found, or input lines rejected (import); 2 usage (invalid
arguments); 3 the store failed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from sidecar import render
from sidecar.config import Settings
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
from sidecar.protocol import InvalidParams, RpcError, SessionNotFound
from sidecar.stdio import StdoutWriter
from sidecar.store import Store, StoreFailure, open_store
from sidecar.store.base import Event, SeqUnavailable
from sidecar.subscriptions import Hub

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


async def run_command(args: argparse.Namespace, settings: Settings) -> int:
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
    params = ListSessionsParams(limit=args.limit, before=args.before, query=args.query)
    summaries = await handlers.list_sessions(params)
    _print_result(args, summaries, lambda rows: render.sessions_table(rows, _style()))
    return EXIT_OK


async def show(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    payloads = await handlers.session_events(GetSessionParams(session_id=args.session_id))
    if not payloads:
        raise Failed(f"no session {args.session_id!r}", EXIT_NOT_FOUND)
    if args.json:
        _write_lines(payloads)
    else:
        print(render.transcript([msgspec.json.decode(p) for p in payloads], _style()))
    return EXIT_OK


async def export(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    """NDJSON of every event of each session, in time order; the oldest sessions first."""
    session_ids = args.session_ids
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


async def import_files(args: argparse.Namespace, handlers: Handlers, settings: Settings) -> int:
    """Events from NDJSON files into the store, as the daemon would take them from stdin.
    Requests and batches are not run (an import must not delete or shut down anything)."""
    total_rejected = 0
    for name in args.files:
        source = sys.stdin.buffer if name == "-" else _open(name)
        try:
            stored, rejected = await _import_one(name, source, handlers, settings)
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        total_rejected += rejected
        print(f"{name}: {stored} events imported, {rejected} lines rejected", file=sys.stderr)
    return EXIT_NOT_FOUND if total_rejected else EXIT_OK


async def _import_one(name: str, source: BinaryIO, handlers: Handlers, settings: Settings) -> tuple[int, int]:
    number = 0
    rejected = 0

    def report(reason: str) -> None:
        nonlocal rejected
        rejected += 1
        print(f"{name}:{number}: rejected: {reason}", file=sys.stderr)

    dispatcher = Dispatcher(handlers, handlers.ingest, on_reject=report)
    splitter = LineSplitter(settings.max_line_bytes)
    size = _size(source)
    done_bytes, started, shown = 0, time.monotonic(), time.monotonic()
    persisted_before = handlers.ingest.persisted + handlers.ingest.queue_depth
    while chunk := await asyncio.to_thread(source.read, READ_CHUNK):
        done_bytes += len(chunk)
        for line in splitter.feed(chunk):
            number += 1
            _take(dispatcher, line, report)
        if not handlers.ingest.has_room:
            await handlers.ingest.wait_for_room()
        if time.monotonic() - shown >= PROGRESS_EVERY_S:
            shown = time.monotonic()
            _progress(name, number, done_bytes, size, shown - started)
    for line in splitter.finish():
        number += 1
        _take(dispatcher, line, report)
    await handlers.ingest.drain()
    return handlers.ingest.persisted + handlers.ingest.queue_depth - persisted_before, rejected


def _take(dispatcher: Dispatcher, line: Any, report: Callable[[str], None]) -> None:
    reply = dispatcher.handle_line(line)
    if asyncio.iscoroutine(reply):
        reply.close()  # a request or a batch: not imported
        report("a request or batch, not an event notification; skipped")


async def search(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    params = SearchParams(query=args.query, session_id=args.session_id, limit=args.limit)
    hits = await handlers.search(params)
    _print_result(args, hits, lambda rows: render.hits_table(rows, _style()))
    return EXIT_OK


async def fork(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    result = await handlers.fork_session(ForkParams(args.session_id, args.new_session_id))
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        print(f"forked {args.session_id} as {result['session_id']} ({result['copied']} events copied)")
    return EXIT_OK


async def delete(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    result = await handlers.delete_session(SessionParams(args.session_id))
    if not result["deleted"]:
        raise Failed(f"no session {args.session_id!r}", EXIT_NOT_FOUND)
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        print(f"deleted {args.session_id} ({result['deleted']} events)")
    return EXIT_OK


async def stats(args: argparse.Namespace, handlers: Handlers, _: Settings) -> int:
    summaries = await handlers.list_sessions(ListSessionsParams(limit=EVERYTHING))
    usage: dict[str, int] = {}
    for summary in summaries:
        for key, value in summary.usage.items():
            usage[key] = usage.get(key, 0) + value
    store: Store = handlers.store
    figures: dict[str, Any] = {
        "backend": store.backend,
        "location": store.location,
        "sessions": len(summaries),
        "events": sum(s.event_count for s in summaries),
        "active_sessions": sum(1 for s in summaries if s.status == "active"),
        "first_activity": min((s.first_timestamp for s in summaries if s.first_timestamp), default=None),
        "last_activity": max((s.last_timestamp for s in summaries if s.last_timestamp), default=None),
        "usage": usage,
    }
    if args.json:
        print(msgspec.json.encode(figures).decode())
    else:
        width = max(map(len, figures))
        for key, value in figures.items():
            shown = " ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
            print(f"{key.replace('_', ' '):<{width}}  {'-' if shown is None else shown}")
    return EXIT_OK


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
    writer = StdoutWriter(sys.stdout.fileno(), loop, TAIL_OUTPUT_BYTES, on_broken=stop.set)
    hub = Hub(handlers.store, writer)
    writer.on_written = hub.output_written
    render_event = _json_event if args.json else _transcript_event(_style(), args.session_id is None)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    writer.start()
    try:
        await hub.subscribe(
            args.from_seq, session_id=args.session_id, render=render_event, lagged=lagged, pause=True
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


def _json_event(_: int, __: int, event: Event) -> bytes:
    return event.payload


def _transcript_event(style: render.Style, every_session: bool) -> Callable[[int, int, Event], bytes | None]:
    """Each event as transcript lines; following every session, a line naming the session
    whenever it changes."""
    shown: list[str] = []  # the session of the last event shown

    def lines(_: int, __: int, event: Event) -> bytes | None:
        text = render.transcript([msgspec.json.decode(event.payload)], style)
        if not text:
            return None  # stream.delta: the response that follows holds the whole text
        if every_session and shown != [event.session_id]:
            if event.method != "session.init":  # which names its session itself
                text = style.bold(f"── {event.session_id}") + "\n" + text.lstrip("\n")
            shown[:] = [event.session_id]
        return text.encode()

    return lines


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


def _style() -> render.Style:
    return render.Style.for_stream(sys.stdout)


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
