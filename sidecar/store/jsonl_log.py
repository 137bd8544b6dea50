"""The jsonl backend's commit log, `DIR/.log`: one line per commit naming the lines it
appended to which session files and the seq of the first, so followers see the commits
of every process in order, each once, by reading one small append-only file.

Only a process holding the directory lock appends to it. Lines another program appends
to a session file (the Rust crate keeps no log) are adopted: the next sidecar that writes
to that file, or notices them in a size scan while it is followed, logs them first,
under the lock, after reading what is already logged. A log starts with a baseline: what
the files held before it is history without seqs. Past ROTATE_BYTES the log becomes
`.log.old` and a new one starts with a baseline of every file's logged end.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import msgspec

from sidecar.events import stored_keys
from sidecar.store.base import Event, Page, SeqUnavailable
from sidecar.store.files import NO_FOLLOW

log = logging.getLogger("sidecar")

LOG_FILE = ".log"
OLD_LOG_FILE = ".log.old"
_NEW_LOG_FILE = ".log.new"
SUFFIX = ".jsonl"
ROTATE_BYTES = 8 * 1024 * 1024
_CHUNK = 1024 * 1024

# (file name, inode, start offset, end offset, line count): whole lines of one file.
Entry = tuple[str, int, int, int, int]


class Record(msgspec.Struct, omit_defaults=True):
    """One line of the log. `files`: the lines of one commit, numbered from `seq` in this
    order. A baseline (`base`: file name, inode, logged end) starts a log, `seq` being the
    next seq, `rotated` if an older log came before. `deleted`: a session file removed."""

    seq: int = 0
    files: list[Entry] = []
    base: list[tuple[str, int, int]] | None = None
    rotated: bool = False
    deleted: str | None = None

    @property
    def lines(self) -> int:
        return sum(entry[4] for entry in self.files)


_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Record)


class Appended(NamedTuple):
    """A file a commit appended to: cut back to `size` if the commit fails, or removed if
    the commit `created` it (an empty session file would count as a session)."""

    path: Path
    inode: int
    size: int
    created: bool


def undo(appended: Appended) -> None:
    """Cut a file back to where a failed commit found it (never another file at its path)."""
    try:
        fd = os.open(appended.path, os.O_WRONLY | os.O_CLOEXEC | NO_FOLLOW)
    except OSError:
        return
    try:
        if os.fstat(fd).st_ino != appended.inode:
            return
        if appended.created:
            os.unlink(appended.path)
        else:
            os.ftruncate(fd, appended.size)
    finally:
        os.close(fd)


class Span(NamedTuple):
    """What a writer appended to one session file: from `before` (its torn-line newline
    included), its own lines from `start` to `end`."""

    name: str
    inode: int
    before: int
    start: int
    end: int
    lines: int


class CommitLog:
    """The head of the log as writers and the size scan need it: each session file's
    logged end and the next seq. Its callers hold the store's thread lock; those that
    append, the directory lock too."""

    def __init__(self, directory: Path, *, fsync: bool) -> None:
        self.directory = directory
        self._fsync = fsync
        self._inode = 0  # of the log followed; 0: none yet
        self._offset = 0  # read up to here, a line boundary
        self.next_seq = 1
        self.ends: dict[str, tuple[int, int]] = {}  # file name -> (inode, logged end)
        self._quiet: dict[str, tuple[int, int]] = {}  # (inode, size) of files scanned for nothing

    def follow(self) -> bool:
        """Apply the records appended since the last call; False if there is no log."""
        try:
            file = open(self.directory / LOG_FILE, "rb")  # noqa: SIM115  (closed below)
        except FileNotFoundError:
            return False
        with file:
            inode = os.fstat(file.fileno()).st_ino
            if inode != self._inode:  # new or rotated: its baseline holds the whole state
                self._inode, self._offset = inode, 0
            file.seek(self._offset)
            data = file.read()
        end = data.rfind(b"\n") + 1
        for raw in data[:end].split(b"\n")[:-1]:
            record = _decode(raw)
            if record is not None:
                self._apply(record)
        self._offset += end
        return True

    def prepare(self, next_seq: int) -> None:
        """Under the lock: follow the log, or start one if there is none."""
        if self.follow():
            return
        base = [
            (name, stat.st_ino, _line_end(fd, stat.st_size))
            for name, fd, stat in _opened_session_files(self.directory)
        ]
        rotated = (self.directory / OLD_LOG_FILE).exists()
        self._new_log(Record(seq=max(next_seq, self.next_seq), base=base, rotated=rotated))

    def foreign(self, spans: list[Span]) -> list[Entry]:
        """Under the lock: lines other programs appended before what a writer just wrote."""
        entries = []
        for span in spans:  # one file open at a time, however many sessions a batch has
            fd = os.open(self.directory / span.name, os.O_RDONLY | os.O_CLOEXEC | NO_FOLLOW)
            try:
                logged = self._logged_end(fd, span.name, span.inode, span.before)
                entry = _whole_lines(fd, span.name, span.inode, logged, span.before)
            finally:
                os.close(fd)
            if entry is not None:
                entries.append(entry)
        return entries

    def has_unlogged(self) -> bool:
        """Whether some session file has bytes the log does not cover (stat only)."""
        for name, inode, size in _session_files(self.directory):
            if self._quiet.get(name) == (inode, size):
                continue
            known = self.ends.get(name)
            if known is None or known[0] != inode or known[1] != size:
                return True
        return False

    def unlogged(self) -> list[Entry]:
        """Under the lock: the whole lines of every session file the log does not cover."""
        entries = []
        for name, fd, stat in _opened_session_files(self.directory):
            logged = self._logged_end(fd, name, stat.st_ino, stat.st_size)
            entry = _whole_lines(fd, name, stat.st_ino, logged, stat.st_size)
            if entry is None:
                self._quiet[name] = (stat.st_ino, stat.st_size)
            else:
                entries.append(entry)
        return entries

    def append(self, records: list[Record], appended: list[Appended]) -> None:
        """Under the lock, after `prepare`: append records; `appended` gets the log's size
        before, so the caller can cut them off again if its commit fails."""
        path = self.directory / LOG_FILE
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | NO_FOLLOW)
        try:
            stat = os.fstat(fd)
            size = stat.st_size
            if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                # A writer killed part way through its record: drop the part, so its lines are
                # adopted as unlogged, rather than closing it into a line that might parse.
                size = _line_end(fd, size)
                os.ftruncate(fd, size)
            appended.append(Appended(path, stat.st_ino, size, created=False))
            data = b"".join(_encode(record) + b"\n" for record in records)
            _write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._offset = size + len(data)
        for record in records:
            self._apply(record)

    def deleted(self, name: str, appended: list[Appended]) -> None:
        self.append([Record(deleted=name)], appended)
        self._quiet.pop(name, None)

    def rotate_if_big(self) -> None:
        """Under the lock: past ROTATE_BYTES, keep the log as `.log.old` and start anew
        from a baseline of every file's logged end. A failure leaves the log as it is."""
        try:
            if os.stat(self.directory / LOG_FILE).st_size <= ROTATE_BYTES:
                return
            present = {name: inode for name, inode, _ in _session_files(self.directory)}
            base = [(n, i, end) for n, (i, end) in self.ends.items() if present.get(n) == i]
            self._new_log(Record(seq=self.next_seq, base=base, rotated=True), keep_old=True)
        except OSError as exc:
            log.warning("could not rotate %s: %s", self.directory / LOG_FILE, exc)

    def _new_log(self, baseline: Record, *, keep_old: bool = False) -> None:
        """Write a new log holding only `baseline`, atomically."""
        new = self.directory / _NEW_LOG_FILE
        line = _encode(baseline) + b"\n"
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | NO_FOLLOW, 0o600)
        try:
            _write_all(fd, line)
            if self._fsync:
                os.fsync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if keep_old:
            os.replace(self.directory / LOG_FILE, self.directory / OLD_LOG_FILE)
        os.replace(new, self.directory / LOG_FILE)
        self._inode, self._offset = inode, len(line)
        self._apply(baseline)

    def _apply(self, record: Record) -> None:
        if record.base is not None:
            self.ends = {name: (inode, end) for name, inode, end in record.base}
            self.next_seq = max(self.next_seq, record.seq)
        elif record.deleted is not None:
            self.ends.pop(record.deleted, None)
        else:
            for name, inode, _, end, _ in record.files:
                self.ends[name] = (inode, end)
            self.next_seq = max(self.next_seq, record.seq + record.lines)

    def _logged_end(self, fd: int, name: str, inode: int, size: int) -> int:
        """Where the unlogged bytes of a file start: its logged end, or 0 for a file new to
        the log, replaced, cut short or rewritten so that the logged end moved."""
        known = self.ends.get(name)
        if known is None or known[0] != inode or known[1] > size:
            return 0
        end = known[1]
        if end and os.pread(fd, 1, end - 1) != b"\n":
            return 0
        return end


class LogReader:
    """Resolves seqs to events: finds the records after a seq (remembering where the last
    call stopped) and reads their lines from the session files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # (log inode, offset of a record, its seq): every record before it ends below seq.
        self._hint: tuple[int, int, int] | None = None
        self._regions_read: tuple[tuple[int, int], dict[tuple[str, int], tuple[int, bytes]]] | None = None

    def events_after(self, after: int, limit: int) -> Page:
        hint = self._hint
        for _ in range(3):
            page, check = self._page(after, limit)
            if check is None or not self._removed_since(*check):
                return page
            self._hint = hint  # a file read was removed meanwhile: what was read may be another's
        return page

    def _page(self, after: int, limit: int) -> tuple[Page, tuple[int, int, set[str]] | None]:
        """A page, and what to check afterwards: (log inode, offset read up to, files read)."""
        records, check = self._records(after)
        removed: dict[str, int] = {}  # file name -> index of its last `deleted` record
        for index, (_, _, _, record) in enumerate(records):
            if record.deleted is not None:
                removed[record.deleted] = index
        events: list[tuple[int, Event]] = []
        upto = after
        for index, (inode, at, end, record) in enumerate(records):
            last = record.seq + record.lines - 1 if record.base is None else record.seq - 1
            if record.files and last > after:
                gone = {entry[0] for entry in record.files if removed.get(entry[0], -1) > index}
                check[2].update(entry[0] for entry in record.files if entry[0] not in gone)
                stopped = self._resolve((inode, at), record, after, limit, events, gone)
                if stopped is not None:
                    self._hint = (inode, at, record.seq)
                    return Page(events, stopped, True), check
            if record.base is not None or record.files:
                upto = max(upto, last)
                self._hint = (inode, end, last + 1)
        return Page(events, upto, False), check if records else None

    def _records(self, after: int) -> tuple[list[tuple[int, int, int, Record]], tuple[int, int, set[str]]]:
        """(log inode, offset, next offset, record) of every record that may hold events
        after `after`, to the end of the log."""
        records: list[tuple[int, int, int, Record]] = []
        end = (0, 0)
        with contextlib.ExitStack() as stack:
            logs: list[tuple[int, BinaryIO]] = []  # oldest first
            for name in (OLD_LOG_FILE, LOG_FILE):
                with contextlib.suppress(FileNotFoundError):
                    opened = stack.enter_context(open(self.directory / name, "rb"))
                    logs.append((os.fstat(opened.fileno()).st_ino, opened))
            if not logs:
                return records, (0, 0, set())
            first, offset = self._start(logs, after)
            for inode, file in logs[first:]:
                file.seek(offset)
                data = file.read()
                data = data[: data.rfind(b"\n") + 1]
                position = offset
                for raw in data.split(b"\n")[:-1]:
                    at, position = position, position + len(raw) + 1
                    record = _decode(raw)
                    if record is not None:
                        records.append((inode, at, position, record))
                end = (inode, position)
                offset = 0  # the next log is read from its start
        return records, (*end, set())

    def _removed_since(self, inode: int, offset: int, names: set[str]) -> bool:
        """Whether a file read was removed after the log was read (or the log rotated)."""
        if not names:
            return False
        try:
            with open(self.directory / LOG_FILE, "rb") as file:
                if os.fstat(file.fileno()).st_ino != inode:
                    return True
                file.seek(offset)
                tail = file.read()
        except FileNotFoundError:
            return True
        for raw in tail[: tail.rfind(b"\n") + 1].split(b"\n")[:-1]:
            record = _decode(raw)
            if record is not None and record.deleted in names:
                return True
        return False

    def _start(self, logs: list[tuple[int, BinaryIO]], after: int) -> tuple[int, int]:
        """Which log and offset to read from for the events after `after`."""
        if self._hint is not None:
            inode, offset, seq = self._hint
            for index, (log_inode, _) in enumerate(logs):
                if log_inode == inode and seq <= after + 1:
                    return index, offset
        first = _decode(logs[0][1].readline())
        if first is not None and first.rotated and first.base is not None and after + 1 < first.seq:
            raise SeqUnavailable(f"the log no longer goes back to seq {after + 1} (it starts at {first.seq})")
        return 0, 0

    def _resolve(
        self,
        at: tuple[int, int],
        record: Record,
        after: int,
        limit: int,
        events: list[tuple[int, Event]],
        gone: set[str],
    ) -> int | None:
        """Append the record's events after `after`, but those of files removed since (a
        later `deleted` record); the seq where `limit` was reached."""
        regions = self._regions(at, record)
        seq = record.seq
        for name, inode, start, end, count in record.files:
            if seq + count - 1 > after and name not in gone:
                low, region = regions.get((name, inode), (start, b""))
                lines = region[start - low : end - low].split(b"\n")
                for index in range(max(0, after + 1 - seq), count):
                    raw = lines[index].removesuffix(b"\r") if index < len(lines) - 1 else b""
                    keys = stored_keys(raw) if raw else None
                    if keys is not None:
                        events.append(
                            (seq + index, Event(keys.session_id, raw, keys.timestamp_ns, keys.method))
                        )
                        if len(events) >= limit:
                            return seq + index
            seq += count
        return None

    def _regions(self, at: tuple[int, int], record: Record) -> dict[tuple[str, int], tuple[int, bytes]]:
        """The bytes a record covers in each file, read once per file (kept while a page
        ends inside the record); a file removed or replaced since reads as nothing."""
        if self._regions_read is not None and self._regions_read[0] == at:
            return self._regions_read[1]
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        for name, inode, start, end, _ in record.files:
            low, high = spans.get((name, inode), (start, end))
            spans[(name, inode)] = (min(low, start), max(high, end))
        regions = {}
        for (name, inode), (low, high) in spans.items():
            try:
                with open(self.directory / name, "rb") as file:
                    if os.fstat(file.fileno()).st_ino == inode:
                        regions[(name, inode)] = (low, os.pread(file.fileno(), high - low, low))
            except FileNotFoundError:
                pass
        self._regions_read = (at, regions)
        return regions


def _decode(raw: bytes) -> Record | None:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return None  # a line torn by a killed writer, closed by the next append


def _session_files(directory: Path) -> Iterator[tuple[str, int, int]]:
    """(name, inode, size) of each session file."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(SUFFIX) and not entry.name.startswith(".") and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    stat = entry.stat()
                    yield entry.name, stat.st_ino, stat.st_size


def _opened_session_files(directory: Path) -> Iterator[tuple[str, int, os.stat_result]]:
    """(name, fd open for reading, its stat) of each session file; each fd is closed once
    the caller moves on to the next."""
    for name, _, _ in _session_files(directory):
        try:
            fd = os.open(directory / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            yield name, fd, os.fstat(fd)
        finally:
            os.close(fd)


def _line_end(fd: int, size: int) -> int:
    """The offset just after the last newline before `size` (0 if there is none)."""
    offset = size
    while offset > 0:
        start = max(0, offset - 65536)
        found = os.pread(fd, offset - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        offset = start
    return 0


def _whole_lines(fd: int, name: str, inode: int, start: int, end: int) -> Entry | None:
    """The entry for the complete lines between two offsets of a file, if any."""
    lines, last_newline, offset = 0, -1, start
    while offset < end:
        chunk = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        found = chunk.rfind(b"\n")
        if found >= 0:
            last_newline = offset + found
        offset += len(chunk)
    return (name, inode, start, last_newline + 1, lines) if lines else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
