"""The backends side by side, in one run: ingest rate and get_session latency of each.

Same stream and session as ingest.py and get_session.py; the raw stdlib sqlite3 figures
are the baselines those scripts use, measured again here so every ratio is of this run.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from common import OUT, fresh_db, median, repeat_option, report, spawn_with, stream
from get_session import raw_read
from ingest import prepare_rows, raw_ingest

BACKENDS = ("sqlite", "jsonl", "memory")
STATS = b'{"jsonrpc":"2.0","id":"stats","method":"storage.stats"}\n'


def store_args(backend: str, name: str) -> list[str]:
    """Options for a fresh store of `backend` under bench/out/."""
    if backend == "sqlite":
        return ["--db", str(fresh_db(f"{name}.db"))]
    if backend == "jsonl":
        directory = OUT / f"{name}.jsonl.d"
        shutil.rmtree(directory, ignore_errors=True)
        return ["--backend", "jsonl", "--jsonl-dir", str(directory)]
    return ["--backend", "memory"]


def ingest(backend: str, data: bytes, lines: int) -> float:
    """Seconds from spawn to exit with the stream piped in; a final storage.stats checks
    that every event was stored."""
    return ingest_with(store_args(backend, f"backends_{backend}"), data, lines)


def ingest_with(args: list[str], data: bytes, lines: int) -> float:
    """Seconds from spawn (with these store options) to exit, every event checked stored."""
    start = time.perf_counter()
    proc = spawn_with(args)
    out, _ = proc.communicate(data + STATS)
    elapsed = time.perf_counter() - start
    persisted = json.loads(out.splitlines()[-1])["result"]["persisted"]
    if proc.returncode != 0 or persisted != lines:
        raise SystemExit(f"{args}: exit {proc.returncode}, {persisted} of {lines} events stored")
    return elapsed


def read_latencies(backend: str, data: bytes, session_id: str, iterations: int) -> list[float]:
    """Seconds from request to whole response, on a daemon that ingested `data` first."""
    proc = spawn_with(store_args(backend, f"backends_read_{backend}"))
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(data + STATS)
    proc.stdin.flush()
    stored = json.loads(proc.stdout.readline())["result"]["persisted"]  # all before it is stored
    request = {"jsonrpc": "2.0", "method": "storage.get_session", "params": {"session_id": session_id}}
    latencies = []
    for i in range(iterations + 1):  # the first is a warm-up
        line = json.dumps({**request, "id": i}).encode() + b"\n"
        start = time.perf_counter()
        proc.stdin.write(line)
        proc.stdin.flush()
        response = proc.stdout.readline()
        latencies.append(time.perf_counter() - start)
        if len(json.loads(response)["result"]) != stored:
            raise SystemExit(f"{backend}: get_session did not return the whole session")
    proc.stdin.close()
    proc.wait(timeout=60)
    return latencies[1:]


def raw_read_latencies(data: bytes, session_id: str, iterations: int) -> list[float]:
    db = fresh_db("backends_raw_read.db")
    proc = spawn_with(["--db", str(db)], stdout=subprocess.DEVNULL)
    proc.communicate(data)
    conn = sqlite3.connect(db)
    latencies = [raw_read(conn, session_id)[0] for _ in range(iterations + 1)][1:]
    conn.close()
    return latencies


def main() -> None:
    repeat = repeat_option(__doc__ or "", 3)
    path = stream()
    data, rows = path.read_bytes(), prepare_rows(path)
    n = len(rows)
    print(f"ingest: {n} events ({len(data) / 1e6:.0f} MB), {repeat} alternating runs each")
    seconds: dict[str, list[float]] = {name: [] for name in ("raw", *BACKENDS)}
    for _ in range(repeat):
        seconds["raw"].append(raw_ingest(rows).wall_s)
        for backend in BACKENDS:
            seconds[backend].append(ingest(backend, data, n))
    raw_rate = n / median(seconds["raw"])
    ingest_rows = [("raw sqlite3 executemany x1000", f"{raw_rate:,.0f} events/s")]
    for backend in BACKENDS:
        rate = n / median(seconds[backend])
        figure = f"{rate:,.0f} events/s  ({rate / raw_rate:.2f} x raw)"
        ingest_rows.append((f"daemon --backend {backend}", figure))
    report("ingest, spawn to exit (median)", ingest_rows)

    session_path: Path = stream(1, 10_000, name="one_session.ndjson")
    session_data = session_path.read_bytes()
    session_id = json.loads(session_data.split(b"\n", 1)[0])["params"]["session_id"]
    iterations = 20
    raw_ms = median(raw_read_latencies(session_data, session_id, iterations)) * 1e3
    read_rows = [("raw sqlite3 SELECT + join", f"{raw_ms:.1f} ms")]
    for backend in BACKENDS:
        ms = median(read_latencies(backend, session_data, session_id, iterations)) * 1e3
        read_rows.append((f"daemon --backend {backend}", f"{ms:.1f} ms  ({ms / raw_ms:.2f} x raw)"))
    report(f"get_session, 10,000 events (median of {iterations})", read_rows)


if __name__ == "__main__":
    main()
