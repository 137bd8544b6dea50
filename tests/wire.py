"""The core composed in-process, fed lines as the daemon's read loop feeds them: what the
daemon would write out for each line, and what the store then holds. No pipes, no process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from backends import query
from events import error_of, result_of, rpc

from sidecar import protocol
from sidecar.config import Settings
from sidecar.core import Core, compose
from sidecar.dispatch import Reply
from sidecar.framing import LineSplitter
from sidecar.store.base import Store
from sidecar.store.memory import MemoryStore
from sidecar.store.sqlite import SqliteStore

WAIT_S = 10.0


async def resolve(reply: Reply) -> bytes | None:
    """The line the daemon writes for `reply` (server.py `_answer`), waited for at most WAIT_S."""
    if not isinstance(reply, bytes | list | None):
        async with asyncio.timeout(WAIT_S):
            reply = await reply
    return None if reply is None else protocol.joined(reply)


def encode(message: Any) -> bytes:
    """A message as one compact line without its newline; bytes are sent as they are."""
    if isinstance(message, bytes):
        return message
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


class Lines:
    """Where subscriptions write, standing in for stdout."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write_line(self, line: bytes) -> None:
        self.lines.append(line)

    @property
    def pending_bytes(self) -> int:
        return 0


class Wire:
    """A composed core, fed lines as the daemon's read loop feeds them."""

    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.store = core.store
        self.handlers = core.handlers
        self.settings = settings

    def handle(self, message: Any) -> Reply:
        return self.core.dispatcher.handle_line(encode(message))

    async def answer(self, message: Any) -> Any:
        """The decoded answer to one line; fails if there is none."""
        reply = await resolve(self.handle(message))
        assert reply is not None, f"no answer to {message!r}"
        return json.loads(reply)

    async def send(self, *messages: Any) -> None:
        """Send each message (events as notifications, say); none may be answered."""
        for message in messages:
            reply = await resolve(self.handle(message))
            assert reply is None, reply

    async def feed(self, data: bytes) -> list[Any]:
        """The answers to `data`, split into lines as the daemon splits stdin, in order."""
        splitter = LineSplitter(self.settings.max_line_bytes)
        answers = []
        for piece in [*splitter.feed(data), *splitter.finish()]:
            reply = await resolve(self.core.dispatcher.handle_line(piece))
            if reply is not None:
                answers.append(json.loads(reply))
        return answers

    async def request(self, method: str, params: Any = None, request_id: Any = "r") -> Any:
        """The whole decoded response to one request."""
        return await self.answer(rpc(method, params, request_id))

    async def result(self, method: str, params: Any = None) -> Any:
        return result_of(await self.request(method, params), "r")

    async def invalid_field(self, method: str, params: Any) -> str:
        """The field a -32602 answer to `method` names."""
        error = error_of(await self.request(method, params, "bad"), -32602, "bad")
        assert isinstance(error["data"]["reason"], str) and error["data"]["reason"], error
        return str(error["data"]["field"])

    async def quarantine(self) -> list[tuple[bytes, str]]:
        """(line, reason) of every quarantined line, read back from the store itself."""
        async with asyncio.timeout(WAIT_S):
            await self.core.ingest.drain()
        if isinstance(self.store, MemoryStore):
            return [(kept.line, kept.reason) for kept in self.store.quarantine]
        assert isinstance(self.store, SqliteStore)
        rows = query(Path(self.store.location), "SELECT line, reason FROM quarantine ORDER BY id")
        return [(bytes(kept), reason.decode()) for kept, reason in rows]

    async def stored(self) -> list[bytes]:
        """The payload of every committed event, in seq order."""
        async with asyncio.timeout(WAIT_S):
            await self.core.ingest.drain()
            page = await self.store.events_after(0, 1_000_000)
        return [event.payload for _, event in page.events]


@asynccontextmanager
async def running(
    store: Store,
    *,
    settings: Settings | None = None,
    output: bool = True,
    request_shutdown: Callable[[], None] = lambda: None,
) -> AsyncIterator[Wire]:
    """The core over `store`, opened and started; on leaving, every event must have been stored."""
    settings = settings or Settings(backend=store.backend)
    await store.open()
    core = compose(store, settings, output=Lines() if output else None, request_shutdown=request_shutdown)
    core.ingest.start()
    try:
        yield Wire(core, settings)
    finally:
        try:
            assert await core.ingest.close(WAIT_S) == [], "events left unstored"
            if core.hub is not None:
                await core.hub.close()
        finally:
            await store.close()
