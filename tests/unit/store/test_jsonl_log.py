"""The jsonl backend's commit log (`DIR/.log`) in-process: seqs as acknowledged, rotation,
a writer killed mid-record, removed and recreated sessions, several store instances."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from events import line, prompt

from sidecar.store import jsonl_log
from sidecar.store.base import Event, SeqUnavailable
from sidecar.store.jsonl import JsonlStore


def event(session_id: str, n: int) -> Event:
    payload = line(prompt(session_id, "2026-01-01T00:00:00Z", text=str(n)))
    return Event(session_id, payload, n, "user.prompt.submit")


def texts(page_events: list[tuple[int, Event]]) -> list[tuple[int, str]]:
    return [(seq, json.loads(e.payload)["params"]["prompt"]) for seq, e in page_events]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JsonlStore]:
    opened = JsonlStore(tmp_path / "sessions")
    await opened.open()
    yield opened
    await opened.close()


async def another(store: JsonlStore) -> JsonlStore:
    """A second store on the same directory, as another process would have."""
    other = JsonlStore(store.directory)
    await other.open()
    return other


async def test_the_log_numbers_events_as_they_were_acknowledged_across_sessions(store: JsonlStore) -> None:
    acked = await store.write([event("a", 1), event("b", 2), event("a", 3), event("a", 4)], [])
    page = await store.events_after(0, 100)
    assert [(seq, e.session_id) for seq, e in page.events] == list(zip(acked, "abaa", strict=True))
    assert (page.upto, page.more) == (4, False)
    assert texts((await store.events_after(1, 2)).events) == [(2, "2"), (3, "3")]


async def test_a_replay_crosses_a_rotation_and_one_older_than_the_kept_logs_is_refused(
    store: JsonlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonl_log, "ROTATE_BYTES", 1000)
    follower = await another(store)
    seen: list[tuple[int, str]] = []
    for n in range(1, 61):
        await store.write([event(f"s{n % 4}", n)], [])
        if n % 7 == 0:  # a follower reading now and then keeps its place across rotations
            page = await follower.events_after(seen[-1][0] if seen else 0, 1000)
            seen += texts(page.events)
    seen += texts((await follower.events_after(seen[-1][0], 1000)).events)
    assert seen == [(n, str(n)) for n in range(1, 61)]
    assert (store.directory / ".log.old").exists()
    fresh = await another(store)
    with pytest.raises(SeqUnavailable):
        await fresh.events_after(0, 1000)
    oldest = json.loads((store.directory / ".log.old").read_bytes().splitlines()[0])["seq"]
    assert texts((await fresh.events_after(oldest - 1, 1000)).events) == [
        (n, str(n)) for n in range(oldest, 61)
    ]
    for other in (follower, fresh):
        await other.close()


async def test_a_log_record_torn_by_a_killed_writer_loses_and_repeats_nothing(store: JsonlStore) -> None:
    await store.write([event("a", 1)], [])
    # Killed part way through its log record, after appending its lines and taking its seq:
    (store.directory / ".seq").write_text("2\n")
    with (store.directory / "a.jsonl").open("ab") as file:
        file.write(event("a", 2).payload + b"\n")
    with (store.directory / ".log").open("ab") as file:
        file.write(b'{"seq":2,"files":[["a.js')
    other = await another(store)
    assert await other.write([event("a", 3)], []) == range(4, 5)  # the orphan line takes seq 3
    assert texts((await store.events_after(0, 100)).events) == [(1, "1"), (3, "2"), (4, "3")]
    await other.close()


async def test_a_removed_session_is_left_out_of_a_replay_and_a_recreated_one_is_followed(
    store: JsonlStore,
) -> None:
    await store.write([event("gone", 1), event("kept", 2)], [])
    assert await store.delete_session("gone") == 1
    await store.write([event("gone", 3)], [])  # the same file name again, maybe the same inode
    assert texts((await store.events_after(0, 100)).events) == [(2, "2"), (3, "3")]


async def test_lines_appended_without_the_log_are_adopted_once_by_whoever_sees_them(
    store: JsonlStore,
) -> None:
    other = await another(store)
    await store.write([event("a", 1)], [])
    with (store.directory / "rust.jsonl").open("ab") as file:  # the Rust crate keeps no log
        file.write(event("rust", 2).payload + b"\n" + event("rust", 3).payload[:20])  # and a torn line
    await store.change_token()  # a scan, as while subscribed
    await other.change_token()
    with (store.directory / "rust.jsonl").open("ab") as file:
        file.write(event("rust", 3).payload[20:] + b"\n")
    assert await other.write([event("rust", 4)], []) == range(4, 5)
    assert texts((await store.events_after(0, 100)).events) == [(1, "1"), (2, "2"), (3, "3"), (4, "4")]
    await other.close()


async def test_history_from_before_the_log_has_no_seqs_and_the_next_seq_follows_the_counter(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    (directory / "old.jsonl").write_bytes(event("old", 0).payload + b"\n")
    (directory / ".seq").write_text("41\n")
    store = JsonlStore(directory)
    await store.open()
    assert await store.last_seq() == 0  # no log yet
    await store.change_token()  # the first follower starts the log
    assert await store.last_seq() == 41
    assert await store.write([event("old", 1)], []) == range(42, 43)
    assert texts((await store.events_after(0, 100)).events) == [(42, "1")]
    await store.close()
