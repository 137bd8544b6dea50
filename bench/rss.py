"""Peak RSS of the daemon ingesting N events (default 5,000,000) from a producer faster than the disk.

The producer cycles the 200 x 1000 stream, giving each cycle its own session ids, and
writes it into the daemon's stdin as it goes (never holding the whole input). The peak is
the daemon's own high-water mark, VmHWM in /proc/PID/status, read until it exits.
Target: peak RSS <= 64 MB.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import NamedTuple

from common import count_rows, cycles, feed, fresh_db, median, report, stream, verdict

EVENTS = 5_000_000
TARGET_MB = 64.0
SAMPLE_S = 0.05  # VmHWM never falls, so a sample misses at most the last moments before exit


class Run(NamedTuple):
    peak_mb: float  # VmHWM
    rss_mb: float  # VmRSS at the last sample, near the end of the flood
    events_per_s: float  # spawn to exit


def memory_mb(pid: int) -> tuple[float, float] | None:
    """(VmHWM, VmRSS) in MB from /proc; None once the process is gone or a zombie.

    Not ru_maxrss of a wait: that starts from the RSS of the forked parent before exec.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if line.startswith(("VmHWM", "VmRSS")))
    if "VmHWM" not in fields:
        return None
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def run_once(path: Path, events: int, command: list[str], env: dict[str, str] | None = None) -> Run:
    """The daemon (`command`, given --db) through `events` events; checks exit code and rows."""
    db = fresh_db("rss.db")
    start = time.perf_counter()
    proc = subprocess.Popen([*command, "--db", str(db)], stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    producer = threading.Thread(target=feed, args=(proc.stdin, islice(cycles(path), events)))
    producer.start()
    peak = rss = 0.0
    while proc.poll() is None:
        sample = memory_mb(proc.pid)
        if sample is not None:
            peak = max(peak, sample[0])
            if producer.is_alive():
                rss = sample[1]
        time.sleep(SAMPLE_S)
    elapsed = time.perf_counter() - start
    producer.join()
    if proc.returncode != 0:
        raise SystemExit(f"daemon exited {proc.returncode}")
    rows = count_rows(db)
    with closing(sqlite3.connect(db)) as conn:
        sessions = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    print(f"  stored {rows} rows in {sessions} sessions; peak {peak:.1f} MB", flush=True)
    if rows != events:
        raise SystemExit(f"daemon stored {rows} rows, expected {events}")
    return Run(peak, rss, events / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=EVENTS, help=f"events piped in (default {EVENTS:,})")
    parser.add_argument("--repeat", type=int, default=1, help="runs (default 1)")
    options = parser.parse_args()
    path = stream()
    command = [sys.executable, "-m", "sidecar"]
    runs = [run_once(path, options.events, command, dict(os.environ)) for _ in range(max(1, options.repeat))]
    peak = max(run.peak_mb for run in runs)
    report(
        f"rss, {options.events:,} events piped in ({len(runs)} run(s); worst peak, median rate)",
        [
            ("peak RSS (the daemon's VmHWM)", f"{peak:.1f} MB"),
            ("RSS near the end of the flood", f"{max(run.rss_mb for run in runs):.1f} MB"),
            ("ingest rate, spawn to exit", f"{median([run.events_per_s for run in runs]):,.0f} events/s"),
        ],
    )
    verdict("peak RSS MB", peak, f"<= {TARGET_MB:.0f}", peak <= TARGET_MB)


if __name__ == "__main__":
    main()
