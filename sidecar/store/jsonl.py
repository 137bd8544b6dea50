"""The JSONL backend: one `<session_id>.jsonl` per session, the Rust crate's format.

Each line is one compact notification, appended in arrival order. A batch is grouped by
session and appended with one write per file while holding an exclusive lock on `.lock`,
so processes sharing the directory never interleave lines; with durability `full`, one
fsync per file per batch. A batch that fails part-way is cut back off every file it
reached, so a retry never duplicates events. A line that is not a readable notification
(a torn write from a killed process, a hand edit) is skipped with a warning; before
appending after such a tail, a newline closes it so the new line stays whole.

Files are taken to be append-only: a read parses only what was appended since the last
read of that session (parsed events are kept, up to CACHE_BYTES); a file replaced, cut
short or rewritten so that a known line end moved is parsed again from the start.

Ids that are not plain file names never reach the file system as they are (`file_name`).
The store-wide sequence number lives in `.seq`, rejected input in `.quarantine.jsonl`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

from sidecar.events import stored_keys
from sidecar.store.base import Event, Rejected, SessionQuery, Store, StoreFailure, select
from sidecar.store.files import create_private_dirs

log = logging.getLogger("sidecar")

SUFFIX = ".jsonl"
LOCK_FILE = ".lock"
SEQ_FILE = ".seq"
QUARANTINE_FILE = ".quarantine.jsonl"
MAX_NAME_BYTES = 200
# Letters, digits, `.`, `_`, `-`; not starting with a dot, no `..`: the Rust crate's names.
_PLAIN_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9._-]*", re.ASCII)
_LOCK_POLL_S = 0.005
CACHE_BYTES = 64 * 1024 * 1024  # parsed events kept between reads


def file_name(session_id: str) -> str:
    """The file of a session, always one safe component inside the directory.

    Plain ids keep their exact name. Others are `~` + lowercase base32 of their UTF-8
    (reversible; `~` never starts a plain id), or, when that would be too long,
    `~~` + SHA-256 (the id is then read back from each line, which holds it).
    """
    if len(session_id) <= MAX_NAME_BYTES and _PLAIN_ID.fullmatch(session_id):
        return session_id + SUFFIX
    raw = session_id.encode("utf-8", "surrogatepass")
    encoded = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    if len(encoded) < MAX_NAME_BYTES:
        return "~" + encoded + SUFFIX
    return "~~" + hashlib.sha256(raw).hexdigest() + SUFFIX


class JsonlStore(Store):
    backend = "jsonl"

    def __init__(self, directory: Path, *, fsync: bool = False, lock_timeout_s: float = 5.0) -> None:
        self.directory = directory
        self.location = str(directory)
        self._fsync = fsync
        self._lock_timeout_s = lock_timeout_s
        self._lock_fd = -1
        self._warned: set[tuple[str, int]] = set()  # (file, line number) already reported
        self._parsed: OrderedDict[str, _Parsed] = OrderedDict()  # by file name, least recent first
        self._parsed_bytes = 0

    async def open(self) -> None:
        try:
            await asyncio.to_thread(self._open)
        except OSError as exc:
            raise StoreFailure(f"cannot open {self.directory}: {exc}") from exc

    def _open(self) -> None:
        create_private_dirs(self.directory)
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    async def close(self) -> None:
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)

    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        try:
            return await asyncio.to_thread(self._write, events, rejected)
        except OSError as exc:
            raise StoreFailure(f"cannot write to {self.directory}: {exc.strerror or exc}") from exc

    async def read_session(self, session_id: str, query: SessionQuery) -> list[bytes]:
        try:
            events = await asyncio.to_thread(self._read, session_id)
        except OSError as exc:
            raise StoreFailure(f"cannot read {self.directory}: {exc.strerror or exc}") from exc
        return select(events, query)

    async def count_sessions(self) -> int:
        try:
            return await asyncio.to_thread(self._count_sessions)
        except OSError as exc:
            raise StoreFailure(f"cannot list {self.directory}: {exc.strerror or exc}") from exc

    # --- on the worker thread ----------------------------------------------------------

    def _write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> range:
        by_session: dict[str, list[bytes]] = {}
        for event in events:
            by_session.setdefault(event.session_id, []).append(event.payload)
        with self._locked():
            appended: list[tuple[int, int]] = []  # (fd, size before) of every file touched
            try:
                for session_id, payloads in by_session.items():
                    self._append(self.directory / file_name(session_id), payloads, appended)
                if rejected:
                    self._append(
                        self.directory / QUARANTINE_FILE, [_quarantine_line(r) for r in rejected], appended
                    )
                last = self._advance_seq(len(events))
            except BaseException:
                for fd, size in appended:  # all or nothing: a retry must not duplicate
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                raise
            finally:
                for fd, _ in appended:
                    os.close(fd)
        return range(last - len(events) + 1, last + 1)

    def _append(self, path: Path, lines: list[bytes], appended: list[tuple[int, int]]) -> None:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        size = os.fstat(fd).st_size
        appended.append((fd, size))
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        data = b"\n".join(lines) + b"\n"
        _write_all(fd, b"\n" + data if torn else data)
        if self._fsync:
            os.fsync(fd)
            if size == 0:  # a new file: its directory entry must be durable too
                _fsync_directory(self.directory)

    def _advance_seq(self, count: int) -> int:
        fd = os.open(self.directory / SEQ_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            text = os.pread(fd, 32, 0).strip()
            last = (int(text) if text.isdigit() else 0) + count
            os.pwrite(fd, b"%d\n" % last, 0)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return last

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The directory's write lock, waited for up to the lock timeout."""
        if self._lock_fd < 0:
            raise OSError(errno.EBADF, "the store is not open")
        deadline = time.monotonic() + self._lock_timeout_s
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError(
                        errno.EAGAIN, f"locked by another process for more than {self._lock_timeout_s:g} s"
                    ) from None
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _read(self, session_id: str) -> list[Event]:
        """The session's events in file order. Files are append-only, so what was parsed
        before is kept (`_parsed`) and only bytes appended since are parsed again."""
        name = file_name(session_id)
        try:
            with open(self.directory / name, "rb") as file:
                identity = os.fstat(file.fileno()).st_ino
                known = self._parsed.pop(name, None)
                if known is None or known.inode != identity or not _still_ends_a_line(file, known.offset):
                    known = _Parsed(identity)  # new, replaced or rewritten: parse it all
                file.seek(known.offset)
                tail = file.read()
        except FileNotFoundError:
            return []
        end = tail.rfind(b"\n") + 1  # a last line without its newline may still be growing
        hashed = name.startswith("~~")  # shared by any ids with the same hash: check each line
        for line in tail[:end].split(b"\n")[:-1]:
            known.lines += 1
            line = line.removesuffix(b"\r")
            if not line:
                continue
            keys = stored_keys(line) if _is_utf8(line) else None
            if keys is None:
                self._warn_unreadable(name, known.lines)
            elif not hashed or keys.session_id == session_id:
                known.events.append(Event(session_id, line, keys.timestamp_ns, keys.method))
                known.size += len(line)
        known.offset += end
        self._remember(name, known)
        return list(known.events)  # a copy: a later read appends to the kept list

    def _remember(self, name: str, parsed: _Parsed) -> None:
        """Keep the most recently read sessions' parsed events, up to CACHE_BYTES."""
        self._parsed[name] = parsed
        self._parsed_bytes = sum(p.size for p in self._parsed.values())
        while self._parsed_bytes > CACHE_BYTES and len(self._parsed) > 1:
            _, oldest = self._parsed.popitem(last=False)
            self._parsed_bytes -= oldest.size

    def _warn_unreadable(self, name: str, number: int) -> None:
        if (name, number) not in self._warned:
            self._warned.add((name, number))
            log.warning("%s line %d is not a readable notification; skipped", self.directory / name, number)

    def _count_sessions(self) -> int:
        with os.scandir(self.directory) as entries:
            return sum(1 for e in entries if e.name.endswith(SUFFIX) and not e.name.startswith("."))


class _Parsed:
    """What was parsed of one session file: its events up to `offset` (a line boundary)."""

    def __init__(self, inode: int) -> None:
        self.inode = inode
        self.offset = 0
        self.lines = 0
        self.size = 0  # payload bytes held
        self.events: list[Event] = []


def _still_ends_a_line(file: BinaryIO, offset: int) -> bool:
    """Whether the byte before `offset` is still the newline parsed there before."""
    if offset == 0:
        return True
    file.seek(offset - 1)
    return file.read(1) == b"\n"


def _quarantine_line(rejected: Rejected) -> bytes:
    record: dict[str, object] = {"received_at": rejected.received_ms, "reason": rejected.reason}
    if _is_utf8(rejected.line):
        record["line"] = rejected.line.decode()
    else:
        record["line_base64"] = base64.b64encode(rejected.line).decode("ascii")
    return msgspec.json.encode(record)


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
