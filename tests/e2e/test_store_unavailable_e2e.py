"""While the store cannot take writes, requests get -32001 and no event is lost."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from daemon import Daemon
from events import init, prompt


def test_a_lock_held_past_the_timeout_gives_32001_and_events_are_stored_once_it_clears(
    db: Path,
) -> None:
    with Daemon(db, "--lock-timeout", "0.2") as daemon:
        daemon.send(init("s"))
        assert daemon.result("storage.flush") == {"seq": 1}

        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        daemon.send(prompt("s", "2026-06-07T14:03:22Z"), prompt("s", "2026-06-07T14:03:23Z"))
        failed = daemon.request("storage.flush")
        assert failed["error"]["code"] == -32001
        assert "locked" in failed["error"]["data"]["reason"]
        acked = daemon.request("user.prompt.submit", prompt("s", "2026-06-07T14:03:24Z")["params"])
        assert acked["error"]["code"] == -32001 and acked["error"]["data"]["retained"] is True
        stats = daemon.result("storage.stats")
        assert stats["queue_depth"] == 3
        holder.execute("ROLLBACK")
        holder.close()

        assert daemon.result("storage.flush") == {"seq": 4}
        events = daemon.result("storage.get_session", {"session_id": "s"})
        assert len(events) == 4
        assert daemon.close() == 0
        assert "store unavailable" in daemon.stderr and "recovered" in daemon.stderr


def test_exiting_while_the_store_fails_names_the_lost_events_and_exits_1(db: Path) -> None:
    with Daemon(db, "--lock-timeout", "0.1", "--shutdown-timeout", "1") as daemon:
        assert daemon.result("storage.info")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        daemon.send(init("lost-1"), init("lost-2"))
        assert daemon.request("storage.flush")["error"]["code"] == -32001
        code = daemon.close(timeout=30)
        holder.execute("ROLLBACK")
        assert code == 1
        assert "2 events not stored" in daemon.stderr
        assert "lost-1, lost-2" in daemon.stderr


def test_an_unopenable_store_exits_3_with_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with Daemon(blocker / "sessions.db") as daemon:
        assert daemon.close() == 3
        assert "cannot open" in daemon.stderr


def test_shutdown_while_the_store_fails_is_answered_and_exits_1_naming_what_was_lost(db: Path) -> None:
    with Daemon(db, "--lock-timeout", "0.1", "--shutdown-timeout", "1") as daemon:
        assert daemon.result("storage.info")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        daemon.send(init("stuck"))
        assert daemon.result("storage.shutdown") is None
        code = daemon.wait(timeout=30)
        holder.execute("ROLLBACK")
        assert code == 1 and "1 events not stored" in daemon.stderr and "stuck" in daemon.stderr


def test_a_store_that_cannot_be_opened_leaves_no_traceback(tmp_path: Path) -> None:
    for _ in range(5):  # aiosqlite's thread once answered into the closed loop, now and then
        with Daemon(tmp_path) as daemon:  # a directory is no database
            assert daemon.close() == 3
            assert "Traceback" not in daemon.stderr and "cannot open" in daemon.stderr


def test_a_fork_the_store_cannot_take_yet_is_answered_retained_and_stored_later(db: Path) -> None:
    with Daemon(db, "--lock-timeout", "0.1") as daemon:
        daemon.send(init("parent"))
        assert daemon.result("storage.flush") == {"seq": 1}
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        reply = daemon.request("storage.fork_session", {"session_id": "parent", "new_session_id": "child"})
        holder.execute("ROLLBACK")
        holder.close()
        assert reply["error"]["code"] == -32001 and reply["error"]["data"]["retained"] is True
        assert reply["error"]["data"]["session_id"] == "child"
        assert daemon.result("storage.flush") == {"seq": 3}
        assert len(daemon.result("storage.get_session", ["child"])) == 2
        assert daemon.close() == 0


def test_a_sigterm_while_shutting_down_still_ends_by_naming_what_was_not_stored(db: Path) -> None:
    with Daemon(db, "--lock-timeout", "0.1", "--shutdown-timeout", "3") as daemon:
        assert daemon.result("storage.info")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        daemon.send(init("pending"))
        assert daemon.request("storage.flush")["error"]["code"] == -32001
        assert daemon.process.stdin is not None
        daemon.process.stdin.close()  # shutdown starts, retrying the locked store
        daemon.signal(signal.SIGTERM)  # once killed it by default; now it is one more ask to stop
        code = daemon.wait(timeout=30)
        holder.execute("ROLLBACK")
        assert code == 1 and "1 events not stored" in daemon.stderr and "pending" in daemon.stderr
