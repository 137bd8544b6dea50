"""Latency of storage.get_session on a 10,000-event session against a raw stdlib sqlite3 read.

The raw read is the Rust crate's query on the crate's own schema (a copy of the session's
rows in a file with only its table and index); the same query on the daemon's file, which
orders its index by time, is shown too. `--source DIR` runs the daemon from another copy of
the package (a "before" tree), on a database that copy builds.
Target: daemon median <= 1.3 x raw median.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from common import count_rows, fresh_db, median, report, stream, verdict

RAW_QUERY = "SELECT payload FROM events WHERE session_id = ? ORDER BY id"


RUST_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
    payload TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX idx_events_session_id ON events(session_id);
"""


def spawn(db: Path, source: Path | None, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """The daemon on `db`; from `source` (a directory holding `sidecar/`) if given."""
    env, cwd = dict(os.environ), None
    if source is not None:
        env["PYTHONPATH"] = str(source)
        cwd = source  # `-m` puts the working directory first on sys.path
    command = [sys.executable, "-m", "sidecar", "--db", str(db)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, env=env, cwd=cwd)


def build_db(path: Path, source: Path | None) -> tuple[Path, str, int]:
    """A database holding one session, ingested through the daemon; (db, session id, events)."""
    db = fresh_db("get_session.db" if source is None else "get_session_source.db")
    data = path.read_bytes()
    proc = spawn(db, source, stdout=subprocess.DEVNULL)
    proc.communicate(data)
    if proc.returncode != 0:
        raise SystemExit(f"daemon exited {proc.returncode} while building the database")
    session_id = json.loads(data.split(b"\n", 1)[0])["params"]["session_id"]
    return db, session_id, count_rows(db)


def crate_copy(db: Path) -> Path:
    """The rows of `db` in a file of the Rust crate's own schema, in the same id order."""
    copy = fresh_db("get_session_crate.db")
    with closing(sqlite3.connect(copy)) as conn:
        conn.executescript(RUST_SCHEMA)
        conn.execute("ATTACH DATABASE ? AS daemon", (str(db),))
        conn.execute(
            "INSERT INTO events (id, session_id, payload, created_at) "
            "SELECT id, session_id, payload, created_at FROM daemon.events ORDER BY id"
        )
        conn.commit()
    return copy


def raw_read(conn: sqlite3.Connection, session_id: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    payloads = [row[0] for row in conn.execute(RAW_QUERY, (session_id,))]
    body = ("[" + ",".join(payloads) + "]").encode()
    return time.perf_counter() - start, body


def daemon_read(proc: subprocess.Popen[bytes], request_id: int, session_id: str) -> tuple[float, bytes]:
    assert proc.stdin is not None and proc.stdout is not None
    request = {"jsonrpc": "2.0", "id": request_id, "method": "storage.get_session"}
    line = json.dumps({**request, "params": {"session_id": session_id}}).encode() + b"\n"
    start = time.perf_counter()
    proc.stdin.write(line)
    proc.stdin.flush()
    response = proc.stdout.readline()
    return time.perf_counter() - start, response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30, help="alternating reads of each (default 30)")
    parser.add_argument("--source", type=Path, help="run the daemon from this copy of the package")
    args = parser.parse_args()
    iterations = max(1, args.repeat)
    db, session_id, events = build_db(stream(1, 10_000, name="one_session.ndjson"), args.source)
    print(f"db: {db} (session {session_id}, {events} events), {iterations} alternating reads each")
    conn = sqlite3.connect(crate_copy(db))
    on_ours = sqlite3.connect(db)
    proc = spawn(db, args.source)
    _, raw_body = raw_read(conn, session_id)  # warm-up, untimed: page cache, statement cache
    raw_read(on_ours, session_id)
    _, response = daemon_read(proc, 0, session_id)
    result = json.loads(response)["result"]
    if len(result) != events:
        raise SystemExit(f"daemon returned {len(result)} events, expected {events}")
    raw_s: list[float] = []
    ours_s: list[float] = []
    daemon_s: list[float] = []
    for i in range(1, iterations + 1):
        raw_s.append(raw_read(conn, session_id)[0])
        ours_s.append(raw_read(on_ours, session_id)[0])
        elapsed, response = daemon_read(proc, i, session_id)
        if json.loads(response).get("id") != i:  # checked outside the timing
            raise SystemExit(f"unexpected response: {response[:200]!r}")
        daemon_s.append(elapsed)
    conn.close()
    on_ours.close()
    assert proc.stdin is not None
    proc.stdin.close()
    if proc.wait(timeout=30) != 0:
        print(f"  note: daemon exited {proc.returncode}")
    raw_ms, daemon_ms = median(raw_s) * 1e3, median(daemon_s) * 1e3
    report(
        "get_session, 10,000 events (median)",
        [
            ("raw sqlite3 + join, crate's schema", f"{raw_ms:.1f} ms ({len(raw_body) / 1e6:.1f} MB)"),
            ("the same on the daemon's file", f"{median(ours_s) * 1e3:.1f} ms"),
            ("daemon request -> response", f"{daemon_ms:.1f} ms ({len(response) / 1e6:.1f} MB)"),
            ("daemon min / max", f"{min(daemon_s) * 1e3:.1f} / {max(daemon_s) * 1e3:.1f} ms"),
        ],
    )
    verdict("ratio daemon/raw", daemon_ms / raw_ms, "<= 1.3", daemon_ms / raw_ms <= 1.3)


if __name__ == "__main__":
    main()
