"""A producer faster than the store is slowed through the pipe, never by dropping."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import termios
import threading
import time
from pathlib import Path

from daemon import Daemon
from events import line, prompt

EVENTS = 60_000
PAYLOAD = "x" * 600


def unread_bytes(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_blocked_store_stops_the_reading_and_memory_stays_bounded(db: Path) -> None:
    with Daemon(db, "--lock-timeout", "60") as daemon:
        assert daemon.result("storage.info")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # every commit now waits

        assert daemon.process.stdin is not None
        stdin = daemon.process.stdin
        data = b"".join(
            line(prompt("s", f"2026-06-07T14:03:21.{i:09d}Z", PAYLOAD)) + b"\n" for i in range(EVENTS)
        )
        writer = threading.Thread(target=lambda: (stdin.write(data), stdin.flush()))
        writer.start()

        # The daemon reads until its queue is full, then stops: the pipe fills and stays
        # full, and the producer stays blocked on it. (A pipe full for a moment proves
        # nothing: a reading daemon may just be behind; wait for it to stay full.)
        deadline = time.monotonic() + 30
        full_samples = 0
        while full_samples < 10:
            assert writer.is_alive(), "the daemon read everything: no backpressure"
            assert time.monotonic() < deadline
            full_samples = full_samples + 1 if unread_bytes(stdin.fileno()) >= 32 * 1024 else 0
            time.sleep(0.02)
        held_until = time.monotonic() + 0.5
        while time.monotonic() < held_until:
            assert unread_bytes(stdin.fileno()) >= 32 * 1024 and writer.is_alive()
            time.sleep(0.02)
        assert rss_mb(daemon.process.pid) < 100

        holder.execute("ROLLBACK")  # the store is back: everything drains and is stored
        holder.close()
        writer.join(30)
        assert not writer.is_alive()
        assert daemon.close(timeout=60) == 0
    count = sqlite3.connect(db).execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert count == EVENTS
    assert os.path.getsize(db) > EVENTS * len(PAYLOAD)
