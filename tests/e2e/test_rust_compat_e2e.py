"""The SQLite file is shared with the Rust crate microagents-storage 0.1.0, both ways."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import rust_crate
from daemon import Daemon
from events import init, prompt, response, stop

from sidecar.store.sqlite import SCHEMA_VERSION


def methods(events: list[dict[str, object]]) -> list[object]:
    return [e["method"] for e in events]


def test_a_database_made_by_the_rust_crate_is_migrated_in_place_and_served(db: Path) -> None:
    crate = rust_crate.open_like_the_crate(db)
    # Inserted out of time order: the sidecar must order by timestamp, not by id.
    rust_crate.insert(crate, stop("r", "2026-06-07T14:03:24Z"))
    rust_crate.insert(crate, init("r", "2026-06-07T14:03:21Z"))
    rust_crate.insert(crate, prompt("r", "2026-06-07T14:03:22.5Z"))
    crate.close()

    with Daemon(db) as daemon:
        events = daemon.result("storage.get_session", {"session_id": "r"})
        assert methods(events) == ["session.init", "user.prompt.submit", "session.stop"]
        assert daemon.close() == 0

    check = sqlite3.connect(db)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert check.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
    assert check.execute("SELECT COUNT(*) FROM events WHERE timestamp_ns IS NULL").fetchone()[0] == 0


def test_rows_the_rust_crate_inserts_after_migration_are_served_in_time_order(db: Path) -> None:
    with Daemon(db) as daemon:
        daemon.send(init("s", "2026-06-07T14:03:21Z"), response("s", "2026-06-07T14:03:25Z"))
        assert daemon.result("storage.flush")["seq"] == 2

        crate = rust_crate.open_like_the_crate(db)  # the crate writes while the sidecar runs
        rust_crate.insert(crate, prompt("s", "2026-06-07T14:03:23Z"))
        rust_crate.insert(crate, stop("s", "2026-06-07T14:03:26Z"))
        crate.close()

        events = daemon.result("storage.get_session", {"session_id": "s"})
        assert methods(events) == ["session.init", "user.prompt.submit", "assistant.response", "session.stop"]
        last = daemon.result("storage.get_session", {"session_id": "s", "last": 1})
        assert methods(last) == ["session.stop"]
        assert daemon.close() == 0


def test_sessions_the_rust_crate_wrote_are_listed_and_searchable(db: Path) -> None:
    crate = rust_crate.open_like_the_crate(db)
    rust_crate.insert(crate, init("before", "2026-06-07T14:03:21Z"))
    rust_crate.insert(crate, prompt("before", "2026-06-07T14:03:22Z", text="find the albatross"))
    crate.close()
    with Daemon(db) as daemon:  # migrated: summaries rebuilt from the crate's rows
        assert daemon.result("storage.info")
        crate = rust_crate.open_like_the_crate(db)  # and the crate goes on writing
        rust_crate.insert(crate, init("after", "2026-06-07T14:03:30Z"))
        rust_crate.insert(crate, stop("before", "2026-06-07T14:03:25Z", result="albatross found"))
        crate.close()
        summaries = {s["session_id"]: s for s in daemon.result("storage.list_sessions")}
        assert list(summaries) == ["after", "before"]
        assert summaries["before"]["event_count"] == 3 and summaries["before"]["status"] == "stopped"
        assert summaries["before"]["title"] == "find the albatross"
        hits = daemon.result("storage.search", {"query": "albatross"})
        assert [h["method"] for h in hits] == ["session.stop", "user.prompt.submit"]
        assert daemon.close() == 0


def test_a_schema_2_database_gets_its_summaries_built_on_open(db: Path) -> None:
    from sidecar.store.sqlite import MIGRATIONS

    old = sqlite3.connect(db)
    for script in MIGRATIONS[:2]:
        old.executescript(script)
    old.execute("PRAGMA user_version = 2")
    old.execute(
        "INSERT INTO events (session_id, payload, timestamp_ns, method, created_at) VALUES (?, ?, ?, ?, 0)",
        ("v2", json.dumps(init("v2")), 1780841001000000001, "session.init"),
    )
    old.commit()
    old.close()
    with Daemon(db) as daemon:
        [summary] = daemon.result("storage.list_sessions")
        assert summary["session_id"] == "v2" and summary["model"] == "m"
        assert daemon.close() == 0


def test_the_rust_crate_query_reads_what_the_sidecar_wrote(db: Path) -> None:
    sent = [
        init("1"),
        prompt("1", "2026-06-07T14:03:22Z"),
        response("1", "2026-06-07T14:03:23Z"),
        stop("1", "2026-06-07T14:03:24Z"),
    ]
    with Daemon(db) as daemon:
        daemon.send(*sent)
        assert daemon.close() == 0

    crate = rust_crate.open_like_the_crate(db)  # its open sequence leaves our schema alone
    assert rust_crate.get_session(crate, "1") == sent
    rust_crate.insert(crate, prompt("1", "2026-06-07T14:03:25Z"))  # and it can still write
    assert len(rust_crate.get_session(crate, "1")) == 5


def test_a_row_that_is_not_a_notification_is_skipped_with_a_warning(db: Path) -> None:
    crate = rust_crate.open_like_the_crate(db)
    rust_crate.insert(crate, init("x"))
    crate.execute(rust_crate.INSERT, ("x", "{not json", 0))
    crate.close()
    with Daemon(db) as daemon:
        assert methods(daemon.result("storage.get_session", {"session_id": "x"})) == ["session.init"]
        assert daemon.close() == 0
        assert "not served" in daemon.stderr


def test_new_database_files_are_private_and_missing_directories_are_created_0700(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a" / "b" / "sessions.db"
    with Daemon(path) as daemon:
        daemon.send(init("p"))
        assert daemon.close() == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o700


def test_the_db_path_can_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "from-env.db"
    with Daemon(None, env={"MICROAGENTS_DB": str(path)}) as daemon:
        assert daemon.result("storage.info")["location"] == str(path)
        assert daemon.close() == 0
    assert path.exists()


def test_events_are_stored_as_text_rows_rust_can_read(db: Path) -> None:
    with Daemon(db) as daemon:
        daemon.send(init("t"))
        assert daemon.close() == 0
    row = sqlite3.connect(db).execute("SELECT typeof(payload), payload FROM events").fetchone()
    assert row[0] == "text"
    assert json.loads(row[1])["params"]["session_id"] == "t"
