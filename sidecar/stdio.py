"""Byte I/O on stdin and stdout through one thread each, bounded both ways.

Threads with blocking reads and writes work for every kind of descriptor (pipe, regular
file, FIFO, socket, terminal) and never set O_NONBLOCK, which would break a `tee` or a
shell sharing the same pipe or terminal. Knows nothing of lines or JSON-RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import select
import stat
import threading
from collections.abc import Callable

log = logging.getLogger("sidecar")

READ_CHUNK = 64 * 1024  # small enough that the loop turns often while parsing
INTERRUPT_POLL_S = 0.1  # how long a reader waiting for input may take to see a signal
_MAX_BUFFERS = 512  # per writev, under IOV_MAX
WRITE_SLICE = 64 * 1024  # bytes per writev, about: a reader at 6.4 KB/s still shows progress within 10 s
PIPE_BYTES = 1024 * 1024  # stdout pipe asked for: the default /proc/sys/fs/pipe-max-size


class StdinReader:
    """Reads ahead at most `ahead` chunks: when the consumer stops, so does the pipe.

    The thread waits for input with select (never blocked in read for long), so after
    `interrupt` it starts no new read, and the end marker it queues follows every chunk
    it took from stdin: nothing already read is lost, nothing more is taken.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, ahead: int = 2) -> None:
        self._fd = fd
        self._loop = loop
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        # One token per chunk the thread may read ahead. A SimpleQueue, not a Semaphore:
        # handing a token back is one C call, where a Semaphore's release takes a lock and
        # notifies a Condition in Python code, on the event loop, for every chunk.
        self._credits: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(ahead):
            self._credits.put(None)
        self._interrupted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def interrupt(self) -> None:
        """End the input early: chunks already read come first, then b""."""
        self._interrupted.set()
        self._credits.put(None)  # a thread waiting for the consumer must see it

    async def read(self) -> bytes:
        """The next chunk; b"" at end of input."""
        chunk = await self._chunks.get()
        self._credits.put(None)
        return chunk

    def _run(self) -> None:
        while True:
            self._credits.get()
            chunk = self._read()
            try:
                self._loop.call_soon_threadsafe(self._chunks.put_nowait, chunk)
            except RuntimeError:  # the loop is closed: the daemon is exiting
                return
            if not chunk:
                return

    def _read(self) -> bytes:
        """The next chunk once input is there; b"" at its end or after an interrupt."""
        try:
            while not self._interrupted.is_set():
                ready, _, _ = select.select([self._fd], [], [], INTERRUPT_POLL_S)
                if ready:
                    return os.read(self._fd, READ_CHUNK)
        except (OSError, ValueError) as exc:
            log.warning("stdin read failed (%s); treating it as end of input", exc)
        return b""


def enlarge_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Best effort: a pipe of `size` bytes (Linux), so a response of megabytes (a session
    read) goes out in a few large writes instead of 64 KiB at a time, each waiting for
    the reader. Other descriptors, other systems and a refused size keep what they have."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, set_size, size)
    except OSError as exc:  # over /proc/sys/fs/pipe-max-size or the user's pipe budget
        log.debug("stdout pipe keeps its size (%s)", exc)


class StdoutWriter:
    """The only writer of stdout. Queues lines; `has_room` turns false past the bound."""

    def __init__(
        self,
        fd: int,
        loop: asyncio.AbstractEventLoop,
        max_pending_bytes: int,
        on_broken: Callable[[], None] | None = None,
        end: bytes = b"\n",
    ) -> None:
        """`on_broken` is called on the loop when stdout turns out closed (by default the
        daemon logs it and goes on storing); `end` follows every line (tail writes text
        that ends its own lines, or not yet: streamed deltas)."""
        self._end = end
        self._fd = fd
        self._loop = loop
        self._max_pending = max_pending_bytes
        self._pending = 0  # bytes queued and not yet written; touched on the loop only
        self._pending_lines = 0
        self._bytes_out = 0  # written so far, counted by the writing thread as it goes
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._lines: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()  # without newlines
        self._broken = False
        self._on_broken = on_broken
        self.on_written: Callable[[], None] | None = None  # told on the loop after each write
        self._thread = threading.Thread(target=self._run, name="stdout", daemon=True)
        enlarge_pipe(fd)

    def start(self) -> None:
        self._thread.start()

    def write_line(self, line: bytes | list[bytes]) -> None:
        """Queue a line (its pieces are written in order, never joined)."""
        pieces = [line] if isinstance(line, bytes) else line
        self._pending += sum(map(len, pieces)) + len(self._end)
        self._pending_lines += 1
        self._idle.clear()
        if self._pending > self._max_pending:
            self._room.clear()
        self._lines.put(pieces)

    @property
    def has_room(self) -> bool:
        return self._room.is_set()

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet written."""
        return self._pending

    async def wait_for_room(self) -> None:
        await self._room.wait()

    @property
    def undelivered(self) -> tuple[int, int]:
        """(lines, bytes) queued and not yet written whole."""
        return self._pending_lines, self._pending

    async def drain(self, stall_s: float) -> bool:
        """Wait until everything queued is written, for as long as the reader keeps taking
        it: False once stdout took nothing at all for `stall_s`."""
        while not self._idle.is_set():
            before = self._bytes_out
            try:
                await asyncio.wait_for(self._idle.wait(), stall_s)
            except TimeoutError:
                if self._bytes_out == before:
                    return False
        return True

    def close(self) -> None:
        self._lines.put(None)

    def _written(self, size: int, lines: int) -> None:
        self._pending -= size
        self._pending_lines -= lines
        if self._pending <= self._max_pending:
            self._room.set()
        if self._pending == 0:
            self._idle.set()
        if self.on_written is not None:
            self.on_written()

    def _run(self) -> None:
        while True:
            first = self._lines.get()
            if first is None:
                return
            buffers = [*first, self._end]
            size = sum(map(len, first)) + len(self._end)
            lines = 1
            while size < READ_CHUNK and len(buffers) < _MAX_BUFFERS:  # coalesce queued lines
                try:
                    more = self._lines.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._lines.put(None)
                    break
                buffers += (*more, self._end)
                size += sum(map(len, more)) + len(self._end)
                lines += 1
            self._write_all(buffers)
            try:
                self._loop.call_soon_threadsafe(self._written, size, lines)
            except RuntimeError:
                return

    def _write_all(self, buffers: list[bytes]) -> None:
        """writev at most _MAX_BUFFERS and about WRITE_SLICE bytes at a time (so progress
        shows while a reader takes a long line slowly), without copying lines together;
        partial writes resume."""
        if self._broken:
            return
        views = [memoryview(buffer) for buffer in buffers]
        first = 0  # views before it are written
        try:
            while first < len(views):
                written = os.writev(self._fd, _slice(views, first))
                self._bytes_out += written
                while first < len(views) and written >= len(views[first]):
                    written -= len(views[first])
                    first += 1
                if written:
                    views[first] = views[first][written:]
        except OSError as exc:
            self._broken = True
            if self._on_broken is None:
                log.warning("stdout is closed (%s); responses are dropped, events are still stored", exc)
            else:
                with contextlib.suppress(RuntimeError):  # the loop is closed: exiting anyway
                    self._loop.call_soon_threadsafe(self._on_broken)


def _slice(views: list[memoryview], first: int) -> list[memoryview]:
    """The views from `first` that one writev takes: at most _MAX_BUFFERS of them and
    about WRITE_SLICE bytes (a longer first view is cut; the partial write resumes)."""
    chosen: list[memoryview] = []
    size = 0
    for view in views[first : first + _MAX_BUFFERS]:
        if chosen and size + len(view) > WRITE_SLICE:
            break
        chosen.append(view[: WRITE_SLICE - size] if size + len(view) > WRITE_SLICE else view)
        size += len(chosen[-1])
    return chosen
