"""Group commit (sidecar.ingest) in-process, over a MemoryStore the test can make fail or
hold mid-commit, and over a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import pytest
from events import line, prompt

from sidecar.events import stored_keys
from sidecar.ingest import Ingest
from sidecar.store.base import Event, Rejected, StoreFailure
from sidecar.store.memory import MemoryStore
from sidecar.store.sqlite import SqliteStore

WAIT_S = 5.0  # every wait is bounded: a committer that stops answering fails the test, never hangs it
T = TypeVar("T")
ROOMY = {"max_pending_events": 1000, "max_pending_bytes": 1 << 20}


def event(n: int) -> Event:
    payload = line(prompt("s", f"2026-06-07T14:03:{n % 60:02d}Z", text=str(n)))
    keys = stored_keys(payload)
    assert keys is not None
    return Event(keys.session_id, payload, keys.timestamp_ns, keys.method)


def texts(events: Sequence[Event]) -> list[int]:
    return [int(json.loads(e.payload)["params"]["prompt"]) for e in events]


class Store(MemoryStore):
    """A MemoryStore that fails while `failure` is set and holds every write until `gate`
    is open, keeping what each attempt was given."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.attempts: list[list[int]] = []
        self._attempted = asyncio.Event()

    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        self.attempts.append(texts(events))
        self._attempted.set()
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return await super().write(events, rejected)

    async def attempted(self, count: int) -> None:
        """Wait until `count` writes have begun."""
        async with asyncio.timeout(WAIT_S):
            while len(self.attempts) < count:
                self._attempted.clear()
                await self._attempted.wait()

    async def stored(self) -> list[int]:
        page = await self.events_after(0, 1000)
        return texts([e for _, e in page.events])


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
async def ingest(store: Store) -> AsyncIterator[Ingest]:
    running = Ingest(store, **ROOMY)
    running.start()
    yield running
    store.failure = None
    store.gate.set()
    await running.close(0)


async def bounded(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(WAIT_S):
        return await awaitable


# --- group commit and acks -------------------------------------------------------------------


async def test_events_that_arrive_while_a_commit_is_in_flight_go_together_in_the_next_commit(
    store: Store, ingest: Ingest
) -> None:
    store.gate.clear()
    ingest.add(event(1))
    await store.attempted(1)
    for n in (2, 3, 4):
        ingest.add(event(n))
    store.gate.set()
    assert await bounded(ingest.drain()) == 4
    assert store.attempts == [[1], [2, 3, 4]]
    assert await store.stored() == [1, 2, 3, 4]


async def test_acks_resolve_to_each_events_seq_once_it_is_committed(store: Store, ingest: Ingest) -> None:
    store.gate.clear()
    first = ingest.add(event(1), acknowledged=True)
    await store.attempted(1)
    assert ingest.add(event(2)) is None  # not acknowledged: nothing to wait for
    third, fourth = ingest.add(event(3), acknowledged=True), ingest.add(event(4), acknowledged=True)
    acks = [ack for ack in (first, third, fourth) if ack is not None]
    assert len(acks) == 3 and not any(ack.done() for ack in acks)  # nothing is acked before its commit
    store.gate.set()
    assert await bounded(asyncio.gather(*acks)) == [1, 3, 4]


async def test_on_commit_is_told_of_every_commit_of_events_and_not_of_rejected_lines_alone(
    store: Store, ingest: Ingest
) -> None:
    told: list[int] = []
    ingest.on_commit = lambda: told.append(ingest.last_seq)
    ingest.reject(Rejected(b"{", "parse error", 0))
    assert await bounded(ingest.drain()) == 0
    assert told == []
    ingest.add(event(1))
    assert await bounded(ingest.drain()) == 1
    assert told == [1]


async def test_rejected_lines_go_to_the_quarantine_with_their_reason(store: Store, ingest: Ingest) -> None:
    ingest.reject(Rejected(b"not json", "parse error", 7))
    ingest.add(event(1))
    ingest.reject(Rejected(b'{"method":"x"}', "unknown method", 8))
    assert await bounded(ingest.drain()) == 1
    assert store.quarantine == [
        Rejected(b"not json", "parse error", 7),
        Rejected(b'{"method":"x"}', "unknown method", 8),
    ]


# --- a failing store ------------------------------------------------------------------------


async def test_a_batch_that_fails_is_retried_in_order_at_the_head_of_the_queue_and_stored_once(
    store: Store, ingest: Ingest
) -> None:
    store.failure = StoreFailure("disk full")
    store.gate.clear()
    acks = [ingest.add(event(n), acknowledged=True) for n in (1, 2)]
    await store.attempted(1)
    later = ingest.add(event(3), acknowledged=True)
    ingest.reject(Rejected(b"{", "parse error", 0))
    store.gate.set()
    for ack in acks:  # the clients waiting are answered at once; the events stay queued
        assert ack is not None
        with pytest.raises(StoreFailure, match="disk full"):
            await bounded(ack)
    assert ingest.failure is not None and ingest.queue_depth == 3
    store.failure = None
    assert await bounded(ingest.drain()) == 3
    assert later is not None and later.result() == 3
    assert store.attempts == [[1, 2], [1, 2, 3]]
    assert await store.stored() == [1, 2, 3]
    assert store.quarantine == [Rejected(b"{", "parse error", 0)]
    assert ingest.failure is None


async def test_drain_raises_while_the_store_fails_and_returns_the_last_seq_once_it_recovers(
    store: Store, ingest: Ingest
) -> None:
    ingest.add(event(1))
    assert await bounded(ingest.drain()) == 1
    store.failure = StoreFailure("read-only")
    ingest.add(event(2))
    ingest.add(event(3))
    for _ in range(2):  # each drain tries once more, at once, rather than wait out the backoff
        with pytest.raises(StoreFailure, match="read-only"):
            await bounded(ingest.drain())
    assert ingest.queue_depth == 2
    store.failure = None
    assert await bounded(ingest.drain()) == 3
    assert await store.stored() == [1, 2, 3]


async def test_an_unexpected_error_from_the_store_is_a_store_failure_and_keeps_the_events(
    store: Store, ingest: Ingest
) -> None:
    store.failure = KeyError("a backend bug")
    ingest.add(event(1))
    with pytest.raises(StoreFailure, match="internal error"):
        await bounded(ingest.drain())
    store.failure = None
    assert await bounded(ingest.drain()) == 1
    assert await store.stored() == [1]


# --- closing ---------------------------------------------------------------------------------


async def test_close_commits_what_is_queued_and_leaves_nothing(store: Store, ingest: Ingest) -> None:
    for n in (1, 2, 3):
        ingest.add(event(n))
    assert await bounded(ingest.close(WAIT_S)) == []
    assert await store.stored() == [1, 2, 3]


async def test_close_stores_what_the_store_takes_within_the_grace(store: Store, ingest: Ingest) -> None:
    store.failure = StoreFailure("locked")
    ack = ingest.add(event(1), acknowledged=True)
    assert ack is not None
    with pytest.raises(StoreFailure):
        await bounded(ack)
    closing = asyncio.ensure_future(ingest.close(WAIT_S))
    store.failure = None  # the lock is released while the daemon exits
    assert await bounded(closing) == []
    assert await store.stored() == [1]


async def test_close_while_the_store_fails_returns_the_events_not_stored_in_order_and_fails_their_acks(
    store: Store, ingest: Ingest
) -> None:
    ingest.add(event(1))
    assert await bounded(ingest.drain()) == 1
    store.failure = StoreFailure("disk full")
    first = ingest.add(event(2), acknowledged=True)
    assert first is not None
    with pytest.raises(StoreFailure):
        await bounded(first)
    waiting = ingest.add(event(3), acknowledged=True)
    assert texts(await bounded(ingest.close(0))) == [2, 3]
    assert waiting is not None
    with pytest.raises(StoreFailure, match="disk full"):
        await bounded(waiting)
    assert await store.stored() == [1]


async def test_close_returns_a_batch_still_in_flight_and_its_ack_is_answered(
    store: Store, ingest: Ingest
) -> None:
    store.gate.clear()
    ack = ingest.add(event(1), acknowledged=True)
    await store.attempted(1)
    ingest.add(event(2))
    assert texts(await bounded(ingest.close(0))) == [1, 2]
    assert ack is not None
    with pytest.raises(StoreFailure, match="exiting"):
        await bounded(ack)
    assert await store.stored() == []


# --- backpressure ------------------------------------------------------------------------------


async def test_room_runs_out_at_max_pending_events_and_comes_back_once_they_are_committed(
    store: Store,
) -> None:
    ingest = Ingest(store, max_pending_events=3, max_pending_bytes=1 << 20)
    ingest.start()
    store.gate.clear()
    for n in (1, 2):
        ingest.add(event(n))
        assert ingest.has_room
    ingest.add(event(3))
    assert not ingest.has_room
    room = asyncio.ensure_future(ingest.wait_for_room())
    await store.attempted(1)
    assert not room.done()
    store.gate.set()
    await bounded(room)
    assert ingest.has_room and await store.stored() == [1, 2, 3]
    await ingest.close(0)


async def test_events_being_committed_count_toward_max_pending_events(store: Store) -> None:
    ingest = Ingest(store, max_pending_events=3, max_pending_bytes=1 << 20)
    ingest.start()
    store.gate.clear()
    ingest.add(event(1))
    await store.attempted(1)  # one event in flight
    ingest.add(event(2))
    assert ingest.has_room
    ingest.add(event(3))  # three received and not committed
    assert not ingest.has_room
    store.gate.set()
    await bounded(ingest.wait_for_room())
    assert await bounded(ingest.drain()) == 3
    await ingest.close(0)


async def test_room_runs_out_at_max_pending_bytes_and_comes_back_once_they_are_committed(
    store: Store,
) -> None:
    size = len(event(1).payload)
    ingest = Ingest(store, max_pending_events=1000, max_pending_bytes=2 * size + 1)
    ingest.start()
    store.gate.clear()
    ingest.add(event(1))
    await store.attempted(1)  # bytes being committed count too
    ingest.add(event(2))
    assert ingest.has_room
    ingest.add(event(3))
    assert not ingest.has_room
    room = asyncio.ensure_future(ingest.wait_for_room())
    store.gate.set()
    await bounded(room)
    assert ingest.has_room and await store.stored() == [1, 2, 3]
    await ingest.close(0)


async def test_a_batch_takes_at_most_half_the_pending_events_so_the_reader_can_fill_the_rest(
    store: Store,
) -> None:
    ingest = Ingest(store, max_pending_events=4, max_pending_bytes=1 << 20)
    ingest.start()
    store.gate.clear()
    acks = [ingest.add(event(n), acknowledged=n % 2 == 0) for n in (1, 2, 3, 4)]
    await store.attempted(1)
    assert store.attempts == [[1, 2]]
    store.gate.set()
    await bounded(ingest.wait_for_room())
    assert await bounded(ingest.drain()) == 4
    assert store.attempts == [[1, 2], [3, 4]]
    assert [await bounded(ack) for ack in acks if ack is not None] == [2, 4]
    await ingest.close(0)


async def test_a_batch_takes_at_most_half_the_pending_bytes(store: Store) -> None:
    size = len(event(1).payload)
    ingest = Ingest(store, max_pending_events=1000, max_pending_bytes=4 * size)
    ingest.start()
    store.gate.clear()
    for n in (1, 2, 3, 4, 5):
        ingest.add(event(n))
    store.gate.set()
    assert await bounded(ingest.drain()) == 5
    assert store.attempts == [[1, 2], [3, 4], [5]]
    await ingest.close(0)


# --- over a real SQLite file -----------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "sessions.db", busy_timeout_ms=50)
    await opened.open()
    yield opened
    await opened.close()


async def test_acks_carry_the_seqs_sqlite_gave_and_every_event_is_stored_once_in_order(
    sqlite_store: SqliteStore,
) -> None:
    ingest = Ingest(sqlite_store, **ROOMY)
    ingest.start()
    acks = [ingest.add(event(n), acknowledged=n % 7 == 0) for n in range(1, 301)]
    ingest.reject(Rejected(b"not json", "parse error", 1))
    seqs = await bounded(asyncio.gather(*(ack for ack in acks if ack is not None)))
    assert seqs == [n for n in range(1, 301) if n % 7 == 0]
    assert await bounded(ingest.drain()) == 300
    assert await bounded(ingest.close(WAIT_S)) == []
    stored = [event(n).payload for n in range(1, 301)]
    with closing(sqlite3.connect(sqlite_store.path)) as db:
        assert [p.encode() for (p,) in db.execute("SELECT payload FROM events ORDER BY id")] == stored
        assert db.execute("SELECT line, reason FROM quarantine").fetchall() == [(b"not json", "parse error")]


async def test_a_locked_sqlite_file_makes_drain_raise_and_everything_is_stored_once_it_is_released(
    sqlite_store: SqliteStore,
) -> None:
    ingest = Ingest(sqlite_store, **ROOMY)
    ingest.start()
    holder = sqlite3.connect(sqlite_store.path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        for n in (1, 2, 3):
            ingest.add(event(n))
        with pytest.raises(StoreFailure, match="locked"):
            await bounded(ingest.drain())
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert await bounded(ingest.drain()) == 3
    assert await bounded(ingest.close(WAIT_S)) == []
    with closing(sqlite3.connect(sqlite_store.path)) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (3,)
