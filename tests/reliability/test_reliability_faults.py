"""Real store failures: a full disk, a file-size limit, a read-only file, a directory without
permission, a lock held at start-up. Requests get -32001 and stderr says why; the events
received are kept and stored once the fault clears, or named at a non-zero exit.

(A lock held past --lock-timeout while running is covered by test_store_unavailable_e2e.)
Tests run as root here, and root ignores file permissions: the daemon is then started through
`setpriv` without the capabilities that bypass them (CAP_DAC_OVERRIDE and company). A full
disk needs a small tmpfs, so root; without it that case is skipped, and the file-size limit
(RLIMIT_FSIZE, set on the running daemon with prlimit) still fails real writes.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rust_crate
from reliability import PolledDaemon, SqliteReader, stored_event

pytestmark = pytest.mark.reliability

BIG = "x" * 64 * 1024  # a few of these make the WAL grow past what it already holds


def event(n: int, session: str = "kept") -> bytes:
    return stored_event(session, f"{n}{BIG}", 1, n)


class Fault:
    """A way for the store to fail under a running daemon, and to recover."""

    reason = ""  # what SQLite says, passed on in the -32001 and on stderr

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "sessions.db"

    def apply(self, daemon: PolledDaemon) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def undo(self) -> None:
        """Tear down what the fault set up (after the daemon is gone)."""


class FullDisk(Fault):
    """The store on a 2 MiB tmpfs; a ballast file takes the rest of it."""

    reason = "database or disk is full"

    def __init__(self, tmp_path: Path) -> None:
        self.disk = tmp_path / "disk"
        self.disk.mkdir()
        mount = ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(self.disk)]
        if subprocess.run(mount, capture_output=True).returncode != 0:
            pytest.skip("mounting a small tmpfs needs root")
        self.db = self.disk / "sessions.db"
        self.ballast = self.disk / "ballast"

    def apply(self, daemon: PolledDaemon) -> None:
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, bytes(64 * 1024))
        except OSError:  # ENOSPC: the disk is full
            pass
        finally:
            os.close(fd)
        assert shutil.disk_usage(self.disk).free == 0

    def clear(self) -> None:
        self.ballast.unlink()

    def undo(self) -> None:
        if subprocess.run(["umount", str(self.disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.disk)], check=True)


class FileSizeLimit(Fault):
    """RLIMIT_FSIZE of 1 byte on the daemon: every write into its files fails (EFBIG)."""

    reason = "disk I/O error"

    def apply(self, daemon: PolledDaemon) -> None:
        self.pid = daemon.process.pid
        self.limits = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (1, self.limits[1]))

    def clear(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # an exited daemon took its limit along
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, self.limits)


class ReadOnlyFile(Fault):
    """The database and its WAL made immutable (chattr +i): writes fail, even as root."""

    reason = "disk I/O error"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        probe = tmp_path / "probe"
        probe.touch()
        if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i needs root (CAP_LINUX_IMMUTABLE) and ext4, xfs or btrfs")
        subprocess.run(["chattr", "-i", str(probe)], check=True)

    def files(self) -> list[str]:
        return [str(self.db), f"{self.db}-wal"]

    def apply(self, daemon: PolledDaemon) -> None:
        subprocess.run(["chattr", "+i", *self.files()], check=True)

    def clear(self) -> None:
        subprocess.run(["chattr", "-i", *self.files()], check=True)

    def undo(self) -> None:
        subprocess.run(["chattr", "-i", *self.files()], capture_output=True)


FAULTS = {"full-disk": FullDisk, "file-size-limit": FileSizeLimit, "read-only-file": ReadOnlyFile}


@pytest.fixture
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fault]:
    made: Fault = FAULTS[request.param](tmp_path)
    try:
        yield made
    finally:
        made.undo()


@pytest.mark.parametrize("fault", list(FAULTS), indirect=True)
def test_a_store_fault_gives_32001_keeps_the_events_and_stores_each_once_it_clears(fault: Fault) -> None:
    with PolledDaemon(fault.db) as daemon:
        daemon.send_raw(event(0) + b"\n")
        assert daemon.result("storage.flush") == {"seq": 1}
        fault.apply(daemon)

        daemon.send_raw(b"".join(event(n) + b"\n" for n in range(1, 5)))
        params = {"session_id": "kept", "turn_id": "t", "prompt": "5", "timestamp": "2026-06-01T00:00:05Z"}
        acked = daemon.request("user.prompt.submit", params)
        assert acked["error"]["code"] == -32001, acked
        assert acked["error"]["data"] == {
            "reason": fault.reason,
            "retained": True,
            "note": "the event is kept and retried",
        }
        for method, read in [("storage.flush", None), ("storage.get_session", {"session_id": "kept"})]:
            failed = daemon.request(method, read)
            assert failed["error"]["code"] == -32001 and failed["error"]["data"]["reason"] == fault.reason
        assert daemon.result("storage.stats")["queue_depth"] == 5

        fault.clear()
        assert daemon.result("storage.flush") == {"seq": 6}
        served = daemon.result("storage.get_session", {"session_id": "kept"})
        assert [e["params"]["prompt"][:1] for e in served] == ["0", "1", "2", "3", "4", "5"]
        assert daemon.close() == 0
        # How many events the log lines count depends on how commits were grouped: they
        # name the failure and the recovery; what was kept is asserted above and below.
        unavailable = rf"store unavailable: {re.escape(fault.reason)}; \d+ events kept in memory, retrying"
        assert re.search(unavailable, daemon.stderr), daemon.stderr
        assert re.search(r"store recovered; \d+ queued events committed", daemon.stderr), daemon.stderr
    stored = SqliteReader(fault.db)
    stored.check_integrity()
    payloads = [payload for _, payload in stored.events()]
    assert payloads[:5] == [event(n) for n in range(5)] and len(payloads) == 6


ENDINGS = [
    pytest.param("full-disk", "end of input", id="full-disk-then-end-of-input"),
    pytest.param("file-size-limit", "SIGTERM", id="file-size-limit-then-SIGTERM"),
    pytest.param("read-only-file", "SIGINT", id="read-only-file-then-SIGINT"),
]


@pytest.mark.parametrize(("fault", "ending"), ENDINGS, indirect=["fault"])
def test_ending_while_the_store_still_fails_exits_1_naming_how_many_events_and_which_sessions(
    fault: Fault, ending: str
) -> None:
    with PolledDaemon(fault.db, "--shutdown-timeout", "0.5") as daemon:
        daemon.send_raw(event(0, "before") + b"\n")
        assert daemon.result("storage.flush") == {"seq": 1}
        fault.apply(daemon)
        daemon.send_raw(event(1, "lost-a") + b"\n" + event(2, "lost-b") + b"\n" + event(3, "lost-a") + b"\n")
        assert daemon.request("storage.flush")["error"]["code"] == -32001
        if ending == "end of input":
            code = daemon.close()
        else:
            daemon.signal(signal.SIGTERM if ending == "SIGTERM" else signal.SIGINT)
            code = daemon.wait()
        assert code == 1
        unstored = f"exiting with 3 events not stored ({fault.reason}) in 2 sessions: lost-a, lost-b"
        assert unstored in daemon.stderr
    fault.clear()
    stored = SqliteReader(fault.db)
    stored.check_integrity()
    assert [payload for _, payload in stored.events()] == [event(0, "before")]


# --- faults present at start-up ----------------------------------------------------------------------


@pytest.fixture
def permissions_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Daemons started from here on are subject to file permissions, even under root."""
    if os.geteuid() != 0:
        return
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
    wrapper = tmp_path / "python-without-dac"
    dropped = "-dac_override,-dac_read_search,-fowner,-linux_immutable"
    wrapper.write_text(f'#!/bin/sh\nexec setpriv --bounding-set={dropped} {sys.executable} "$@"\n')
    wrapper.chmod(0o700)
    monkeypatch.setattr(sys, "executable", str(wrapper))


def created(db: Path) -> Path:
    """A database made and closed by a daemon (no WAL left), for the cases below."""
    with PolledDaemon(db) as daemon:
        daemon.send_raw(event(0) + b"\n")
        assert daemon.close() == 0
    return db


STARTUP = [
    pytest.param("sessions.db", False, "Permission denied", id="new-file-in-a-locked-directory"),
    pytest.param("sub/sessions.db", False, "Permission denied", id="new-directory-in-a-locked-one"),
    pytest.param("sessions.db", True, "readonly", id="existing-file-in-a-locked-directory"),
]


@pytest.mark.parametrize(("name", "exists", "says"), STARTUP)
@pytest.mark.usefixtures("permissions_apply")
def test_a_store_that_cannot_be_opened_at_start_exits_3_saying_where_and_why(
    tmp_path: Path, name: str, exists: bool, says: str
) -> None:
    directory = tmp_path / "locked"
    directory.mkdir()
    db = directory / name
    if exists:
        created(db)
    directory.chmod(0o500)
    try:
        with PolledDaemon(db) as daemon:
            assert daemon.wait() == 3
            assert f"cannot open {db}: " in daemon.stderr and says in daemon.stderr, daemon.stderr
    finally:
        directory.chmod(0o700)


@pytest.mark.usefixtures("permissions_apply")
def test_a_directory_made_read_only_while_the_daemon_runs_does_not_stop_it_storing(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    db = directory / "sessions.db"
    with PolledDaemon(db) as daemon:
        daemon.send_raw(event(0) + b"\n")
        assert daemon.result("storage.flush") == {"seq": 1}
        directory.chmod(0o500)
        try:
            daemon.send_raw(b"".join(event(n) + b"\n" for n in range(1, 50)))
            assert daemon.result("storage.flush") == {"seq": 50}
            assert daemon.close() == 0
            assert daemon.stderr == ""
        finally:
            directory.chmod(0o700)
    SqliteReader(db).check_integrity()
    assert len(SqliteReader(db).events()) == 50


@pytest.mark.usefixtures("permissions_apply")
def test_a_file_read_only_at_start_gives_32001_and_its_events_are_stored_once_it_is_writable(
    tmp_path: Path,
) -> None:
    db = created(tmp_path / "sessions.db")
    db.chmod(0o400)
    with PolledDaemon(db, "--shutdown-timeout", "0.5") as daemon:
        daemon.send_raw(event(1) + b"\n")
        failed = daemon.request("storage.flush")
        assert failed["error"]["code"] == -32001 and "readonly" in failed["error"]["data"]["reason"]
        for path in tmp_path.iterdir():  # SQLite gave the WAL files the database's mode
            path.chmod(0o600)
        assert daemon.result("storage.flush") == {"seq": 2}
        assert daemon.close() == 0
    assert len(SqliteReader(db).events()) == 2


def test_a_lock_held_while_the_daemon_starts_on_an_old_file_past_the_timeout_exits_3_naming_it(
    tmp_path: Path,
) -> None:
    """A decision: a file that needs migrating cannot be served before it is migrated, so a
    start-up that cannot take the lock within --lock-timeout fails fast and says why (the
    runtime may retry); the same lock while running gives -32001 and a retry (tested above)."""
    db = tmp_path / "sessions.db"
    rust_crate.open_like_the_crate(db).close()  # schema 1: the daemon must migrate it
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        with PolledDaemon(db, "--lock-timeout", "0.2") as daemon:
            assert daemon.close() == 3
            assert "cannot open" in daemon.stderr and "database is locked" in daemon.stderr
    finally:
        holder.close()


def test_a_lock_held_while_the_daemon_starts_on_a_current_file_delays_writes_not_the_start(
    tmp_path: Path,
) -> None:
    """A current file needs no lock to open (its schema version is read without one): the
    daemon starts, answers -32001 while the lock is held, and stores everything once it clears."""
    db = created(tmp_path / "sessions.db")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with PolledDaemon(db, "--lock-timeout", "0.2") as daemon:
            daemon.send_raw(event(1) + b"\n")
            assert daemon.request("storage.flush")["error"]["code"] == -32001
            holder.execute("COMMIT")
            assert daemon.result("storage.flush") == {"seq": 2}
            assert daemon.close() == 0
    finally:
        holder.close()
    assert [payload for _, payload in SqliteReader(db).events()] == [event(0), event(1)]
