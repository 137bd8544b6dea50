"""The MCP server's tools on a store of 1,000,000 events (1,002,000): the latency a client sees.

The store is written by the daemon from gen_stream.py's stream (200 sessions x 1,000 events,
cycled 5 times, each cycle with its own session ids: 1,000 sessions), and kept for the next
run. Then `microagents-sidecar mcp` is spawned by the official SDK's stdio client and each
call is timed from request to parsed result, after one untimed warm-up call: read_session
(a whole 1,000-event session, its first page; its last 50 events), search_sessions (a common
word across the store; within one session), list_sessions (the first page of 20). Figures
only, no target asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import OUT, count_rows, cycles, feed, fresh_db, median, report, spawn_daemon, stream
from mcp import ClientSession, StdioServerParameters, stdio_client

CYCLES = 5  # of the stream of 200 sessions x 1,000 events (and their init and stop)
WORD = "refactor"


def build_store() -> tuple[Path, int]:
    """bench/out/mcp_1m.db, written through the daemon unless it already holds every event,
    and the number of events."""
    source = stream()
    with source.open("rb") as lines:
        events = CYCLES * sum(1 for _ in lines)
    db = OUT / "mcp_1m.db"
    if db.exists() and count_rows(db) == events:
        return db, events
    db = fresh_db("mcp_1m.db")
    print(f"writing {events:,} events through the daemon into {db} ...", flush=True)
    start = time.perf_counter()
    proc = spawn_daemon(db, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None
    feed(proc.stdin, cycles(source, CYCLES))
    if proc.wait() != 0 or count_rows(db) != events:
        raise SystemExit(f"the daemon exited {proc.returncode} with {count_rows(db)} events stored")
    print(f"  written in {time.perf_counter() - start:.0f} s", flush=True)
    return db, events


async def timed(session: ClientSession, runs: int, name: str, arguments: dict[str, Any]) -> tuple[float, Any]:
    """The median seconds of `runs` calls (after one untimed), and the last result."""
    result = await session.call_tool(name, arguments)
    if result.is_error:
        raise SystemExit(f"{name} {arguments}: {result.content}")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await session.call_tool(name, arguments)
        times.append(time.perf_counter() - start)
    return median(times), result.structured_content


async def measure(db: Path, runs: int) -> list[tuple[str, str]]:
    server = StdioServerParameters(command=sys.executable, args=["-m", "sidecar", "--db", str(db), "mcp"])
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        sessions = (await session.call_tool("list_sessions", {"limit": 1})).structured_content
        assert sessions is not None
        session_id = sessions["sessions"][0]["session_id"]
        rows = []
        for label, name, arguments in [
            ("read_session, first page of 1,000 events", "read_session", {"session_id": session_id}),
            ("read_session, last 50 events", "read_session", {"session_id": session_id, "last": 50}),
            (f"search_sessions {WORD!r}, whole store", "search_sessions", {"query": WORD}),
            (
                f"search_sessions {WORD!r}, one session",
                "search_sessions",
                {"query": WORD, "session_id": session_id},
            ),
            ("list_sessions, first 20 of 1,000", "list_sessions", {}),
        ]:
            seconds, result = await timed(session, runs, name, arguments)
            rows.append((label, f"{seconds * 1e3:.1f} ms{_what(result)}"))
    return rows


def _what(result: Any) -> str:
    if isinstance(result, dict) and "text" in result:
        more = "more follows" if result["next_cursor"] else "the end"
        return (
            f" ({len(result['text']):,} chars, events {result['first_event']}-{result['last_event']}, {more})"
        )
    if isinstance(result, dict) and "hits" in result:
        return f" ({len(result['hits'])} hits)"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20, help="timed calls of each (default 20)")
    args = parser.parse_args()
    db, events = build_store()
    rows = asyncio.run(measure(db, max(1, args.repeat)))
    report(f"MCP tools over stdio, {events:,} events in 1,000 sessions (median of {args.repeat})", rows)


if __name__ == "__main__":
    main()
