"""Per-session summaries for storage.list_sessions, folded event by event.

Every backend keeps one `Tally` per session and folds each batch into it as it is
stored, so listing sessions never reads their events. Only the few events that carry
summary fields (init, fork, stop, the first prompt) are decoded; the rest count by their
method and instant alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import msgspec

from sidecar.store.base import Event, ListQuery, SessionSummary

TITLE_CHARS = 120
DETAIL_METHODS = frozenset({"session.init", "session.stop", "session.fork", "user.prompt.submit"})


class _Fields(msgspec.Struct):
    """The summary fields any event may carry; absent ones stay None."""

    model: str | None = None
    provider: str | None = None
    parent_session_id: str | None = None
    success: bool | None = None
    usage: dict[str, Any] | None = None
    prompt: str | None = None


class _Notification(msgspec.Struct):
    params: _Fields


_decoder = msgspec.json.Decoder(_Notification)


class Tally(msgspec.Struct, kw_only=True):
    """The running summary of one session; also its stored form (sqlite keeps it as JSON)."""

    session_id: str
    event_count: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    model: str | None = None
    provider: str | None = None
    init_ns: int | None = None  # instant of the session.init the model came from
    parent_session_id: str | None = None
    state_ns: int | None = None  # instant of the latest init or stop
    stopped: bool = False
    success: bool | None = None
    usage: dict[str, int] = msgspec.field(default_factory=dict)
    title: str | None = None
    title_ns: int | None = None

    def add(self, event: Event) -> None:
        self.count(event)
        if event.method in DETAIL_METHODS:
            self.add_details(event)

    def count(self, event: Event) -> None:
        """Count the event and widen the session's first and last instants."""
        ns = event.timestamp_ns
        self.event_count += 1
        if self.first_ns is None or ns < self.first_ns:
            self.first_ns = ns
        if self.last_ns is None or ns >= self.last_ns:
            self.last_ns = ns

    def add_details(self, event: Event) -> None:
        """Fold what an init, stop, fork or prompt says (sqlite counts a batch apart and
        calls this only for the events that carry details, skipping later prompts)."""
        ns, method = event.timestamp_ns, event.method
        if method == "user.prompt.submit":
            if self.title_ns is None or ns < self.title_ns:
                prompt = _fields(event.payload).prompt
                if prompt is not None:
                    self.title, self.title_ns = _shorten(prompt), ns
        elif method == "session.init":
            fields = _fields(event.payload)
            if self.init_ns is None or ns >= self.init_ns:
                self.model, self.provider, self.init_ns = fields.model, fields.provider, ns
            self._state(ns, stopped=False, success=None)
        elif method == "session.stop":
            fields = _fields(event.payload)
            for key, value in (fields.usage or {}).items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self.usage[key] = self.usage.get(key, 0) + value
            self._state(ns, stopped=True, success=fields.success)
        elif method == "session.fork":
            self.parent_session_id = _fields(event.payload).parent_session_id

    def _state(self, ns: int, *, stopped: bool, success: bool | None) -> None:
        if self.state_ns is None or ns >= self.state_ns:
            self.state_ns, self.stopped, self.success = ns, stopped, success

    def summary(self) -> SessionSummary:
        return SessionSummary(
            session_id=self.session_id,
            event_count=self.event_count,
            first_timestamp=format_ns(self.first_ns),
            last_timestamp=format_ns(self.last_ns),
            model=self.model,
            provider=self.provider,
            parent_session_id=self.parent_session_id,
            status="stopped" if self.stopped else "active",
            success=self.success,
            usage=self.usage,
            title=self.title,
        )

    def matches(self, text: str) -> bool:
        """The list_sessions `query` filter: a case-insensitive substring of the id, model,
        provider, parent or title."""
        needle = text.casefold()
        fields = (self.session_id, self.model, self.provider, self.parent_session_id, self.title)
        return any(needle in field.casefold() for field in fields if field)


def tally_events(tallies: dict[str, Tally], events: Iterable[Event]) -> None:
    """Fold events into the tallies of their sessions, creating missing ones."""
    for event in events:
        tally = tallies.get(event.session_id)
        if tally is None:
            tally = tallies[event.session_id] = Tally(session_id=event.session_id)
        tally.add(event)


def newest_first(tallies: Iterable[Tally], query: ListQuery) -> list[SessionSummary]:
    """list_sessions over tallies held in memory (memory and jsonl backends)."""
    before, text = query.before_ns, query.text
    after = (before, query.before_id or "") if before is not None else None  # (last_ns, id) cursor
    chosen = [
        t
        for t in tallies
        if t.event_count
        and (after is None or (t.last_ns is not None and (t.last_ns, t.session_id) < after))
        and (not text or t.matches(text))
    ]
    chosen.sort(key=lambda t: (t.last_ns or 0, t.session_id), reverse=True)
    return [t.summary() for t in chosen[: query.limit]]


def format_ns(ns: int | None) -> str | None:
    """An instant in chrono's form: UTC, `Z`, nine fraction digits."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, 1_000_000_000)
    try:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return None
    return f"{text}.{fraction:09d}Z"


def _fields(payload: bytes) -> _Fields:
    try:
        return _decoder.decode(payload).params
    except (msgspec.DecodeError, RecursionError):  # validated on the way in; Rust rows may not be
        return _Fields()


def _shorten(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"
