"""Pages for the MCP front-end: opaque cursors, sessions newest first by keyset, and a
transcript cut into pages of bounded text where turns begin. Pure: no store, no SDK.

A page never drops anything: what does not fit is where the next page starts, and an
event whose own text outgrows a page is continued by character offset.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from sidecar.store.base import SessionSummary
from sidecar.timestamps import TimestampError, parse_ns

PROMPT_METHOD = "user.prompt.submit"  # each begins a turn: the cut a page prefers
# Stored bytes read per page at most, as a multiple of its text budget: rendering folds
# deltas and clips tool output, so text is mostly far shorter than the JSON it came from.
RAW_PER_CHAR = 8

T = TypeVar("T")


class BadCursor(ValueError):
    """A cursor this server did not give (or one for another listing)."""


class SessionsCursor(
    msgspec.Struct, frozen=True, tag="sessions", forbid_unknown_fields=True, omit_defaults=True
):
    """Where a listing of sessions goes on, and the filters it was asked with."""

    last_ns: int | None  # the last session shown: its last activity (None: it had none)...
    session_id: str  # ...and its id, which orders sessions active at the same instant
    query: str | None = None
    model: str | None = None
    status: str | None = None
    since_ns: int | None = None
    before_ns: int | None = None


class TranscriptCursor(
    msgspec.Struct, frozen=True, tag="transcript", forbid_unknown_fields=True, omit_defaults=True
):
    """Where a read of a session goes on, and what it was asked for."""

    session_id: str
    start: int  # the first event of the next page, counted from 0 in the filtered session
    offset: int = 0  # > 0: that event's text goes on at this character
    end: int | None = None  # events before this one only (None: to the end as it is then)
    methods: tuple[str, ...] = ()
    full: bool = False


Cursor = SessionsCursor | TranscriptCursor
_decoder = msgspec.json.Decoder(Cursor)


def encode_cursor(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode_cursor(text: str, kind: type[T]) -> T:
    """The cursor `text` stands for; BadCursor if it is not one of `kind`."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = _decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadCursor("this cursor was not given by this server: start again without one") from None
    if not isinstance(cursor, kind):
        raise BadCursor("this cursor belongs to another tool's listing: start again without one")
    return cursor


# --- sessions ---------------------------------------------------------------------------------


def activity_ns(summary: SessionSummary) -> int | None:
    if summary.last_timestamp is None:
        return None
    try:
        return parse_ns(summary.last_timestamp)
    except TimestampError:
        return None


def _order(summary: SessionSummary) -> tuple[bool, int, str]:
    """Newest activity first, then by id; sessions without a time last."""
    ns = activity_ns(summary)
    return (ns is None, -(ns or 0), summary.session_id)


def page_sessions(
    summaries: Sequence[SessionSummary], after: SessionsCursor | None, limit: int
) -> tuple[list[SessionSummary], tuple[int | None, str] | None]:
    """The `limit` sessions that come after `after` newest first, and the position of the
    last one if more follow (None: this is the last page). A session active since the
    listing began moves to the front rather than shifting the pages after it."""
    ordered = sorted(summaries, key=_order)
    if after is not None:
        mark = (after.last_ns is None, -(after.last_ns or 0), after.session_id)
        ordered = [s for s in ordered if _order(s) > mark]
    page = ordered[:limit]
    if len(ordered) <= limit:
        return page, None
    return page, (activity_ns(page[-1]), page[-1].session_id)


# --- transcripts ------------------------------------------------------------------------------


class TranscriptPage(msgspec.Struct, frozen=True):
    text: str
    first: int  # the first event the text shows
    end: int  # the event after the last one it shows (== first + 1 for part of one event)
    next_start: int | None  # None: nothing follows
    next_offset: int = 0


Render = Callable[[list[dict[str, Any]], int], str]  # (decoded events, number of the first turn)


def page_transcript(
    payloads: Sequence[bytes], start: int, end: int, offset: int, render: Render, budget: int
) -> TranscriptPage:
    """The events from `start` (before `end`) whose rendered text fits in `budget`
    characters: whole turns when at least one fits, else whole events, else the text of
    one event from character `offset`. At least one event (or part of one) per page."""
    if not 0 <= start < end <= len(payloads):
        raise ValueError(f"no events from {start} to {end} in {len(payloads)}")
    first_turn = 1 + sum(1 for raw in payloads[:start] if _is_prompt(raw))
    if offset == 0:
        limit = _byte_limit(payloads, start, end, budget * RAW_PER_CHAR)
        events = [msgspec.json.decode(raw) for raw in payloads[start:limit]]
        turns = [start + i for i, event in enumerate(events) if i > 0 and _method(event) == PROMPT_METHOD]
        cuts = turns + ([limit] if limit == end else [])
        fits = _longest_fit(cuts, start, events, first_turn, render, budget)
        if fits is None:  # no whole turn fits: whole events, up to the first turn's end
            within = range(start + 1, (cuts[0] if cuts else limit) + 1)
            fits = _longest_fit(list(within), start, events, first_turn, render, budget)
        if fits is not None:
            cut, text = fits
            return TranscriptPage(text, start, cut, cut if cut < end else None)
        event = events[0]
    else:
        event = msgspec.json.decode(payloads[start])
    text = render([event], first_turn)
    part = text[offset : offset + budget]
    goes_on = offset + budget < len(text)
    if goes_on:
        return TranscriptPage(part, start, start + 1, start, offset + budget)
    return TranscriptPage(part, start, start + 1, start + 1 if start + 1 < end else None)


def _longest_fit(
    cuts: list[int],
    start: int,
    events: list[dict[str, Any]],
    first_turn: int,
    render: Render,
    budget: int,
) -> tuple[int, str] | None:
    """The furthest cut whose page fits, found by bisection (text grows with the events),
    with its text; None if not even the first fits."""
    best: tuple[int, str] | None = None
    low, high = 0, len(cuts) - 1
    while low <= high:
        middle = (low + high) // 2
        text = render(events[: cuts[middle] - start], first_turn)
        if len(text) <= budget:
            best = (cuts[middle], text)
            low = middle + 1
        else:
            high = middle - 1
    return best


def _byte_limit(payloads: Sequence[bytes], start: int, end: int, max_bytes: int) -> int:
    """The end of the events from `start` whose stored size adds up to `max_bytes` (at least one)."""
    total = 0
    for index in range(start, end):
        total += len(payloads[index])
        if total > max_bytes and index > start:
            return index
    return end


def _method(event: Any) -> str | None:
    method = event.get("method") if isinstance(event, dict) else None
    return method if isinstance(method, str) else None


def _is_prompt(raw: bytes) -> bool:
    return b'"user.prompt.submit"' in raw and _method(msgspec.json.decode(raw)) == PROMPT_METHOD
