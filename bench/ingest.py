"""Ingest throughput: the daemon end to end against raw stdlib sqlite3 on the Rust schema.

Target: daemon events/s >= 0.7 x raw events/s.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from common import count_rows, fresh_db, median, repeat_option, report, spawn_daemon, stream, verdict

RUST_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
    payload TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX idx_events_session_id ON events(session_id);
"""
BATCH = 1000

Row = tuple[str, str, int]


def prepare_rows(path: Path) -> list[Row]:
    now_ms = int(time.time() * 1000)
    with path.open(encoding="utf-8") as lines:
        return [(json.loads(line)["params"]["session_id"], line.rstrip("\n"), now_ms) for line in lines]


def raw_ingest(rows: list[Row]) -> float:
    """Seconds from connect to close: executemany in batches, one transaction each."""
    db = fresh_db("ingest_raw.db")
    start = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(RUST_SCHEMA)
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (session_id, payload, created_at) VALUES (?, ?, ?)", rows[i : i + BATCH]
        )
        conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start


def daemon_ingest(data: bytes, lines: int) -> float:
    """Seconds from spawn to exit, the whole stream piped in; checks exit code and row count."""
    db = fresh_db("ingest_daemon.db")
    start = time.perf_counter()
    proc = spawn_daemon(db)
    out, _ = proc.communicate(data)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"daemon exited {proc.returncode}")
    if out:
        print(f"  note: daemon wrote {len(out)} bytes to stdout: {out[:200]!r}")
    rows = count_rows(db)
    if rows != lines:
        raise SystemExit(f"daemon stored {rows} rows, expected {lines}")
    return elapsed


def main() -> None:
    repeat = repeat_option(__doc__ or "", 3)
    path = stream()
    rows = prepare_rows(path)
    data = path.read_bytes()
    n = len(rows)
    print(f"stream: {path} ({n} events, {len(data) / 1e6:.1f} MB), {repeat} alternating runs each")
    raw_s: list[float] = []
    daemon_s: list[float] = []
    for i in range(repeat):
        raw_s.append(raw_ingest(rows))
        daemon_s.append(daemon_ingest(data, n))
        print(
            f"  run {i + 1}: raw {n / raw_s[-1]:,.0f} ev/s, daemon {n / daemon_s[-1]:,.0f} ev/s", flush=True
        )
    raw_rate, daemon_rate = n / median(raw_s), n / median(daemon_s)
    ratio = daemon_rate / raw_rate
    report(
        "ingest (median of runs)",
        [
            ("raw sqlite3, executemany x1000", f"{raw_rate:,.0f} events/s ({median(raw_s):.2f} s)"),
            ("daemon, spawn to exit", f"{daemon_rate:,.0f} events/s ({median(daemon_s):.2f} s)"),
        ],
    )
    verdict("ratio daemon/raw", ratio, ">= 0.7", ratio >= 0.7)


if __name__ == "__main__":
    main()
