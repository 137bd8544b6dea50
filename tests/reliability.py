"""Shared by the reliability tests: fast event lines, a feeder thread, process figures, and
the one place that reads back what a backend stored (one reader per backend).

Nothing here sleeps to synchronise; every wait is bounded.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import sqlite3
import termios
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import msgspec
from backends import Backend, JsonlBackend, PostgresBackend, SqliteBackend
from daemon import Daemon
from pg_server import fetch

# --- event lines, built from a template: a million of them must take a second, not ten ---------

_PROMPT = (
    b'{"jsonrpc":"2.0","method":"user.prompt.submit","params":{"session_id":"%s","turn_id":"t",'
    b'"prompt":"%s","timestamp":"2026-06-%02dT00:00:00.%09dZ"}'
)


def stored_event(session_id: str, text: str, day: int, n: int) -> bytes:
    """A prompt as the store keeps it (and as a notification line, without newline).

    Its instant is `n` nanoseconds into day `day` of June 2026: events built with a rising
    `n` (or day) sort in the order they were built.
    """
    return _PROMPT % (session_id.encode(), text.encode(), day, n) + b"}"


def as_request(stored: bytes, request_id: str) -> bytes:
    """The same event sent as a request: answered once it is committed."""
    return stored[:-1] + b',"id":"' + request_id.encode() + b'"}'


def request_line(method: str, request_id: str, params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode()


# The crash test reads the whole store after each of its twenty kills: msgspec, not json.
_decode = msgspec.json.Decoder().decode


def complete_notification(payload: bytes) -> dict[str, Any]:
    """A stored payload parsed; fails unless it is a whole event notification."""
    event = _decode(payload)
    assert isinstance(event, dict) and list(event) == ["jsonrpc", "method", "params"], payload[:200]
    assert event["jsonrpc"] == "2.0" and isinstance(event["method"], str), payload[:200]
    assert isinstance(event["params"], dict) and event["params"].get("session_id"), payload[:200]
    return event


# --- talking to the daemon while it is flooded ------------------------------------------------------

TIMEOUT = object()  # PolledDaemon.poll: nothing arrived in time
ENDED = object()  # PolledDaemon.poll: stdout is closed, the daemon is gone


class PolledDaemon(Daemon):
    """A daemon whose responses can be awaited a little at a time, and read to the end."""

    def __enter__(self) -> PolledDaemon:
        return self

    def poll(self, timeout: float) -> Any:
        """The next response line decoded, TIMEOUT if none came in `timeout`, or ENDED."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return TIMEOUT
        if not line:
            self._lines.put(b"")  # ENDED again for the next caller
            return ENDED
        return json.loads(line)

    def collect_until(self, request_id: str, timeout: float = 20.0) -> list[Any]:
        """Every response line up to and including the answer to `request_id`."""
        messages = []
        while True:
            message = self.poll(timeout)
            assert message is not TIMEOUT and message is not ENDED, f"no {request_id!r}: {self.stderr}"
            messages.append(message)
            if isinstance(message, dict) and message.get("id") == request_id:
                return messages

    def rest(self, timeout: float = 20.0) -> list[Any]:
        """Every response still unread, up to the end of stdout (after the daemon exited)."""
        messages = []
        while (message := self.poll(timeout)) is not ENDED:
            assert message is not TIMEOUT, f"stdout stayed open {timeout}s; stderr: {self.stderr}"
            messages.append(message)
        return messages


class Feeder(threading.Thread):
    """Writes chunks to a daemon's stdin as fast as the pipe takes them, until they run out
    or the daemon goes away. `written` counts the bytes the pipe accepted."""

    def __init__(self, daemon: Daemon, chunks: Iterable[bytes]) -> None:
        super().__init__(daemon=True)
        assert daemon.process.stdin is not None
        self._fd = daemon.process.stdin.fileno()
        self._chunks = chunks
        self.written = 0
        self.start()

    def run(self) -> None:
        try:
            for chunk in self._chunks:
                view = memoryview(chunk)
                while view:
                    count = os.write(self._fd, view)
                    self.written += count
                    view = view[count:]
        except OSError:  # EPIPE: the daemon is gone or stopped reading for good
            pass

    def finish(self, timeout: float = 20.0) -> int:
        self.join(timeout)
        assert not self.is_alive(), "the feeder is still blocked on the daemon's stdin"
        return self.written


def chunked(lines: Iterable[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
    """Lines joined into chunks of about `size` bytes, each line newline-terminated."""
    batch: list[bytes] = []
    total = 0
    for line in lines:
        batch.append(line)
        total += len(line) + 1
        if total >= size:
            yield b"\n".join(batch) + b"\n"
            batch, total = [], 0
    if batch:
        yield b"\n".join(batch) + b"\n"


def unread_bytes(fd: int) -> int:
    """Bytes written into a pipe and not yet read by the other end."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MiB."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# --- what a backend stored, read without the daemon ---------------------------------------------
# backends.Backend starts a daemon on each store and reads its quarantine; a reader here adds
# the store's consistency check and its events. Another backend is one more reader.


class StoredEvent(NamedTuple):
    session_id: str
    payload: bytes


class StoreReader(Protocol):
    def check_integrity(self) -> None:
        """Fail unless the store is consistent and holds no torn event."""

    def events(self) -> list[StoredEvent]:
        """Every stored event; each session's in the order they arrived."""


class SqliteReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def check_integrity(self) -> None:
        if self.path.exists():
            with closing(sqlite3.connect(self.path)) as connection:
                assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    def events(self) -> list[StoredEvent]:
        if not self.path.exists():
            return []
        with closing(sqlite3.connect(self.path)) as connection:
            connection.text_factory = bytes
            if not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
                return []  # killed before the schema was committed
            rows = connection.execute("SELECT session_id, payload FROM events ORDER BY id")
            return [StoredEvent(session.decode(), bytes(payload)) for session, payload in rows]


class JsonlReader:
    """One `<session>.jsonl` per session; odd ids are encoded in the file name, so the
    session of such a file is read from its lines.

    A SIGKILL can cut a write() to a file short (Linux stops copying on a fatal signal),
    leaving the start of a line: the daemon closes it with a newline before its next
    append and never serves it. Such fragments are checked to be nothing but that, and
    left out of `events` (what a daemon serves is compared by the crash test itself).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _files(self) -> list[tuple[Path, list[bytes]]]:
        paths = sorted(self.directory.glob("*.jsonl"))  # not the hidden .quarantine.jsonl
        files = []
        for path in paths:
            lines = [line for line in path.read_bytes().split(b"\n") if line]
            files.append((path, [line for line in lines if not _torn(line)]))
        return files

    def check_integrity(self) -> None:
        for _, lines in self._files():
            for line in lines:
                complete_notification(line)

    def events(self) -> list[StoredEvent]:
        events = []
        for path, lines in self._files():
            plain = None if path.name.startswith("~") else path.name.removesuffix(".jsonl")
            events += [StoredEvent(plain or _decode(line)["params"]["session_id"], line) for line in lines]
        return events


def _torn(line: bytes) -> bool:
    """The start of a notification cut short, and nothing else (anything else fails)."""
    try:
        _decode(line)
    except msgspec.DecodeError:
        assert line.startswith(b'{"jsonrpc":"2.0","method":'), line[:200]
        return True
    return False


class PostgresReader:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def check_integrity(self) -> None:
        """Every event once by seq, each whole, and a summary for each of its sessions."""
        [(rows, seqs, unsummarised)] = (
            fetch(
                self.dsn,
                "SELECT count(*), count(DISTINCT seq), "
                "(SELECT count(DISTINCT session_id) FROM events WHERE session_id NOT IN "
                "(SELECT session_id FROM sessions)) FROM events",
            )
            if _has_events(self.dsn)
            else [(0, 0, 0)]
        )
        assert rows == seqs and unsummarised == 0, (rows, seqs, unsummarised)

    def events(self) -> list[StoredEvent]:
        if not _has_events(self.dsn):
            return []  # killed before the schema was committed
        rows = fetch(self.dsn, "SELECT session_id, convert_to(payload, 'UTF8') FROM events ORDER BY seq")
        return [StoredEvent(session, bytes(payload)) for session, payload in rows]


def _has_events(dsn: str) -> bool:
    return bool(fetch(dsn, "SELECT to_regclass('events') IS NOT NULL")[0][0])


def reader(backend: Backend) -> StoreReader:
    if isinstance(backend, SqliteBackend):
        return SqliteReader(backend.path)
    if isinstance(backend, JsonlBackend):
        return JsonlReader(backend.directory)
    if isinstance(backend, PostgresBackend):
        return PostgresReader(backend.dsn)
    raise NotImplementedError(f"no reader for the {backend.name} backend yet")


# Backends that commit a batch in one transaction: a crash leaves a prefix of the input.
# The others (jsonl appends file by file) leave a prefix of each session's events.
ATOMIC_BATCHES = {"sqlite", "postgres"}
