"""Ingest throughput and CPU: the daemon end to end against raw stdlib sqlite3 on the Rust schema.

Targets: daemon events/s >= 1.0 x raw events/s; daemon CPU per event <= 1.5 x raw's.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from common import compile_package, count_rows, fresh_db, median, report, stream, verdict

RUST_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
    payload TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX idx_events_session_id ON events(session_id);
"""
BATCH = 1000

Row = tuple[str, str, int]


class Run(NamedTuple):
    wall_s: float
    cpu_s: float  # user + system


def prepare_rows(path: Path) -> list[Row]:
    now_ms = int(time.time() * 1000)
    with path.open(encoding="utf-8") as lines:
        return [(json.loads(line)["params"]["session_id"], line.rstrip("\n"), now_ms) for line in lines]


def raw_ingest(rows: list[Row]) -> Run:
    """From connect to close: executemany in batches, one transaction each; this process's CPU."""
    db = fresh_db("ingest_raw.db")
    cpu, start = time.process_time(), time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(RUST_SCHEMA)
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (session_id, payload, created_at) VALUES (?, ?, ?)", rows[i : i + BATCH]
        )
        conn.execute("COMMIT")
    conn.close()
    return Run(time.perf_counter() - start, time.process_time() - cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def daemon_ingest(data: bytes, lines: int, source: Path | None = None) -> Run:
    """From spawn to exit, the whole stream piped in; the daemon's CPU (all its threads).

    Checks the exit code and the row count. `source`: run the daemon from that tree instead.
    """
    db = fresh_db("ingest_daemon.db")
    cpu, start = _children_cpu(), time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--db", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=source,  # `-m` looks in the working directory first
    )
    out, _ = proc.communicate(data)  # waits for the daemon: its rusage joins the children's
    elapsed = time.perf_counter() - start
    used = _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"daemon exited {proc.returncode}")
    if out:
        print(f"  note: daemon wrote {len(out)} bytes to stdout: {out[:200]!r}")
    rows = count_rows(db)
    if rows != lines:
        raise SystemExit(f"daemon stored {rows} rows, expected {lines}")
    return Run(elapsed, used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument(
        "--against",
        type=Path,
        help="also run the daemon from this tree (holding sidecar/), alternating",
    )
    options = parser.parse_args()
    repeat = max(1, options.repeat)
    compile_package()
    if options.against:
        compile_package(options.against)
    path = stream()
    rows = prepare_rows(path)
    data = path.read_bytes()
    n = len(rows)
    print(f"stream: {path} ({n} events, {len(data) / 1e6:.1f} MB), {repeat} alternating runs each")
    sides: dict[str, list[Run]] = {"raw": [], "daemon": []}
    if options.against:
        sides["against"] = []
    for i in range(repeat):
        sides["raw"].append(raw_ingest(rows))
        sides["daemon"].append(daemon_ingest(data, n))
        if options.against:
            sides["against"].append(daemon_ingest(data, n, options.against))
        figures = ", ".join(
            f"{name} {n / runs[-1].wall_s:,.0f} ev/s {runs[-1].cpu_s / n * 1e6:.1f} µs CPU/ev"
            for name, runs in sides.items()
        )
        print(f"  run {i + 1}: {figures}", flush=True)
    wall = {name: median([run.wall_s for run in runs]) for name, runs in sides.items()}
    cpu = {name: median([run.cpu_s for run in runs]) / n * 1e6 for name, runs in sides.items()}
    labels = {
        "raw": "raw sqlite3, executemany x1000",
        "daemon": "daemon, spawn to exit",
        "against": f"daemon from {options.against}",
    }
    report(
        "ingest (median of runs)",
        [
            (
                labels[name],
                f"{n / wall[name]:,.0f} events/s ({wall[name]:.2f} s), {cpu[name]:.1f} µs CPU/event",
            )
            for name in sides
        ],
    )
    ratio = wall["raw"] / wall["daemon"]
    cpu_ratio = cpu["daemon"] / cpu["raw"]
    verdict("ratio daemon/raw events/s", ratio, ">= 1.0", ratio >= 1.0)
    verdict("ratio daemon/raw CPU per event", cpu_ratio, "<= 1.5", cpu_ratio <= 1.5)
    if options.against:
        print(
            f"  (from {options.against}: events/s {wall['raw'] / wall['against']:.2f} x raw, "
            f"CPU per event {cpu['against'] / cpu['raw']:.2f} x raw)"
        )


if __name__ == "__main__":
    main()
