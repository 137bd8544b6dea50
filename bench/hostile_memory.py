"""Peak RSS of the daemon under the audit's two memory attacks (issue 13, items 4 and 5),
with a client that never reads stdout:

- reads: a 2 MB session, then 3,000 `get_session` requests for it in one batch line and
  100 more on their own lines (before: 1.5 GB and a MemoryError under a 2.5 GB limit);
- subscriptions: 300 `storage.subscribe` from seq 0 over a store of 20,000 1 KB events
  (before: 811 MB).

The daemon's own VmHWM is read once it has stopped growing (it waits for stdout), then
stdin is closed and stdout read to the end; the daemon must exit. No target: figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import fresh_db, report
from rss import memory_mb

STEADY_S = 2.0  # VmHWM unchanged this long: the daemon waits for stdout
SESSION_EVENTS = 1000
EVENT_TEXT = "x" * 2000


def line(message: dict[str, object]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def prompt(session_id: str, n: int, text: str) -> bytes:
    params = {
        "session_id": session_id,
        "turn_id": "t",
        "prompt": text,
        "timestamp": f"2026-06-07T14:00:00.{n:09d}Z",
    }
    return line({"jsonrpc": "2.0", "method": "user.prompt.submit", "params": params})


def store_with(db: Path, events: list[bytes]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "--db", str(db)], input=b"".join(events), check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"writing the store failed: exit {done.returncode}")


def peak_while_unread(db: Path, attack: bytes) -> tuple[float, int]:
    """The daemon's peak RSS (MB) while `attack` is fed and stdout is not read; its exit code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--db", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(attack)
            proc.stdin.close()
        except BrokenPipeError:
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    peak, steady_since = 0.0, time.monotonic()
    while time.monotonic() - steady_since < STEADY_S:
        sample = memory_mb(proc.pid)
        if sample is None:
            break
        if sample[0] > peak:
            peak, steady_since = sample[0], time.monotonic()
        time.sleep(0.05)
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # the reader comes back
    feeder.join(60)
    return peak, proc.wait(120)


def main() -> None:
    reads_db = fresh_db("hostile_reads.db")
    store_with(reads_db, [prompt("big", n, EVENT_TEXT) for n in range(SESSION_EVENTS)])
    request = {"jsonrpc": "2.0", "method": "storage.get_session", "params": {"session_id": "big"}}
    batch = json.dumps([{**request, "id": n} for n in range(3000)], separators=(",", ":")).encode() + b"\n"
    singles = b"".join(line({**request, "id": f"s{n}"}) for n in range(100))
    reads_peak, reads_code = peak_while_unread(reads_db, batch + singles)

    subs_db = fresh_db("hostile_subs.db")
    store_with(subs_db, [prompt(f"s{n % 50}", n, "y" * 1000) for n in range(20_000)])
    subscribe = b"".join(
        line({"jsonrpc": "2.0", "id": n, "method": "storage.subscribe", "params": {"from": 0}})
        for n in range(300)
    )
    subs_peak, subs_code = peak_while_unread(subs_db, subscribe)

    report(
        "peak RSS with stdout unread (the daemon's VmHWM)",
        [
            ("3,100 get_session of a 2 MB session", f"{reads_peak:.1f} MB (exit {reads_code})"),
            ("300 subscribe from 0, 20,000 1 KB events", f"{subs_peak:.1f} MB (exit {subs_code})"),
        ],
    )


if __name__ == "__main__":
    main()
