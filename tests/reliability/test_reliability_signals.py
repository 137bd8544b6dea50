"""Every way of ending in the middle of things: SIGTERM or SIGINT during a flood, end of
input inside a batch line, storage.shutdown or a signal with requests in flight. Each ends
with exit 0 and nothing the daemon received is lost."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from backends import SqliteBackend
from reliability import (
    Feeder,
    PolledDaemon,
    SqliteReader,
    as_request,
    request_line,
    stored_event,
    unread_bytes,
)

pytestmark = pytest.mark.reliability

FLOOD = 300_000  # far more than the daemon reads before the signal


def prompts(session: str, count: int, day: int = 1, start: int = 0) -> list[bytes]:
    return [stored_event(session, f"e{n}", day, n) for n in range(start, start + count)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_flood_stores_every_line_the_daemon_took_from_the_pipe(
    db: Path, signum: int
) -> None:
    events = prompts("flood", FLOOD)
    sync = 20_000  # a flush there: once answered, the daemon is in the middle of the flood
    lines = [*events[:sync], request_line("storage.flush", "mid"), *events[sync:]]
    data = b"\n".join(lines) + b"\n"
    with PolledDaemon(db) as daemon:
        assert daemon.process.stdin is not None
        feeder = Feeder(daemon, (data[i : i + 65536] for i in range(0, len(data), 65536)))
        assert daemon.response("mid")["result"]["seq"] == sync
        daemon.signal(signum)
        assert daemon.wait() == 0
        written = feeder.finish()
        taken = written - unread_bytes(daemon.process.stdin.fileno())
        assert 0 < taken < len(data)
    *complete, cut = data[:taken].split(b"\n")
    stored = SqliteReader(db)
    assert [payload for _, payload in stored.events()] == [line for line in complete if b'"id"' not in line]
    assert SqliteBackend(db.parent).quarantined() == ([cut] if cut else [])  # the line the signal cut


BATCH = [
    as_request(stored_event("batch", "b0", 2, 0), "b0"),
    stored_event("batch", "b1", 2, 1),
    request_line("storage.flush", "bf"),
    as_request(stored_event("batch", "b2", 2, 2), "b2"),
]
BATCH_LINE = b"[" + b",".join(BATCH) + b"]"
CUTS = [
    pytest.param(1, id="after-the-bracket"),
    pytest.param(len(BATCH[0]) // 2 + 1, id="inside-the-first-element"),
    pytest.param(len(BATCH[0]) + 1, id="after-the-first-element"),
    pytest.param(len(BATCH[0]) + 2, id="after-a-comma"),
    pytest.param(len(BATCH_LINE) - 3, id="inside-the-last-element"),
    pytest.param(len(BATCH_LINE) - 1, id="without-the-closing-bracket"),
]


@pytest.mark.parametrize("cut", CUTS)
def test_end_of_input_inside_a_batch_line_stores_everything_before_it_and_keeps_the_cut_line(
    db: Path, cut: int
) -> None:
    before = prompts("flood", 20_000)
    acked = as_request(stored_event("flood", "acked", 1, 10**8), "acked")
    with PolledDaemon(db) as daemon:
        daemon.send_raw(b"\n".join([*before, acked, BATCH_LINE[:cut]]))  # no newline at the end
        assert daemon.close() == 0
        answers = {answer["id"]: answer for answer in daemon.rest()}  # in either order
    assert answers.keys() == {"acked", None}
    assert answers["acked"]["result"] == {"session_id": "flood", "seq": 20_001}
    assert answers[None]["error"]["code"] == -32700
    stored = SqliteReader(db)
    assert [payload for _, payload in stored.events()] == [*before, stored_event("flood", "acked", 1, 10**8)]
    assert SqliteBackend(db.parent).quarantined() == [BATCH_LINE[:cut]]


def test_end_of_input_right_after_a_batch_line_without_newline_runs_the_whole_batch(db: Path) -> None:
    with PolledDaemon(db) as daemon:
        daemon.send_raw(b"\n".join([*prompts("flood", 20_000), BATCH_LINE]))
        assert daemon.close() == 0
        (batch,) = daemon.rest()
    assert sorted(reply["id"] for reply in batch) == ["b0", "b2", "bf"]
    assert all("result" in reply for reply in batch)
    stored = [payload for _, payload in SqliteReader(db).events()]
    assert len(stored) == 20_003 and stored[-3:] == [stored_event("batch", f"b{n}", 2, n) for n in range(3)]


def in_flight() -> tuple[list[bytes], dict[str, Any]]:
    """Notifications with requests of every kind among them, and what each must answer:
    a result (None: any result) for each request id."""
    lines: list[bytes] = []
    expected: dict[str, Any] = {}
    sent: list[bytes] = []  # of the session read
    seq = 0  # store-wide, one per event
    for n in range(6_000):
        event = stored_event("busy", f"e{n}", 1, n)
        sent.append(event)
        seq += 1
        if n % 50 == 0:
            lines.append(as_request(event, f"a{n}"))
            expected[f"a{n}"] = {"session_id": "busy", "seq": seq}
        else:
            lines.append(event)
        if n % 500 == 250:
            lines.append(request_line("storage.get_session", f"g{n}", {"session_id": "busy"}))
            expected[f"g{n}"] = [json.loads(line) for line in sent]
        if n % 500 == 100:
            lines.append(request_line("storage.flush", f"f{n}"))
            expected[f"f{n}"] = {"seq": seq}
        if n % 1000 == 700:
            seq += 1
            batch = [
                as_request(stored_event("busy-batch", f"b{n}", 1, n), f"b{n}"),
                request_line("storage.stats", f"s{n}"),
            ]
            lines.append(b"[" + b",".join(batch) + b"]")
            expected[f"b{n}"] = {"session_id": "busy-batch", "seq": seq}
            expected[f"s{n}"] = None
    return lines, expected


@pytest.mark.parametrize("ending", ["storage.shutdown", "SIGTERM", "SIGINT", "end of input"])
def test_requests_in_flight_at_the_end_are_each_answered_and_every_event_is_stored(
    db: Path, ending: str
) -> None:
    lines, expected = in_flight()
    with PolledDaemon(db) as daemon:
        assert daemon.result("storage.info")  # started, signal handlers installed
        if ending == "storage.shutdown":
            lines.append(request_line("storage.shutdown", "bye"))
        daemon.send_raw(b"\n".join(lines) + b"\n")
        if ending.startswith("SIG"):
            assert daemon.process.stdin is not None
            deadline = time.monotonic() + 20
            while unread_bytes(daemon.process.stdin.fileno()):  # until the daemon has it all
                assert time.monotonic() < deadline
                time.sleep(0.005)
            daemon.signal(signal.SIGTERM if ending == "SIGTERM" else signal.SIGINT)
        elif ending == "end of input":
            assert daemon.process.stdin is not None
            daemon.process.stdin.close()
        assert daemon.wait() == 0
        answers = [reply for line in daemon.rest() for reply in (line if isinstance(line, list) else [line])]
    by_id = {answer["id"]: answer for answer in answers}
    if ending == "storage.shutdown":
        assert by_id.pop("bye") == {"jsonrpc": "2.0", "id": "bye", "result": None}
        answers.remove({"jsonrpc": "2.0", "id": "bye", "result": None})
    assert len(by_id) == len(answers) and by_id.keys() == expected.keys()
    for request_id, result in expected.items():
        assert "result" in by_id[request_id], by_id[request_id]
        assert result is None or by_id[request_id]["result"] == result, request_id
    assert len(SqliteReader(db).events()) == 6_000 + 6
