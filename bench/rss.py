"""Peak RSS of the daemon ingesting 1,000,000 events from a producer faster than the disk.

The producer cycles the 200 x 1000 stream, giving each cycle its own session ids, and
writes it into the daemon's stdin as it goes (never holding the whole input).
Target: peak RSS <= 100 MB.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from itertools import count, islice
from pathlib import Path
from typing import BinaryIO

from common import count_rows, fresh_db, median, repeat_option, report, spawn_daemon, stream, verdict

EVENTS = 1_000_000
LINES_PER_WRITE = 1000
SESSION_KEY = b'"session_id":"sess-'


def produce(path: Path) -> Iterator[bytes]:
    """The stream's lines over and over, session ids prefixed with the cycle number."""
    for cycle in count():
        renamed = b'"session_id":"c%d-sess-' % cycle
        with path.open("rb") as lines:
            for line in lines:
                yield line.replace(SESSION_KEY, renamed, 1)


def feed(pipe: BinaryIO, lines: Iterator[bytes]) -> None:
    while chunk := list(islice(lines, LINES_PER_WRITE)):
        pipe.write(b"".join(chunk))  # blocks while the pipe is full: the daemon's backpressure
    pipe.close()


def vm_rss_mb(pid: int) -> float:
    """Current RSS from /proc, 0 once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next(
        (int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0
    )


def run_once(path: Path) -> tuple[float, float, float]:
    """(peak RSS MB from wait4, largest sampled VmRSS MB, events/s from spawn to exit)."""
    db = fresh_db("rss.db")
    start = time.perf_counter()
    proc = spawn_daemon(db)
    assert proc.stdin is not None
    producer = threading.Thread(target=feed, args=(proc.stdin, islice(produce(path), EVENTS)))
    producer.start()
    sampled = 0.0
    while producer.is_alive():
        sampled = max(sampled, vm_rss_mb(proc.pid))
        producer.join(0.2)
    _, status, usage = os.wait4(proc.pid, 0)  # ru_maxrss of this child alone, in KiB on Linux
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"daemon exited {proc.returncode}")
    rows = count_rows(db)
    with closing(sqlite3.connect(db)) as conn:
        sessions = conn.execute("SELECT COUNT(DISTINCT session_id) FROM events").fetchone()[0]
    print(f"  stored {rows} rows in {sessions} sessions", flush=True)
    if rows != EVENTS:
        raise SystemExit(f"daemon stored {rows} rows, expected {EVENTS}")
    return usage.ru_maxrss / 1024, sampled, EVENTS / elapsed


def main() -> None:
    repeat = repeat_option(__doc__ or "", 1)
    path = stream()
    runs = [run_once(path) for _ in range(repeat)]
    peak = max(max(run[0], run[1]) for run in runs)
    report(
        f"rss, {EVENTS:,} events piped in ({repeat} run(s); worst peak, median rate)",
        [
            ("peak RSS (ru_maxrss via wait4)", f"{max(run[0] for run in runs):.1f} MB"),
            ("largest VmRSS sampled (0.2 s)", f"{max(run[1] for run in runs):.1f} MB"),
            ("ingest rate, spawn to exit", f"{median([run[2] for run in runs]):,.0f} events/s"),
        ],
    )
    verdict("peak RSS MB", peak, "<= 100", peak <= 100)


if __name__ == "__main__":
    main()
