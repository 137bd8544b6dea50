"""The store interface every backend implements, and the records that cross it.

Backends receive validated events with their payload text already built; they never
parse JSON-RPC and never see the wire.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Sequence
from operator import itemgetter

import msgspec

from sidecar.events import stored_instant
from sidecar.timestamps import MAX_NS, MIN_NS


class Event(msgspec.Struct, gc=False):
    """One accepted event: the compact notification text and what orders and finds it.

    Field order is the SQLite backend's column order (it inserts `astuple(event)`).
    """

    session_id: str
    payload: bytes  # UTF-8, validated on the way in
    timestamp_ns: int
    method: str


class Rejected(msgspec.Struct, gc=False):
    """Input that could not be accepted, kept with the reason (the quarantine)."""

    line: bytes
    reason: str
    received_ms: int


class SessionQuery(msgspec.Struct, frozen=True):
    """Filters of storage.get_session, applied in this order: after, methods, then last."""

    after_ns: int | None = None
    methods: tuple[str, ...] = ()
    last: int | None = None


class ListQuery(msgspec.Struct, frozen=True):
    """Filters of storage.list_sessions: newest activity first."""

    limit: int | None = None
    before_ns: int | None = None  # only sessions whose last event is earlier
    # With before_ns: also those whose last event is at before_ns and whose id sorts below
    # this one, so a list continues after its last row even when several share its instant.
    before_id: str | None = None
    text: str | None = None  # a case-insensitive substring of id, model, provider, parent, title


class SessionSummary(msgspec.Struct):
    """One session as storage.list_sessions describes it."""

    session_id: str
    event_count: int
    first_timestamp: str | None
    last_timestamp: str | None
    model: str | None
    provider: str | None
    parent_session_id: str | None
    status: str  # "active" until the latest of its session.init / session.stop is a stop
    success: bool | None
    usage: dict[str, int]
    title: str | None  # the first prompt, shortened


class SearchQuery(msgspec.Struct, frozen=True):
    terms: tuple[str, ...]  # every one must occur as a word (case-insensitive)
    session_id: str | None = None
    limit: int = 20


class SearchHit(msgspec.Struct):
    session_id: str
    seq: int | None  # None where the backend keeps no per-event seq (jsonl)
    method: str
    timestamp: str
    snippet: str  # matched words in [brackets]


class StoreFailure(Exception):
    """The store cannot take or serve data now (disk full, read-only, locked, ...)."""


class EventRefused(StoreFailure):
    """The store refused what it was given (a value it cannot hold), not for want of
    availability: retrying the same batch would fail the same way."""


class SeqUnavailable(StoreFailure):
    """A replay was asked from a seq the store no longer keeps a record of."""


class Page(msgspec.Struct, gc=False):
    """Committed events after a seq, in seq order (see Store.events_after)."""

    events: list[tuple[int, Event]]  # (seq, event); unreadable and deleted events are left out
    upto: int  # every event with seq <= upto was looked at: the next page starts after it
    more: bool  # the limit was reached: there may be more right away


UNSUPPORTED = "subscriptions are not supported by this backend"


def method_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """Exact method names, or `prefix.*` for every method under `prefix.`."""
    exact = {p for p in patterns if not p.endswith(".*")}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith(".*"))
    return lambda method: method in exact or method.startswith(prefixes)


def select(events: Sequence[Event], query: SessionQuery) -> list[bytes]:
    """The payloads `query` asks for, from events held in arrival order."""
    if query.methods:
        matches = method_matcher(query.methods)
        events = [event for event in events if matches(event.method)]
    return time_ordered([(event.timestamp_ns, event.payload) for event in events], query)


def time_ordered(rows: list[tuple[int, bytes]], query: SessionQuery) -> list[bytes]:
    """Payloads of (key, payload) rows held in arrival order, ordered by instant (stable,
    so ties keep arrival order), those after `query.after_ns`, then the `query.last`.

    Keys are instants clamped to int64; rows at the bounds are ordered by the exact
    instant read back from their payload. Rows already filtered on `key >= clamp(after)`
    are welcome: only rows whose exact instant is at most `after` are dropped here.
    """
    rows.sort(key=itemgetter(0))
    if rows and (rows[0][0] == MIN_NS or rows[-1][0] == MAX_NS):
        rows.sort(key=_exact_instant)
    start = 0 if query.after_ns is None else bisect_right(rows, query.after_ns, key=_exact_instant)
    if query.last is not None:
        start = max(start, len(rows) - query.last)
    return [row[1] for row in rows[start:]]


def _exact_instant(row: tuple[int, bytes]) -> int:
    key = row[0]
    if MIN_NS < key < MAX_NS:
        return key
    exact = stored_instant(row[1])
    return key if exact is None else exact


class Store(ABC):
    """A session store. One writer per process calls `write`; reads may come any time."""

    backend: str
    location: str

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the store; StoreFailure if that is impossible."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        """Commit a batch atomically; return each event's store-wide sequence number."""

    @abstractmethod
    async def read_session(self, session_id: str, query: SessionQuery) -> list[bytes]:
        """Payloads of a session's events, ordered and filtered; [] if unknown."""

    async def read_session_chunks(self, session_id: str, query: SessionQuery) -> list[bytes]:
        """The same payloads as `read_session` in pieces that, joined by commas, are the
        inside of the JSON array get_session answers: written one after another, never
        joined into one text (a backend may join several events to a piece)."""
        return await self.read_session(session_id, query)

    @abstractmethod
    async def count_sessions(self) -> int: ...

    @abstractmethod
    async def list_sessions(self, query: ListQuery) -> list[SessionSummary]:
        """Summaries, newest activity first, from per-session tallies (never every event)."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> int:
        """Remove a session's events, summary and search entries; how many events."""

    @abstractmethod
    async def search(self, query: SearchQuery) -> list[SearchHit]:
        """Events whose text holds every term, newest first."""

    @abstractmethod
    async def count_quarantined(self) -> int:
        """How many rejected lines the store keeps."""

    async def size_bytes(self) -> int | None:
        """Bytes the store takes on disk; None where it has no files of its own."""
        return None

    async def reclaim_space(self) -> int:
        """Give back the space of deleted sessions; how many bytes. A backend whose
        deletes free their space at once does nothing."""
        return 0

    # Following commits (storage.subscribe, the tail command). Not abstract: a backend
    # without them still serves everything else, and a subscribe gets -32001.

    async def last_seq(self) -> int:
        """The seq of the latest event committed by any process (0 if none): "now"."""
        raise StoreFailure(UNSUPPORTED)

    async def change_token(self) -> object:
        """A cheap value that differs after any process commits (compared, never read).

        Called every few tens of milliseconds, and only while someone follows the store;
        a backend may do its own periodic upkeep here.
        """
        raise StoreFailure(UNSUPPORTED)

    async def events_after(self, after: int, limit: int, max_bytes: int | None = None) -> Page:
        """Up to `limit` committed events with seq > `after`, by any process, in seq
        order, each seq once, and with `max_bytes` no more once their payloads reach it
        (at least one); SeqUnavailable if the store no longer knows what followed `after`."""
        raise StoreFailure(UNSUPPORTED)
