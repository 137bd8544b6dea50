"""Four daemons on one SQLite file at once: every event stored, no error reaches a client,
each session in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability import (
    Feeder,
    PolledDaemon,
    SqliteReader,
    as_request,
    chunked,
    complete_notification,
    request_line,
    stored_event,
)

pytestmark = pytest.mark.reliability

WRITERS = 4
EVENTS = 50_000  # per writer
SHARED = ["shared-0", "shared-1"]  # every writer appends to these
OWN = 3  # sessions only one writer writes
ACK_EVERY = 100
FLUSH_EVERY = 5_000
READ_EVERY = 12_500  # a storage.get_session of one of the writer's own sessions


def sessions(writer: int) -> list[str]:
    return [*(f"w{writer}-{k}" for k in range(OWN)), *SHARED]


def event(writer: int, index: int) -> bytes:
    """Instants interleave the writers: in a shared session, event `index` of writer `w` is
    at index * WRITERS + w ns, so the order across writers is known whoever commits first."""
    names = sessions(writer)
    return stored_event(names[index % len(names)], f"w{writer}e{index}", 1, index * WRITERS + writer)


def stream(writer: int, reads: dict[str, list[bytes]]) -> Iterator[bytes]:
    """Events interleaved with acknowledged events, flushes and session reads; `reads` gets,
    per read request id, the events of the session read that were sent before it."""
    names = sessions(writer)
    sent: dict[str, list[bytes]] = {name: [] for name in names}
    for index in range(EVENTS):
        line = event(writer, index)
        sent[names[index % len(names)]].append(line)
        yield as_request(line, f"a{index}") if index % ACK_EVERY == 0 else line
        if (index + 1) % FLUSH_EVERY == 0:
            yield request_line("storage.flush", f"f{index}")
        if (index + 1) % READ_EVERY == 0:
            session = f"w{writer}-{index // READ_EVERY % OWN}"
            reads[f"g{index}"] = list(sent[session])
            yield request_line("storage.get_session", f"g{index}", {"session_id": session})
    yield request_line("storage.flush", "last")


def test_four_daemons_writing_one_file_at_once_store_every_event_in_order_without_an_error(
    tmp_path: Path,
) -> None:
    db = tmp_path / "sessions.db"
    daemons = [PolledDaemon(db) for _ in range(WRITERS)]
    reads: list[dict[str, list[bytes]]] = [{} for _ in range(WRITERS)]
    try:
        feeders = [Feeder(d, chunked(stream(w, reads[w]))) for w, d in enumerate(daemons)]
        answers: list[list[Any]] = []
        for feeder, daemon in zip(feeders, daemons, strict=True):
            messages = daemon.collect_until("last", timeout=120)
            assert messages.pop()["result"]["seq"] > 0
            feeder.finish()
            assert daemon.close() == 0
            answers.append(messages + daemon.rest())
            assert daemon.stderr == ""  # not a "database is locked", not a warning
    finally:
        for daemon in daemons:
            daemon.kill()

    for writer, messages in enumerate(answers):
        by_id = {message["id"]: message for message in messages}
        assert [m for m in messages if "error" in m] == []
        expected_ids = {f"a{i}" for i in range(0, EVENTS, ACK_EVERY)}
        expected_ids |= {f"f{i}" for i in range(FLUSH_EVERY - 1, EVENTS, FLUSH_EVERY)} | reads[writer].keys()
        assert by_id.keys() == expected_ids  # the final flush was read on its own
        for request_id, before in reads[writer].items():  # read while the others wrote
            assert by_id[request_id]["result"] == [json.loads(line) for line in before], request_id

    stored = SqliteReader(db)
    stored.check_integrity()
    events = stored.events()
    assert len(events) == WRITERS * EVENTS
    assert {payload for _, payload in events} == {event(w, i) for w in range(WRITERS) for i in range(EVENTS)}
    for _, payload in events:
        complete_notification(payload)

    # Each session, read back: in time order, which for a shared one interleaves writers.
    expected: dict[str, list[tuple[int, bytes]]] = {}
    for writer in range(WRITERS):
        names = sessions(writer)
        for index in range(EVENTS):
            expected.setdefault(names[index % len(names)], []).append(
                (index * WRITERS + writer, event(writer, index))
            )
    with PolledDaemon(db) as reader:
        for name, timed in sorted(expected.items()):
            served = reader.result("storage.get_session", {"session_id": name})
            assert served == [json.loads(line) for _, line in sorted(timed)], name
        assert reader.close() == 0
