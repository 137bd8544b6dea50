"""Latency of storage.get_session on a 10,000-event session against a raw stdlib sqlite3 read.

The raw read is the Rust crate's query on the crate's own schema (a copy of the session's
rows in a file with only its table and index); the same query on the daemon's file, which
orders its index by time, is shown too. `--source DIR` runs the daemon from another copy of
the package (a "before" tree), on a database that copy builds.
Two clients read the daemon's answers: one through the 8 KiB buffer `subprocess.Popen`
gives a pipe by default (its readline of a 4 MB line makes ~500 reads and joins them), one
through a 1 MiB buffer, as a client reading whole sessions should (sidecar.client reads
64 KiB at a time). Target: daemon median <= 1.3 x raw median, for the client with the
1 MiB buffer; the other's figure is printed beside it.
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


LARGE_BUFFER = 1 << 20


def spawn(
    db: Path, source: Path | None, stdout: int | None = subprocess.PIPE, bufsize: int = -1
) -> subprocess.Popen[bytes]:
    """The daemon on `db`; from `source` (a directory holding `sidecar/`) if given; its stdout
    read through a buffer of `bufsize` bytes (-1: Popen's default, 8 KiB)."""
    env, cwd = dict(os.environ), None
    if source is not None:
        env["PYTHONPATH"] = str(source)
        cwd = source  # `-m` puts the working directory first on sys.path
    command = [sys.executable, "-m", "sidecar", "--db", str(db)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, env=env, cwd=cwd, bufsize=bufsize)


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
    clients = {"8 KiB": spawn(db, args.source), "1 MiB": spawn(db, args.source, bufsize=LARGE_BUFFER)}
    _, raw_body = raw_read(conn, session_id)  # warm-up, untimed: page cache, statement cache
    raw_read(on_ours, session_id)
    for proc in clients.values():
        _, response = daemon_read(proc, 0, session_id)
        result = json.loads(response)["result"]
        if len(result) != events:
            raise SystemExit(f"daemon returned {len(result)} events, expected {events}")
    raw_s: list[float] = []
    ours_s: list[float] = []
    daemon_s: dict[str, list[float]] = {name: [] for name in clients}
    for i in range(1, iterations + 1):
        raw_s.append(raw_read(conn, session_id)[0])
        ours_s.append(raw_read(on_ours, session_id)[0])
        for name, proc in clients.items():
            elapsed, response = daemon_read(proc, i, session_id)
            if json.loads(response).get("id") != i:  # checked outside the timing
                raise SystemExit(f"unexpected response: {response[:200]!r}")
            daemon_s[name].append(elapsed)
    conn.close()
    on_ours.close()
    for proc in clients.values():
        assert proc.stdin is not None
        proc.stdin.close()
        if proc.wait(timeout=30) != 0:
            print(f"  note: daemon exited {proc.returncode}")
    raw_ms = median(raw_s) * 1e3
    daemon_ms = {name: median(times) * 1e3 for name, times in daemon_s.items()}
    rows = [
        ("raw sqlite3 + join, crate's schema", f"{raw_ms:.1f} ms ({len(raw_body) / 1e6:.1f} MB)"),
        ("the same on the daemon's file", f"{median(ours_s) * 1e3:.1f} ms"),
    ]
    for name, times in daemon_s.items():
        rows.append(
            (
                f"daemon request -> response, {name} reader",
                f"{daemon_ms[name]:.1f} ms ({len(response) / 1e6:.1f} MB)",
            )
        )
        rows.append((f"  min / max, {name} reader", f"{min(times) * 1e3:.1f} / {max(times) * 1e3:.1f} ms"))
    report("get_session, 10,000 events (median)", rows)
    print(f"  ratio daemon/raw with the 8 KiB reader = {daemon_ms['8 KiB'] / raw_ms:.2f}")
    ratio = daemon_ms["1 MiB"] / raw_ms
    verdict("ratio daemon/raw with the 1 MiB reader", ratio, "<= 1.3", ratio <= 1.3)


if __name__ == "__main__":
    main()
