"""A million events from a producer faster than the disk: memory stays bounded, and a read
in the middle of the flood sees exactly what was sent before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability import Feeder, PolledDaemon, SqliteReader, chunked, peak_rss_mb, request_line, stored_event

pytestmark = pytest.mark.reliability

EVENTS = 1_000_000
SESSIONS = 100
READ_AT = EVENTS // 2  # where the storage.get_session goes in the stream
READ = "load-7"


def event(n: int) -> bytes:
    return stored_event(f"load-{n % SESSIONS}", f"event {n}", 1, n)


def test_a_million_events_keep_peak_memory_under_100_mb_and_a_read_mid_flood_sees_all_before_it(
    db: Path,
) -> None:
    lines = [event(n) for n in range(EVENTS)]
    lines.insert(READ_AT, request_line("storage.get_session", "middle", {"session_id": READ}))
    lines.append(request_line("storage.flush", "end"))
    with PolledDaemon(db) as daemon:
        feeder = Feeder(daemon, chunked(lines))
        middle = daemon.response("middle", timeout=60)
        expected = [json.loads(event(n)) for n in range(7, READ_AT, SESSIONS)]
        assert middle["result"] == expected
        assert daemon.response("end", timeout=120)["result"] == {"seq": EVENTS}
        peak = peak_rss_mb(daemon.process.pid)
        feeder.finish()
        assert daemon.close(timeout=60) == 0
        assert daemon.rest() == [] and daemon.stderr == ""
    assert peak < 100, f"peak RSS {peak:.1f} MB"
    print(f"\npeak RSS {peak:.1f} MB over {EVENTS} events")
    stored = SqliteReader(db)
    stored.check_integrity()
    assert len(stored.events()) == EVENTS
