"""Lifecycle of the daemon: open the store, read lines until the end, shut down in order.

End of stdin, SIGTERM, SIGINT and `storage.shutdown` all end the same way: stop reading,
commit everything received, answer what is owed, close the store, exit 0 — or exit 1
naming the events the store could not take.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any, Protocol

from sidecar.config import Settings
from sidecar.core import compose
from sidecar.dispatch import Reply
from sidecar.framing import LineSplitter
from sidecar.stdio import StdinReader, StdoutWriter
from sidecar.store import Store, StoreFailure, open_store

log = logging.getLogger("sidecar")

EXIT_OK = 0
EXIT_UNSTORED = 1
EXIT_STORE_FAILED = 3


class _Bounded(Protocol):
    @property
    def has_room(self) -> bool: ...

    async def wait_for_room(self) -> None: ...


class Server:
    def __init__(self, settings: Settings, store: Store, stdin_fd: int, stdout_fd: int) -> None:
        loop = asyncio.get_running_loop()
        self.settings = settings
        self.store = store
        self.reader = StdinReader(stdin_fd, loop)
        self.writer = StdoutWriter(stdout_fd, loop, settings.max_output_bytes)
        # storage.subscribe: notifications on stdout, between the responses
        core = compose(store, settings, output=self.writer, request_shutdown=self.request_shutdown)
        assert core.hub is not None
        self.ingest, self.hub, self.dispatcher = core.ingest, core.hub, core.dispatcher
        self.writer.on_written = self.hub.output_written
        self.dispatcher.wait_for_output = self._wait_for_output
        self._stopping = False  # storage.shutdown: stop after the current message
        self._interrupted = asyncio.Event()  # a signal: finish what was read, then stop
        self._replies: set[asyncio.Future[bytes | None]] = set()

    def request_shutdown(self) -> None:
        """storage.shutdown: stop reading after the current message."""
        self._stopping = True

    def _on_signal(self) -> None:
        """SIGTERM, SIGINT: handle what was already read, then stop as at end of input."""
        self._interrupted.set()
        self.reader.interrupt()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal)
        self.ingest.start()
        self.writer.start()
        self.reader.start()
        failed = False
        try:
            await self._read_loop()
        except Exception:  # a bug, or MemoryError: still shut down in order, never hang
            log.critical("reading stopped on an internal error; storing what was received", exc_info=True)
            failed = True
        finally:
            # A second Ctrl-C may still abort a long shutdown (exit 130); a SIGTERM stays
            # handled, or the default action would kill the daemon with events queued.
            loop.remove_signal_handler(signal.SIGINT)
        try:
            code = await self._shutdown()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
        return max(code, EXIT_UNSTORED) if failed else code

    async def _read_loop(self) -> None:
        splitter = LineSplitter(self.settings.max_line_bytes)
        while True:
            chunk = await self.reader.read()
            lines = splitter.feed(chunk) if chunk else splitter.finish()
            for reply in self.dispatcher.replies(lines):
                await self._answer(reply)
                if self._stopping:
                    return
            if not chunk:
                return
            if not self._interrupted.is_set():
                # After a signal, what was read is handled without waiting for room: the
                # reader takes nothing more, so it is at most a few chunks.
                await self._wait_for_room()
            await asyncio.sleep(0)  # let the committer start its transaction

    async def _wait_for_room(self) -> None:
        """Backpressure: read on only once the store and stdout have room, or a signal
        came (the blocked side may not drain soon)."""
        sides: tuple[_Bounded, ...] = (self.ingest, self.writer)
        for side in sides:
            if side.has_room:
                continue
            await self._first_of(side.wait_for_room(), self._interrupted.wait())
            if self._interrupted.is_set():
                return

    @staticmethod
    async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
        tasks = [asyncio.ensure_future(wait) for wait in waits]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()

    async def _wait_for_output(self) -> None:
        """Before a storage request runs: its answer waits for stdout to have room, so
        requests read ahead of a reader that does not read are never all built (a signal
        ends the wait: what was read is then handled before stopping)."""
        if not self.writer.has_room and not self._interrupted.is_set():
            await self._first_of(self.writer.wait_for_room(), self._interrupted.wait())

    async def _answer(self, reply: Reply) -> None:
        if isinstance(reply, asyncio.Future):  # written once its event is committed
            self._replies.add(reply)
            reply.add_done_callback(self._deliver_later)
            return
        if not isinstance(reply, bytes | list | None):
            reply = await reply  # a storage request: in order, before the next line
        if reply is not None:
            self.writer.write_line(reply)

    def _deliver_later(self, reply: asyncio.Future[bytes | None]) -> None:
        self._replies.discard(reply)
        line = reply.result()
        if line is not None:
            self.writer.write_line(line)

    async def _shutdown(self) -> int:
        try:
            unstored = await self.ingest.close(self.settings.shutdown_grace_s)
            await self.hub.close()  # subscriptions end with the input; the store closes after
            if self._replies:  # answers to acknowledged events, settled by the last commit
                await asyncio.wait(self._replies, timeout=1.0)
            # Answers go out for as long as the reader takes them, however slowly; only a
            # reader that took nothing for the stall time is given up on.
            delivered = await self.writer.drain(self.settings.output_stall_s)
            if not delivered:
                lines, size = self.writer.undelivered
                log.error(
                    "stdout took nothing for %g s: %d answers and notifications (%d bytes) not delivered",
                    self.settings.output_stall_s,
                    lines,
                    size,
                )
            self.writer.close()
        finally:  # the store's thread is not a daemon thread: left open, the process hangs
            await self.store.close()
        if unstored:
            sessions = sorted({event.session_id for event in unstored})
            log.error(
                "exiting with %d events not stored (%s) in %d sessions: %s",
                len(unstored),
                self.ingest.failure or "store unavailable",
                len(sessions),
                ", ".join(sessions[:20]) + (" ..." if len(sessions) > 20 else ""),
            )
            return EXIT_UNSTORED
        return EXIT_OK if delivered else EXIT_UNSTORED


# The store's thread releases the GIL inside SQLite and must take it back after each
# statement while the event loop parses; at the default 5 ms switch interval it idles
# behind the parser. 0.2 ms measured ~13% more events/s end to end (bench/ingest.py).
GIL_SWITCH_INTERVAL_S = 0.0002


async def serve(settings: Settings, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    store = open_store(settings)
    try:
        await store.open()
    except StoreFailure as exc:
        log.error("%s", exc)
        await store.close()
        return EXIT_STORE_FAILED
    server = Server(settings, store, stdin_fd, stdout_fd)
    return await server.run()
