"""What each `storage.*` method does, in domain words, with its params Struct.

Handlers raise RpcError subclasses or StoreFailure; turning those into responses is the
dispatcher's job. Every handler that reads first drains the ingest queue, so a request
sees every message received before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from sidecar import __version__, protocol
from sidecar.events import EVENT_METHODS, PROTOCOL_VERSIONS, SessionId, stored_keys
from sidecar.ingest import Ingest
from sidecar.protocol import InvalidParams, SessionNotFound, StorageUnavailable
from sidecar.store.base import (
    Event,
    ListQuery,
    SearchHit,
    SearchQuery,
    SeqUnavailable,
    SessionQuery,
    SessionSummary,
    StoreFailure,
)
from sidecar.store.search import query_terms
from sidecar.store.summary import format_ns
from sidecar.subscriptions import Hub
from sidecar.timestamps import MAX_NS, MIN_NS, TimestampError, now_rfc3339, parse_instant, parse_ns

log = logging.getLogger("sidecar")

# \Z, not $: $ would also match before a final newline ("user.*\n").
METHOD_PATTERN = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*(\.\*)?\Z"
# Bounds on client input, the same on every backend (beyond them: -32602 naming the field).
MAX_INT = 2**63 - 1  # what every store can hold and compare (SQLite, PostgreSQL bigint)
MAX_METHODS = 256  # method filters in one request
MAX_QUERY_CHARS = 4096
MAX_QUERY_WORDS = 64  # a search's cost grows with its words
Methods = Annotated[
    list[Annotated[str, Meta(pattern=METHOD_PATTERN, max_length=200)]], Meta(max_length=MAX_METHODS)
]


class EncodedElements:
    """A result that is a JSON array of elements already encoded (stored events), in
    pieces that joined by commas are its inside: written between brackets as they are,
    never re-encoded nor joined (a session read is megabytes)."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks


class NoParams(Struct, forbid_unknown_fields=True):
    pass


class GetSessionParams(Struct, forbid_unknown_fields=True):
    session_id: str
    after: str | None = None
    methods: Methods | None = None
    last: Annotated[int, Meta(ge=1)] | None = None


class ListSessionsParams(Struct, forbid_unknown_fields=True):
    limit: Annotated[int, Meta(ge=1, le=MAX_INT)] = 100
    before: str | None = None
    before_id: str | None = None  # with before: the next page after the row (before, before_id)
    query: str | None = None


class SessionParams(Struct, forbid_unknown_fields=True):
    session_id: SessionId


class ForkParams(Struct, forbid_unknown_fields=True):
    session_id: SessionId
    new_session_id: SessionId | None = None


class SearchParams(Struct, forbid_unknown_fields=True):
    query: Annotated[str, Meta(max_length=MAX_QUERY_CHARS)]
    session_id: str | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 20


class SubscribeParams(Struct, forbid_unknown_fields=True):
    session_id: str | None = None  # None: every session
    methods: Methods | None = None
    # The last seq already seen: events after it are sent. "now": the latest committed.
    from_: Annotated[int, Meta(ge=0, le=MAX_INT)] | Literal["now"] = msgspec.field(default="now", name="from")


class UnsubscribeParams(Struct, forbid_unknown_fields=True):
    subscription: int


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
        hub: Hub | None = None,
    ) -> None:
        """Without a `hub` (the one-shot commands) there are no subscription methods."""
        self.ingest = ingest
        self.store = ingest.store
        self.stats = stats
        self._request_shutdown = request_shutdown
        self.shutting_down = False  # storage.shutdown was answered: nothing more is read
        self.methods: dict[str, Method] = {
            "storage.get_session": Method(GetSessionParams, self.get_session, "session_id"),
            "storage.list_sessions": Method(ListSessionsParams, self.list_sessions),
            "storage.delete_session": Method(SessionParams, self.delete_session, "session_id"),
            "storage.fork_session": Method(ForkParams, self.fork_session, "session_id"),
            "storage.search": Method(SearchParams, self.search, "query"),
            "storage.flush": Method(NoParams, self.flush),
            "storage.info": Method(NoParams, self.info),
            "storage.stats": Method(NoParams, self.stats_),
            "storage.shutdown": Method(NoParams, self.shutdown),
        }
        self.hub = hub
        if hub is not None:
            self.methods["storage.subscribe"] = Method(SubscribeParams, self.subscribe)
            self.methods["storage.unsubscribe"] = Method(UnsubscribeParams, self.unsubscribe, "subscription")

    async def get_session(self, params: GetSessionParams) -> EncodedElements:
        query = await self._session_query(params)
        return EncodedElements(await self.store.read_session_chunks(params.session_id, query))

    async def session_events(self, params: GetSessionParams) -> list[bytes]:
        """What get_session answers, as one stored event per item (for the commands)."""
        query = await self._session_query(params)
        return await self.store.read_session(params.session_id, query)

    async def _session_query(self, params: GetSessionParams) -> SessionQuery:
        """The query, once everything received before it is committed."""
        query = SessionQuery(
            after_ns=_instant("after", params.after),
            methods=tuple(params.methods or ()),
            last=params.last,
        )
        await self.ingest.drain()
        return query

    async def list_sessions(self, params: ListSessionsParams) -> list[SessionSummary]:
        if params.before_id is not None and params.before is None:
            raise InvalidParams("before_id needs before", field="before_id")
        query = ListQuery(
            limit=params.limit,
            before_ns=_instant("before", params.before),
            before_id=params.before_id,
            text=params.query,
        )
        await self.ingest.drain()
        return [await self._own_instants(summary) for summary in await self.store.list_sessions(query)]

    async def _own_instants(self, summary: SessionSummary) -> SessionSummary:
        """A session whose first or last instant lies outside what the store's int64 keys
        hold shows that event's own timestamp, not the bound it was clamped to (rare: the
        session is read whole, in exact order, for it)."""
        if summary.first_timestamp not in _CLAMPED and summary.last_timestamp not in _CLAMPED:
            return summary
        payloads = await self.store.read_session(summary.session_id, SessionQuery())
        if not payloads:
            return summary
        if summary.first_timestamp in _CLAMPED:
            summary.first_timestamp = _timestamp_of(payloads[0]) or summary.first_timestamp
        if summary.last_timestamp in _CLAMPED:
            summary.last_timestamp = _timestamp_of(payloads[-1]) or summary.last_timestamp
        return summary

    async def delete_session(self, params: SessionParams) -> dict[str, int]:
        await self.ingest.drain()  # what is queued for it goes too
        return {"deleted": await self.store.delete_session(params.session_id)}

    async def fork_session(self, params: ForkParams) -> dict[str, Any]:
        """The microagents CLI's fork: every parent event but `session.fork`, with the new
        id and their own timestamps, then a `session.fork` event stamped now."""
        await self.ingest.drain()
        parent = await self.store.read_session(params.session_id, SessionQuery())
        if not parent:
            raise SessionNotFound(f"no events in session {params.session_id!r}", session_id=params.session_id)
        import uuid  # here, not at start-up: forks are rare

        new_id = params.new_session_id or str(uuid.uuid4())
        if await self.store.read_session(new_id, SessionQuery(last=1)):
            raise InvalidParams(f"session {new_id!r} already has events", field="new_session_id")
        # Rewritten in a thread: a session of 100,000 events takes about a second, which the
        # event loop (reading stdin, answering) must not wait for.
        copied = await asyncio.to_thread(_copies, parent, new_id)
        for event in copied:
            self.ingest.add(event)
        stamp = now_rfc3339()
        fork = {"session_id": new_id, "parent_session_id": params.session_id, "timestamp": stamp}
        payload = msgspec.json.encode({"jsonrpc": "2.0", "method": "session.fork", "params": fork})
        self.ingest.add(Event(new_id, payload, parse_ns(stamp), "session.fork"))
        try:
            await self.ingest.drain()
        except StoreFailure as exc:  # queued like any event: it will be stored, do not retry
            raise StorageUnavailable(
                str(exc), retained=True, session_id=new_id, note="the fork is kept and retried"
            ) from None
        return {"session_id": new_id, "copied": len(copied)}

    async def search(self, params: SearchParams) -> list[SearchHit]:
        terms = query_terms(params.query)
        if not terms:
            raise InvalidParams("the query has no words to search for", field="query")
        if len(terms) > MAX_QUERY_WORDS:
            raise InvalidParams(f"the query has {len(terms)} words; at most {MAX_QUERY_WORDS}", field="query")
        await self.ingest.drain()
        return await self.store.search(SearchQuery(terms, params.session_id, params.limit))

    async def subscribe(self, params: SubscribeParams) -> dict[str, int]:
        """Committed events, by any process, as storage.event notifications after the
        response; "now" means after everything received before this request."""
        assert self.hub is not None
        await self.ingest.drain()
        try:
            sub_id = await self.hub.subscribe(
                None if params.from_ == "now" else params.from_,
                session_id=params.session_id,
                methods=params.methods or (),
                render=lambda sub, seq, event: protocol.event_notification(sub, seq, event.payload),
                lagged=protocol.lagged_notification,
            )
        except SeqUnavailable as exc:
            raise InvalidParams(str(exc), field="from") from None
        return {"subscription": sub_id}

    async def unsubscribe(self, params: UnsubscribeParams) -> dict[str, bool]:
        assert self.hub is not None
        if not self.hub.unsubscribe(params.subscription):
            raise InvalidParams(f"no subscription {params.subscription}", field="subscription")
        return {"unsubscribed": True}

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
        """Answered null once what came before is committed, or at once while the store
        fails: the daemon then stops, retrying for the shutdown timeout, and exits 1 if
        events remain unstored (they are named on stderr)."""
        with contextlib.suppress(StoreFailure):
            await self.ingest.drain()
        self.shutting_down = True
        self._request_shutdown()


# How the stores' clamped keys read back (1677 and 2262): never an event's own instant.
_CLAMPED = frozenset({format_ns(MIN_NS), format_ns(MAX_NS)})


def _timestamp_of(payload: bytes) -> str | None:
    try:
        timestamp = msgspec.json.decode(payload).get("params", {}).get("timestamp")
    except (msgspec.DecodeError, AttributeError):
        return None
    return timestamp if isinstance(timestamp, str) else None


def _copies(payloads: list[bytes], session_id: str) -> list[Event]:
    return [copy for copy in (_with_session_id(payload, session_id) for payload in payloads) if copy]


def _with_session_id(payload: bytes, session_id: str) -> Event | None:
    """A copy of a stored event for another session (None for a `session.fork` event)."""
    keys = stored_keys(payload)
    if keys is None or keys.method == "session.fork":
        return None
    try:
        message = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:  # stored before such events were refused: not copied
        log.warning(
            "an event of session %r cannot be read (%s); not copied to the fork", keys.session_id, exc
        )
        return None
    message["params"]["session_id"] = session_id
    return Event(session_id, msgspec.json.encode(message), keys.timestamp_ns, keys.method)


def _instant(field: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except TimestampError as exc:
        raise InvalidParams(str(exc), field=field) from None
