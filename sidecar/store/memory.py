"""The memory backend: ephemeral, for tests and runs that need no record, same answers."""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.store.base import Event, Rejected, SessionQuery, Store, select


class MemoryStore(Store):
    backend = "memory"
    location = ":memory:"

    def __init__(self) -> None:
        self._sessions: dict[str, list[Event]] = {}  # each in arrival order
        self.quarantine: list[Rejected] = []
        self._last_seq = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def write(self, events: Sequence[Event], rejected: Sequence[Rejected]) -> Sequence[int]:
        for event in events:
            self._sessions.setdefault(event.session_id, []).append(event)
        self.quarantine.extend(rejected)
        first = self._last_seq + 1
        self._last_seq += len(events)
        return range(first, self._last_seq + 1)

    async def read_session(self, session_id: str, query: SessionQuery) -> list[bytes]:
        return select(self._sessions.get(session_id, ()), query)

    async def count_sessions(self) -> int:
        return len(self._sessions)
