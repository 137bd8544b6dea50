"""Latency of storage.get_session on a 10,000-event session against a raw stdlib sqlite3 read.

Target: daemon median <= 3 x raw median.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

from common import count_rows, fresh_db, median, repeat_option, report, spawn_daemon, stream, verdict

RAW_QUERY = "SELECT payload FROM events WHERE session_id = ? ORDER BY id"


def build_db(path: Path) -> tuple[Path, str, int]:
    """A database holding one session, ingested through the daemon; (db, session id, events)."""
    db = fresh_db("get_session.db")
    data = path.read_bytes()
    proc = spawn_daemon(db, stdout=subprocess.DEVNULL)
    proc.communicate(data)
    if proc.returncode != 0:
        raise SystemExit(f"daemon exited {proc.returncode} while building the database")
    session_id = json.loads(data.split(b"\n", 1)[0])["params"]["session_id"]
    return db, session_id, count_rows(db)


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
    iterations = repeat_option(__doc__ or "", 30)
    db, session_id, events = build_db(stream(1, 10_000, name="one_session.ndjson"))
    print(f"db: {db} (session {session_id}, {events} events), {iterations} alternating reads each")
    conn = sqlite3.connect(db)
    proc = spawn_daemon(db)
    _, raw_body = raw_read(conn, session_id)  # warm-up, untimed: page cache, statement cache
    _, response = daemon_read(proc, 0, session_id)
    result = json.loads(response)["result"]
    if len(result) != events:
        raise SystemExit(f"daemon returned {len(result)} events, expected {events}")
    raw_s: list[float] = []
    daemon_s: list[float] = []
    for i in range(1, iterations + 1):
        raw_s.append(raw_read(conn, session_id)[0])
        elapsed, response = daemon_read(proc, i, session_id)
        if json.loads(response).get("id") != i:  # checked outside the timing
            raise SystemExit(f"unexpected response: {response[:200]!r}")
        daemon_s.append(elapsed)
    conn.close()
    assert proc.stdin is not None
    proc.stdin.close()
    if proc.wait(timeout=30) != 0:
        print(f"  note: daemon exited {proc.returncode}")
    raw_ms, daemon_ms = median(raw_s) * 1e3, median(daemon_s) * 1e3
    report(
        "get_session, 10,000 events (median)",
        [
            ("raw sqlite3 + join", f"{raw_ms:.1f} ms ({len(raw_body) / 1e6:.1f} MB)"),
            ("daemon request -> response", f"{daemon_ms:.1f} ms ({len(response) / 1e6:.1f} MB)"),
            ("daemon min / max", f"{min(daemon_s) * 1e3:.1f} / {max(daemon_s) * 1e3:.1f} ms"),
        ],
    )
    verdict("ratio daemon/raw", daemon_ms / raw_ms, "<= 3", daemon_ms / raw_ms <= 3)


if __name__ == "__main__":
    main()
