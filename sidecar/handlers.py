"""What each `storage.*` method does, in domain words, with its params Struct.

Handlers raise RpcError subclasses or StoreFailure; turning those into responses is the
dispatcher's job. Every handler that reads first drains the ingest queue, so a request
sees every message received before it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from sidecar import __version__
from sidecar.events import EVENT_METHODS, PROTOCOL_VERSIONS
from sidecar.ingest import Ingest
from sidecar.protocol import InvalidParams
from sidecar.store.base import SessionQuery, StoreFailure
from sidecar.timestamps import TimestampError, parse_instant

METHOD_PATTERN = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*(\.\*)?$"


class EncodedArray(list[bytes]):
    """A result that is an array of items already encoded as JSON (stored events)."""


class NoParams(Struct, forbid_unknown_fields=True):
    pass


class GetSessionParams(Struct, forbid_unknown_fields=True):
    session_id: str
    after: str | None = None
    methods: list[Annotated[str, Meta(pattern=METHOD_PATTERN)]] | None = None
    last: Annotated[int, Meta(ge=1)] | None = None


class Stats(msgspec.Struct):
    """Counters of this daemon run; the dispatcher and ingest keep them current."""

    started: float = msgspec.field(default_factory=time.monotonic)
    received: int = 0
    rejected: int = 0
    errors: int = 0


Handler = Callable[[Any], Awaitable[Any]]


class Method(msgspec.Struct, frozen=True):
    params: type[Struct]
    run: Handler
    # A method with exactly one required parameter also takes it as a one-element array.
    positional: str | None = None


class Handlers:
    def __init__(
        self,
        ingest: Ingest,
        stats: Stats,
        request_shutdown: Callable[[], None],
    ) -> None:
        self.ingest = ingest
        self.store = ingest.store
        self.stats = stats
        self._request_shutdown = request_shutdown
        self.methods: dict[str, Method] = {
            "storage.get_session": Method(GetSessionParams, self.get_session, "session_id"),
            "storage.flush": Method(NoParams, self.flush),
            "storage.info": Method(NoParams, self.info),
            "storage.stats": Method(NoParams, self.stats_),
            "storage.shutdown": Method(NoParams, self.shutdown),
        }

    async def get_session(self, params: GetSessionParams) -> EncodedArray:
        query = SessionQuery(
            after_ns=_instant("after", params.after),
            methods=tuple(params.methods or ()),
            last=params.last,
        )
        await self.ingest.drain()
        payloads = await self.store.read_session(params.session_id, query)
        return EncodedArray(payloads)

    async def flush(self, _: NoParams) -> dict[str, int]:
        return {"seq": await self.ingest.drain()}

    async def info(self, _: NoParams) -> dict[str, Any]:
        return {
            "name": "microagents-sidecar",
            "version": __version__,
            "protocol_versions": list(PROTOCOL_VERSIONS),
            "backend": self.store.backend,
            "location": self.store.location,
            "methods": sorted(EVENT_METHODS | self.methods.keys()),
        }

    async def stats_(self, _: NoParams) -> dict[str, Any]:
        with contextlib.suppress(StoreFailure):  # while the store fails, report the queue
            await self.ingest.drain()
        return {
            "received": self.stats.received,
            "persisted": self.ingest.persisted,
            "rejected": self.stats.rejected,
            "errors": self.stats.errors,
            "sessions": await self.store.count_sessions(),
            "queue_depth": self.ingest.queue_depth,
            "commits": self.ingest.commits,
            "uptime_s": round(time.monotonic() - self.stats.started, 3),
        }

    async def shutdown(self, _: NoParams) -> None:
        await self.ingest.drain()
        self._request_shutdown()


def _instant(field: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except TimestampError as exc:
        raise InvalidParams(str(exc), field=field) from None
