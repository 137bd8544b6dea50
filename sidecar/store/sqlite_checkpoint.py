"""WAL checkpoints off the commit path: a connection and a thread of their own copy the WAL
back into the database while the writer goes on committing.

Knows the file and SQLite's checkpoint pragma; nothing of tables, events or the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("sidecar")

# A checkpoint starts once this much has been committed since the last one began (about
# SQLite's own 1000 pages): rare enough that a trickle of lone events costs no fsyncs.
CHECKPOINT_BYTES = 4 * 1024 * 1024
# The WAL starts over only at a write that finds it wholly copied back, which a checkpoint
# running beside a steady stream of commits never leaves it: past this many pages the
# writer lets one checkpoint finish first (a short wait: the background ones kept up).
WAL_LIMIT_PAGES = 16384  # 64 MiB of 4 KiB pages


class Checkpointer:
    """Passive checkpoints on a thread, asked for by the writer after its commits.

    The writer's connection keeps its automatic checkpoint only as a far backstop: that
    one runs inside COMMIT and stalls the writer for the copy and the fsyncs. Other
    processes' connections keep theirs.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._since = 0  # bytes committed since the last checkpoint was asked for
        self._wal_pages = 0  # the WAL's pages when the last checkpoint ended; 0 if all copied
        self._limit = WAL_LIMIT_PAGES  # raised while readers keep the WAL from starting over
        # None: a checkpoint nobody waits for; a future: one the writer waits for.
        self._requests: queue.SimpleQueue[asyncio.Future[None] | _Stop | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def committed(self, size: int) -> None:
        """The writer committed about `size` bytes: checkpoint in the background when due."""
        self._since += size
        if self._since >= CHECKPOINT_BYTES:
            self._since = 0
            self._request(None)

    async def before_write(self) -> None:
        """Before a write transaction: when the WAL has grown past its limit, wait for one
        checkpoint that starts now, with no write in progress, so this write restarts it."""
        if self._wal_pages < self._limit:
            return
        await self.checkpoint()
        if self._wal_pages >= self._limit:  # a reader holds old pages: wait again only later
            self._limit = self._wal_pages + WAL_LIMIT_PAGES

    async def checkpoint(self) -> None:
        """A checkpoint that starts now; returns once it has ended."""
        done = asyncio.get_running_loop().create_future()
        self._since = 0
        self._request(done)
        await done

    async def close(self) -> None:
        """Stop the thread after the checkpoint in progress (the writer's close copies the rest)."""
        if self._thread is not None:
            thread, self._thread = self._thread, None
            self._requests.put(_STOP)
            await asyncio.to_thread(thread.join)

    def _request(self, done: asyncio.Future[None] | None) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)
            self._thread.start()
        self._requests.put(done)

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("cannot open %s for checkpoints: %s", self._path, exc)
            connection = None
        try:
            while not isinstance(request := self._requests.get(), _Stop):
                waiting = [request]
                while not self._requests.empty():  # asked again meanwhile: one pass serves all
                    more = self._requests.get()
                    if isinstance(more, _Stop):
                        self._requests.put(more)
                        break
                    waiting.append(more)
                if connection is not None:
                    # Only one the writer waits for runs with no write of ours in progress.
                    self._checkpoint(connection, quiet=any(done is not None for done in waiting))
                for done in waiting:
                    if done is not None:
                        self._settle(done)
        finally:
            if connection is not None:
                connection.close()

    def _checkpoint(self, connection: sqlite3.Connection, *, quiet: bool) -> None:
        """`quiet`: the writer waits for this one. Only then does "all copied" mean the next
        write starts the WAL over: a write in progress began its read of the WAL before the
        copy ended, and appends to it (a background checkpoint beside a steady stream of
        commits finds all copied every time, while the WAL grew to gigabytes)."""
        try:
            busy, pages, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.debug("checkpoint of %s failed: %s", self._path, exc)
            return
        if quiet and not busy and pages == copied:
            self._wal_pages, self._limit = 0, WAL_LIMIT_PAGES
        else:
            self._wal_pages = max(pages, 0)

    def _settle(self, done: asyncio.Future[None]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(_set_done, done)


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class _Stop:
    """Ends the thread."""


_STOP = _Stop()
