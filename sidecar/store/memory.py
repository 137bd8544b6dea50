"""The memory backend: ephemeral, for tests and runs that need no record, same answers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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
    select,
)
from sidecar.store.search import scan
from sidecar.store.summary import Tally, newest_first, tally_events


class MemoryStore(Store):
    backend = "memory"
    location = ":memory:"

    def __init__(self) -> None:
        self._sessions: dict[str, list[tuple[Event, int]]] = {}  # (event, seq), arrival order
        self._tallies: dict[str, Tally] = {}
        self.quarantine: list[Rejected] = []
        self._by_seq: list[Event | None] = []  # index seq - 1; None once deleted
        self._last_seq = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        first = self._last_seq + 1
        for seq, event in enumerate(events, first):
            self._sessions.setdefault(event.session_id, []).append((event, seq))
        self._by_seq.extend(events)
        tally_events(self._tallies, events)
        self.quarantine.extend(rejected)
        self._last_seq += len(events)
        return range(first, self._last_seq + 1)

    async def read_session(self, session_id: str, query: SessionQuery) -> list[bytes]:
        return select([event for event, _ in self._sessions.get(session_id, ())], query)

    async def count_sessions(self) -> int:
        return len(self._sessions)

    async def list_sessions(self, query: ListQuery) -> list[SessionSummary]:
        return newest_first(self._tallies.values(), query)

    async def count_quarantined(self) -> int:
        return len(self.quarantine)

    async def delete_session(self, session_id: str) -> int:
        self._tallies.pop(session_id, None)
        events = self._sessions.pop(session_id, [])
        for _, seq in events:
            self._by_seq[seq - 1] = None
        return len(events)

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        return scan(self._events(query.session_id), query)

    async def last_seq(self) -> int:
        return self._last_seq

    async def change_token(self) -> object:
        return self._last_seq  # one process: its own commits wake followers directly

    async def events_after(self, after: int, limit: int, max_bytes: int | None = None) -> Page:
        events: list[tuple[int, Event]] = []
        size, upto = 0, after
        for seq, event in enumerate(self._by_seq[after : after + limit], after + 1):
            upto = seq
            if event is not None:
                events.append((seq, event))
                size += len(event.payload)
                if max_bytes is not None and size >= max_bytes:
                    break
        return Page(events, upto, upto < self._last_seq)

    def _events(self, session_id: str | None) -> Iterator[tuple[Event, int]]:
        sessions = [self._sessions.get(session_id, [])] if session_id is not None else self._sessions.values()
        for events in sessions:
            yield from events
