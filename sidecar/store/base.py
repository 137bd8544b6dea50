"""The store interface every backend implements, and the records that cross it.

Backends receive validated events with their payload text already built; they never
parse JSON-RPC and never see the wire.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import msgspec


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


class StoreFailure(Exception):
    """The store cannot take or serve data now (disk full, read-only, locked, ...)."""


def method_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """Exact method names, or `prefix.*` for every method under `prefix.`."""
    exact = {p for p in patterns if not p.endswith(".*")}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith(".*"))
    return lambda method: method in exact or method.startswith(prefixes)


def select(events: Sequence[Event], query: SessionQuery) -> list[Event]:
    """Order (by timestamp, stable on arrival) and filter events held in arrival order."""
    ordered = sorted(events, key=lambda event: event.timestamp_ns)
    if query.after_ns is not None:
        after = query.after_ns
        ordered = [event for event in ordered if event.timestamp_ns > after]
    if query.methods:
        matches = method_matcher(query.methods)
        ordered = [event for event in ordered if matches(event.method)]
    if query.last is not None:
        ordered = ordered[-query.last :]
    return ordered


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

    @abstractmethod
    async def count_sessions(self) -> int: ...
