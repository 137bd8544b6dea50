"""SIGKILL at twenty points of a fast ingest: the store stays sound and keeps every
acknowledged event exactly once; a restarted daemon appends to it and serves it all. On
PostgreSQL the server itself is also restarted (`-m immediate`) under a running ingest.

The store is read back only through `reliability.reader`, so another backend is one more
parameter (and one more reader).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import Backend, JsonlBackend, PostgresBackend, SqliteBackend
from pg_server import PostgresServer
from reliability import (
    ATOMIC_BATCHES,
    ENDED,
    TIMEOUT,
    Feeder,
    PolledDaemon,
    StoredEvent,
    as_request,
    chunked,
    complete_notification,
    reader,
    request_line,
    stored_event,
)

pytestmark = pytest.mark.reliability

# Where each daemon of the run is killed: so many seconds after it was spawned, or once it
# has answered so many acknowledgements (events sent as requests and flushes). Time 0 kills
# it before it has even created the store.
KILL_POINTS = [
    ("seconds", 0.0),
    ("acks", 1),
    ("seconds", 0.02),
    ("acks", 2),
    ("seconds", 0.05),
    ("acks", 5),
    ("seconds", 0.1),
    ("acks", 10),
    ("seconds", 0.15),
    ("acks", 30),
    ("seconds", 0.2),
    ("acks", 100),
    ("seconds", 0.3),
    ("acks", 250),
    ("seconds", 0.4),
    ("acks", 500),
    ("seconds", 0.5),
    ("acks", 800),
    ("seconds", 0.6),
    ("acks", 1200),
]
ACK_EVERY = 40  # every 40th event is sent as a request
FLUSH_EVERY = 1000  # a storage.flush after every 1000 events
EVENTS_PER_ROUND = 200_000  # more than any daemon reads before its kill
SHARED_SESSIONS = ["shared-0", "shared-1"]  # written by every daemon of the run
WAIT_S = 20.0
MARKER = re.compile(r"r(\d+)e(\d+)")


def sessions_of(round_: int) -> list[str]:
    return [f"c{round_}-0", f"c{round_}-1", f"c{round_}-2", *SHARED_SESSIONS]


def event(round_: int, index: int) -> bytes:
    """Event `index` of round `round_`, as stored; rounds and indexes rise with time."""
    sessions = sessions_of(round_)
    return stored_event(sessions[index % len(sessions)], f"r{round_}e{index}", round_ + 1, index)


def stream(round_: int) -> Iterator[bytes]:
    """The lines fed to one daemon: events, some as requests, a flush every FLUSH_EVERY."""
    for index in range(EVENTS_PER_ROUND):
        line = event(round_, index)
        if index % ACK_EVERY == ACK_EVERY - 1:
            line = as_request(line, f"a{index}")
        yield line
        if (index + 1) % FLUSH_EVERY == 0:
            yield request_line("storage.flush", f"f{index + 1}")


class Acknowledged:
    """What one daemon promised before it died: the events it answered for."""

    def __init__(self) -> None:
        self.events: set[int] = set()  # events sent as requests and answered
        self.flushed = 0  # every event before this index, covered by an answered flush
        self.count = 0

    def record(self, message: Any) -> None:
        assert isinstance(message, dict) and "result" in message, message
        kind, number = message["id"][0], int(message["id"][1:])
        if kind == "a":
            self.events.add(number)
        else:
            assert kind == "f"
            self.flushed = max(self.flushed, number)
        self.count += 1

    def indexes(self) -> set[int]:
        return self.events | set(range(self.flushed))


def run_until_killed(daemon: PolledDaemon, trigger: str, point: float) -> Acknowledged:
    """Feed the daemon, SIGKILL it at the kill point, and collect every answer it gave."""
    acknowledged = Acknowledged()
    spawned = time.monotonic()
    deadline = spawned + WAIT_S
    while True:
        if trigger == "seconds" and time.monotonic() - spawned >= point:
            break
        if trigger == "acks" and acknowledged.count >= point:
            break
        message = daemon.poll(0.002)
        assert message is not ENDED, f"the daemon exited before its kill: {daemon.stderr}"
        assert message is not TIMEOUT or time.monotonic() < deadline, "no acknowledgement came"
        if message is not TIMEOUT:
            acknowledged.record(message)
    daemon.process.kill()
    assert daemon.wait() == -9
    for message in daemon.rest():  # answers written before the kill count as given
        acknowledged.record(message)
    return acknowledged


def by_session(events: list[StoredEvent]) -> dict[str, list[bytes]]:
    sessions: dict[str, list[bytes]] = {}
    for session_id, payload in events:
        sessions.setdefault(session_id, []).append(payload)
    return sessions


def check_store(backend: Backend, round_: int, known: set[bytes], promised: set[int]) -> int:
    """After a kill: sound store, earlier events intact, none twice, each whole, each
    session's new events a gap-free prefix of what it was sent (and the whole round's, if
    the backend commits batches atomically), every promised one there.

    Adds this round's events to `known` and returns how many it stored.
    """
    store = reader(backend)
    store.check_integrity()
    stored = store.events()
    counts = Counter(payload for _, payload in stored)
    assert [payload[:120] for payload, count in counts.items() if count > 1] == []
    assert known <= counts.keys(), "an event committed before an earlier kill is gone"
    indexes: dict[str, list[int]] = {}
    for session_id, payloads in by_session(stored).items():
        for payload in payloads:
            if payload in known:
                continue
            params = complete_notification(payload)["params"]
            marker = MARKER.fullmatch(params["prompt"])
            assert marker and int(marker[1]) == round_, payload
            index = int(marker[2])
            assert payload == event(round_, index) and session_id == params["session_id"]
            indexes.setdefault(session_id, []).append(index)
    sessions = sessions_of(round_)
    for session_id, found in indexes.items():  # each session: the first of its events, in order
        first = sessions.index(session_id)
        assert found == list(range(first, first + len(found) * len(sessions), len(sessions))), session_id
    found = sorted(index for session in indexes.values() for index in session)
    if backend.name in ATOMIC_BATCHES:
        assert found == list(range(len(found))), "the events stored are not a prefix of those sent"
    missing = promised - set(found)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    if stored:  # the store exists, quarantine and all
        assert backend.quarantined() == []
    known.update(event(round_, index) for index in found)
    return len(found)


def a_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    if name == "postgres":  # a fresh database on the one test server
        return PostgresBackend(tmp_path, request.getfixturevalue("postgres_dsn"))
    return SqliteBackend(tmp_path) if name == "sqlite" else JsonlBackend(tmp_path)


@pytest.mark.parametrize("name", ["sqlite", "jsonl", "postgres"])
def test_sigkill_at_twenty_points_loses_no_acknowledged_event_and_corrupts_nothing(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    backend = a_backend(name, tmp_path, request)
    known: set[bytes] = set()
    kills = promised_total = stored_total = 0
    for round_, (trigger, point) in enumerate(KILL_POINTS):
        durability = "full" if round_ % 4 == 3 else "normal"
        with PolledDaemon(None, *backend.args(), "--durability", durability) as daemon:
            feeder = Feeder(daemon, chunked(stream(round_)))
            promised = run_until_killed(daemon, trigger, point).indexes()
            feeder.finish()
            assert "Traceback" not in daemon.stderr and "ERROR" not in daemon.stderr, daemon.stderr
        kills += 1
        stored_total += check_store(backend, round_, known, promised)
        promised_total += len(promised)

    # The store every killed daemon left behind, opened once more: it serves all of it, in
    # order, and takes new events after it.
    before = by_session(reader(backend).events())
    with PolledDaemon(None, *backend.args()) as daemon:
        for session, payloads in sorted(before.items()):
            served = daemon.result("storage.get_session", {"session_id": session})
            assert served == [json.loads(payload) for payload in payloads], session
        last = stored_event("after-the-kills", "last", 28, 0)
        daemon.send_raw(as_request(last, "last") + b"\n")
        assert daemon.response("last")["result"]["session_id"] == "after-the-kills"
        assert daemon.close() == 0
    reader(backend).check_integrity()
    assert by_session(reader(backend).events()) == {**before, "after-the-kills": [last]}

    assert kills == len(KILL_POINTS) == 20
    assert promised_total > 10_000 and stored_total >= promised_total
    print(f"\n{kills} kills survived; {stored_total} stored events checked, {promised_total} acknowledged")


RESTART_AFTER_FLUSHES = (2, 5, 9)  # the server is restarted once so many flushes were answered
RESTART_EVENTS = 15_000


def test_postgres_restarted_immediately_under_an_ingest_stores_every_event_once_and_never_hangs(
    postgres_server: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`pg_ctl restart -m immediate` three times while a daemon ingests: every event sent is
    stored exactly once, every acknowledgement was true, and the daemon ends by itself."""
    backend = a_backend("postgres", tmp_path, request)
    assert isinstance(backend, PostgresBackend)
    lines = [line for line in stream(0) if b'"r0e' not in line or _index(line) < RESTART_EVENTS]
    flushed, acked = 0, set()
    with PolledDaemon(None, *backend.args(), "--shutdown-timeout", "60") as daemon:
        feeder = Feeder(daemon, chunked(iter(lines)))
        for restart_at in RESTART_AFTER_FLUSHES:
            while flushed < restart_at:
                message = daemon.poll(WAIT_S)
                assert isinstance(message, dict), f"no answer in {WAIT_S}s: {daemon.stderr}"
                if "result" in message and message["id"].startswith("f"):
                    flushed += 1
                elif "result" in message:
                    acked.add(int(message["id"][1:]))
            postgres_server.stop("immediate")
            postgres_server.start()
        feeder.finish(timeout=WAIT_S * 3)
        assert daemon.process.stdin is not None
        daemon.process.stdin.close()
        for message in daemon.rest(timeout=WAIT_S * 3):
            if "result" in message and message["id"].startswith("a"):
                acked.add(int(message["id"][1:]))
        assert daemon.wait() == 0, daemon.stderr
    stored = reader(backend).events()
    counts = Counter(payload for _, payload in stored)
    assert max(counts.values()) == 1 and len(counts) == RESTART_EVENTS  # every one, once
    assert {event(0, index) for index in acked} <= counts.keys()


def _index(line: bytes) -> int:
    found = re.search(rb'"r0e(\d+)"', line)
    assert found is not None
    return int(found[1])
