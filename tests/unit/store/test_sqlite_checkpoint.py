"""WAL checkpoints off the commit path (sidecar/store/sqlite_checkpoint.py), on a real file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from events import line, prompt

from sidecar.store import sqlite_checkpoint, sqlite_setup
from sidecar.store.base import Event
from sidecar.store.sqlite import SqliteStore
from sidecar.store.sqlite_checkpoint import CHECKPOINT_BYTES, Checkpointer

T = "2026-06-07T14:03:21Z"


async def test_the_writer_checkpoints_inside_its_commits_only_as_a_backstop_past_the_limit(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    try:
        [(pages,)] = await store.db.execute_fetchall("PRAGMA wal_autocheckpoint")
        assert pages == sqlite_setup.BACKSTOP_CHECKPOINT_PAGES > sqlite_checkpoint.WAL_LIMIT_PAGES
    finally:
        await store.close()


async def test_a_checkpoint_on_its_own_thread_copies_the_wal_back_while_the_writer_stays_open(
    db: Path,
) -> None:
    with closing(sqlite3.connect(db, isolation_level=None)) as writer:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("CREATE TABLE t (x BLOB)")
        writer.executemany("INSERT INTO t VALUES (?)", [(bytes(4000),)] * 200)
        assert db.stat().st_size < 200 * 4000  # all in the WAL
        checkpointer = Checkpointer(db)
        try:
            await checkpointer.checkpoint()
        finally:
            await checkpointer.close()
        assert db.stat().st_size > 200 * 4000
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (200,)


async def test_a_flood_written_by_the_store_reaches_the_database_file_through_its_checkpointer(
    db: Path,
) -> None:
    text = "x" * 4000
    flood = []
    for n in range((CHECKPOINT_BYTES // len(text)) + 10):
        payload = line(prompt("c", T, text=f"{n} {text}"))
        flood.append(Event("c", payload, n, "user.prompt.submit"))
    store = SqliteStore(db)
    await store.open()
    try:
        await store.write(flood, [])
        await store._checkpointer.checkpoint()  # after the one the commit asked for
        assert db.stat().st_size > CHECKPOINT_BYTES  # in the database file, not only the WAL
    finally:
        await store.close()


async def test_the_wal_starts_over_under_a_steady_stream_of_commits(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_checkpoint, "CHECKPOINT_BYTES", 16 * 1024)
    monkeypatch.setattr(sqlite_checkpoint, "WAL_LIMIT_PAGES", 64)
    text = "x" * 4000
    store = SqliteStore(db)
    await store.open()
    written = 0
    try:
        for batch in range(40):
            events = [
                Event(
                    "c",
                    line(prompt("c", T, text=f"{batch} {n} {text}")),
                    batch * 100 + n,
                    "user.prompt.submit",
                )
                for n in range(25)
            ]
            written += sum(len(event.payload) for event in events)
            await store.write(events, [])
        wal = db.with_name(db.name + "-wal").stat().st_size
        assert wal < written / 2  # it would hold every batch had it never started over
    finally:
        await store.close()
