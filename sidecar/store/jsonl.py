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
The store-wide sequence number lives in `.seq`, rejected input in `.quarantine.jsonl`;
`.log` records which lines each commit appended, for followers (`jsonl_log`).
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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

import msgspec

from sidecar.events import stored_keys
from sidecar.store.base import (
    Event,
    ListQuery,
    Page,
    Rejected,
    SearchHit,
    SearchQuery,
    SessionQuery,
    SessionSummary,
    Store,
    StoreFailure,
    select,
)
from sidecar.store.files import NO_FOLLOW, create_private_dirs
from sidecar.store.jsonl_log import LOG_FILE, Appended, CommitLog, Entry, LogReader, Record, Span, undo
from sidecar.store.search import scan
from sidecar.store.summary import Tally, newest_first, tally_events

log = logging.getLogger("sidecar")
_T = TypeVar("_T")

SUFFIX = ".jsonl"
LOCK_FILE = ".lock"
SEQ_FILE = ".seq"
QUARANTINE_FILE = ".quarantine.jsonl"
MAX_NAME_BYTES = 200
# Letters, digits, `.`, `_`, `-`; not starting with a dot, no `..`: the Rust crate's names.
_PLAIN_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9._-]*", re.ASCII)
_LOCK_POLL_S = 0.005
CACHE_BYTES = 64 * 1024 * 1024  # parsed events kept between reads
# While followed, session files are checked for lines other programs appended (a stat
# each) this often, or less on a directory so large that a scan costs over 1% of a core.
SCAN_EVERY_S = 0.5
SCAN_SHARE = 0.01


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
        self._tallies: dict[str, tuple[_Position, Tally | None]] = {}  # by file name
        # flock excludes other processes only; this excludes this process's other threads.
        self._thread_lock = threading.RLock()
        self._log = CommitLog(directory, fsync=fsync)
        self._log_reader = LogReader(directory)
        self._next_scan = 0.0  # monotonic time of the next scan for lines others appended

    async def open(self) -> None:
        try:
            await asyncio.to_thread(self._open)
        except OSError as exc:
            raise StoreFailure(f"cannot open {self.directory}: {exc}") from exc

    def _open(self) -> None:
        create_private_dirs(self.directory)
        self._lock_fd = os.open(
            self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | NO_FOLLOW, 0o600
        )

    async def close(self) -> None:
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)

    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        return await self._in_thread("write to", self._write, events, rejected)

    async def read_session(self, session_id: str, query: SessionQuery) -> list[bytes]:
        return select(await self._in_thread("read", self._read, session_id), query)

    async def count_sessions(self) -> int:
        return len(await self._in_thread("list", self._session_files))

    async def list_sessions(self, query: ListQuery) -> list[SessionSummary]:
        return newest_first(await self._in_thread("list", self._all_tallies), query)

    async def delete_session(self, session_id: str) -> int:
        return await self._in_thread("delete from", self._delete, session_id)

    async def count_quarantined(self) -> int:
        return await self._in_thread("read", _count_lines, self.directory / QUARANTINE_FILE)

    async def size_bytes(self) -> int | None:
        return await self._in_thread("read", _directory_bytes, self.directory)

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        return await self._in_thread("search", self._search, query)

    async def last_seq(self) -> int:
        return await self._in_thread("follow", self._head)

    async def change_token(self) -> object:
        """The log's identity and size. Called many times a second while followed, so the
        one stat is made here (a thread hop would cost more); every SCAN_EVERY_S, lines
        other programs appended are adopted, in a thread."""
        now = time.monotonic()
        if now >= self._next_scan:
            await self._in_thread("follow", self._adopt)
            self._next_scan = now + max(SCAN_EVERY_S, (time.monotonic() - now) / SCAN_SHARE)
        try:
            stat = os.stat(self.directory / LOG_FILE)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreFailure(f"cannot follow {self.directory}: {exc.strerror or exc}") from exc
        return stat.st_ino, stat.st_size

    async def events_after(self, after: int, limit: int, max_bytes: int | None = None) -> Page:
        """The log is read by records, and its reader resumes only forward from where the
        last read ended: `max_bytes` is not applied (a trimmed page would make the next read
        scan the log from its start). The hub's queues still take only what fits."""
        return await self._in_thread("follow", self._log_reader.events_after, after, limit)

    async def _in_thread(self, action: str, work: Callable[..., _T], *args: Any) -> _T:
        """File work off the event loop; OSError becomes StoreFailure."""
        try:
            return await asyncio.to_thread(work, *args)
        except OSError as exc:
            raise StoreFailure(f"cannot {action} {self.directory}: {exc.strerror or exc}") from exc

    # --- on the worker thread ----------------------------------------------------------

    def _write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> range:
        by_session: dict[str, list[bytes]] = {}
        # [session, events, bytes] of each run of one session's events: the log keeps arrival order
        runs: list[list[Any]] = []
        run: list[Any] = [None, 0, 0]
        for event in events:
            by_session.setdefault(event.session_id, []).append(event.payload)
            if event.session_id != run[0]:
                run = [event.session_id, 0, 0]
                runs.append(run)
            run[1] += 1
            run[2] += len(event.payload) + 1
        with self._locked():
            self._log.prepare(self._stored_seq() + 1)
            with _all_or_nothing() as appended:
                spans = {
                    session_id: self._append(self.directory / file_name(session_id), payloads, appended)
                    for session_id, payloads in by_session.items()
                }
                if rejected:
                    self._append(
                        self.directory / QUARANTINE_FILE, [_quarantine_line(r) for r in rejected], appended
                    )
                # Lines another program appended before ours are logged first, in file order.
                foreign = self._log.foreign(list(spans.values()))
                adopted = sum(entry[4] for entry in foreign)
                last = self._advance_seq(adopted + len(events))
                records = [Record(seq=last - len(events) - adopted + 1, files=foreign)] if foreign else []
                if events:
                    records.append(Record(seq=last - len(events) + 1, files=_entries(runs, spans)))
                if records:
                    self._log.append(records, appended)
            self._log.rotate_if_big()
        return range(last - len(events) + 1, last + 1)

    def _append(self, path: Path, lines: list[bytes], appended: list[Appended]) -> Span:
        """One write of `lines` to the end of `path`, which is then closed again: a batch
        of any number of sessions holds one file open at a time."""
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | NO_FOLLOW, 0o600)
        try:
            stat = os.fstat(fd)
            size = stat.st_size
            appended.append(Appended(path, stat.st_ino, size, created=size == 0))
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            data = b"\n".join(lines) + b"\n"
            _write_all(fd, b"\n" + data if torn else data)
            if self._fsync:
                os.fsync(fd)
                if size == 0:  # a new file: its directory entry must be durable too
                    _fsync_directory(self.directory)
            # O_APPEND: where the write ended, even if another program appended meanwhile.
            end = os.lseek(fd, 0, os.SEEK_CUR)
        finally:
            os.close(fd)
        start = end - len(data)
        return Span(path.name, stat.st_ino, start - torn, start, end, len(lines))

    def _stored_seq(self) -> int:
        try:
            text = (self.directory / SEQ_FILE).read_bytes()[:32].strip()
        except FileNotFoundError:
            return 0
        return int(text) if text.isdigit() else 0

    def _advance_seq(self, count: int) -> int:
        """Take `count` seqs, after both `.seq` and the log (either may be behind the other
        after a crash)."""
        fd = os.open(self.directory / SEQ_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | NO_FOLLOW, 0o600)
        try:
            text = os.pread(fd, 32, 0).strip()
            last = max(int(text) if text.isdigit() else 0, self._log.next_seq - 1) + count
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
        if not self._thread_lock.acquire(timeout=self._lock_timeout_s):
            raise OSError(errno.EAGAIN, f"busy for more than {self._lock_timeout_s:g} s")
        try:
            with self._flocked():
                yield
        finally:
            self._thread_lock.release()

    @contextlib.contextmanager
    def _flocked(self) -> Iterator[None]:
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
        before is kept (`_parsed`) and only lines appended since are parsed."""
        name = file_name(session_id)
        known = self._parsed.pop(name, None)
        try:
            position, new, from_start = self._new_events(name, known.position if known else None)
        except FileNotFoundError:
            return []
        if known is None or from_start:
            known = _Parsed(position)
        known.position = position
        if name.startswith("~~"):  # shared by any ids with the same hash: check each line
            new = [event for event in new if event.session_id == session_id]
        known.events += new
        known.size += sum(len(event.payload) for event in new)
        self._remember(name, known)
        return list(known.events)  # a copy: a later read appends to the kept list

    def _tally(self, name: str) -> Tally | None:
        """The summary of one session file, folding in only lines appended since last time."""
        position, tally = self._tallies.get(name, (None, None))
        try:
            new_position, new, from_start = self._new_events(name, position)
        except FileNotFoundError:
            self._tallies.pop(name, None)
            return None
        if tally is None or from_start:
            tally = Tally(session_id=new[0].session_id) if new else None
        if tally is not None:
            tally_events({tally.session_id: tally}, (e for e in new if e.session_id == tally.session_id))
        self._tallies[name] = (new_position, tally)
        return tally

    def _all_tallies(self) -> list[Tally]:
        tallies = (self._tally(name) for name in self._session_files())
        return [tally for tally in tallies if tally is not None]

    def _search(self, query: SearchQuery) -> list[SearchHit]:
        """The whole scan here, not only the start of it (a generator handed to a thread
        would be walked by the loop): files are parsed one at a time, and only hits kept."""
        return scan(self._searched_events(query.session_id), query)

    def _searched_events(self, session_id: str | None) -> Iterator[tuple[Event, None]]:
        if session_id is not None:
            yield from ((event, None) for event in self._read(session_id))
            return
        for name in self._session_files():
            with contextlib.suppress(FileNotFoundError):
                yield from ((event, None) for event in self._new_events(name, None)[1])

    def _new_events(self, name: str, since: _Position | None) -> tuple[_Position, list[Event], bool]:
        """Events of the complete lines appended to a session file since `since`, the new
        position, and whether they were read from the start instead: the file is new to
        us, replaced, or rewritten so that the known line end moved."""
        with open(self.directory / name, "rb") as file:
            inode = os.fstat(file.fileno()).st_ino
            from_start = since is None or since.inode != inode or not _still_ends_a_line(file, since.offset)
            if from_start or since is None:
                since = _Position(inode, 0, 0)
            file.seek(since.offset)
            tail = file.read()
        end = tail.rfind(b"\n") + 1  # a last line without its newline may still be growing
        events = []
        number = since.lines
        for line in tail[:end].split(b"\n")[:-1]:
            number += 1
            line = line.removesuffix(b"\r")
            if not line:
                continue
            keys = stored_keys(line) if _is_utf8(line) else None
            if keys is None:
                self._warn_unreadable(name, number)
            else:
                events.append(Event(keys.session_id, line, keys.timestamp_ns, keys.method))
        return _Position(inode, since.offset + end, number), events, from_start

    def _delete(self, session_id: str) -> int:
        name = file_name(session_id)
        with self._locked():
            self._log.prepare(self._stored_seq() + 1)
            try:
                _, events, _ = self._new_events(name, None)
                (self.directory / name).unlink()
            except FileNotFoundError:
                return 0
            try:
                self._log.deleted(name, [])
            except OSError as exc:  # the session is gone all the same
                log.warning("could not log the removal of %s: %s", name, exc)
        self._parsed.pop(name, None)
        self._tallies.pop(name, None)
        return len(events)

    def _head(self) -> int:
        """The latest seq logged (lines other programs appended count once adopted)."""
        with self._thread_lock:
            self._log.follow()
            return self._log.next_seq - 1

    def _adopt(self) -> None:
        """Log the lines other programs appended to session files (the Rust crate), under
        the lock, after reading what other sidecars logged meanwhile."""
        with self._thread_lock:
            if self._log.follow() and not self._log.has_unlogged():
                return
            with self._locked():
                self._log.prepare(self._stored_seq() + 1)
                entries = self._log.unlogged()
                if not entries:
                    return
                with _all_or_nothing() as appended:
                    count = sum(entry[4] for entry in entries)
                    last = self._advance_seq(count)
                    self._log.append([Record(seq=last - count + 1, files=entries)], appended)
                self._log.rotate_if_big()

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

    def _session_files(self) -> list[str]:
        with os.scandir(self.directory) as entries:
            return [e.name for e in entries if e.name.endswith(SUFFIX) and not e.name.startswith(".")]


@contextlib.contextmanager
def _all_or_nothing() -> Iterator[list[Appended]]:
    """A list to note every file appended to: if the block fails, each is cut back to its
    size (or removed, if the block created it), so a retry never stores a line twice and
    no empty session file is left."""
    appended: list[Appended] = []
    try:
        yield appended
    except BaseException:
        for each in reversed(appended):
            with contextlib.suppress(OSError):
                undo(each)
        raise


class _Position(NamedTuple):
    """How far a session file was parsed: up to `offset`, a line boundary after `lines`."""

    inode: int
    offset: int
    lines: int


class _Parsed:
    """The events parsed of one session file, kept between reads."""

    def __init__(self, position: _Position) -> None:
        self.position = position
        self.size = 0  # payload bytes held
        self.events: list[Event] = []


def _still_ends_a_line(file: BinaryIO, offset: int) -> bool:
    """Whether the byte before `offset` is still the newline parsed there before."""
    if offset == 0:
        return True
    file.seek(offset - 1)
    return file.read(1) == b"\n"


def _entries(runs: list[list[Any]], spans: dict[str, Span]) -> list[Entry]:
    """The log entries of a batch: where each run of one session's events went."""
    entries: list[Entry] = []
    ends = {session_id: span.start for session_id, span in spans.items()}  # each file's next line
    for session_id, count, size in runs:
        span, start = spans[session_id], ends[session_id]
        entries.append((span.name, span.inode, start, start + size, count))
        ends[session_id] = start + size
    return entries


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _directory_bytes(directory: Path) -> int:
    return sum(entry.stat().st_size for entry in directory.iterdir() if entry.is_file())


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
