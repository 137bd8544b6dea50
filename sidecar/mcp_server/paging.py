"""Pages for the MCP front-end: opaque signed cursors, sessions newest first by keyset, and a
transcript cut into pages of a bounded estimate of tokens where turns begin. Pure: no store,
no SDK.

A page never drops anything: what does not fit is where the next page starts, and an
event whose own text outgrows a page is continued by character offset. A cursor is signed
with a key of this process: one from elsewhere (another process, or edited) is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from sidecar.handlers import MAX_INT, MAX_METHODS, MAX_QUERY_CHARS, METHOD_PATTERN
from sidecar.store.base import SessionSummary
from sidecar.timestamps import TimestampError, parse_ns

PROMPT_METHOD = "user.prompt.submit"  # each begins a turn: the cut a page prefers
# Text is measured in estimated tokens: ASCII text at this many characters a token (prose
# is nearer 4, code and JSON nearer 3), any other character a token of its own.
ASCII_CHARS_PER_TOKEN = 3
# Stored bytes read per page at most, as a multiple of its token budget: rendering folds
# deltas and clips tool output, so text is mostly far shorter than the JSON it came from.
RAW_PER_TOKEN = 8 * ASCII_CHARS_PER_TOKEN
MAX_CURSOR_CHARS = 128 * 1024  # a cursor holds at most a query and MAX_METHODS methods
NOT_OURS = (
    "this cursor is not one this server gave (a cursor lasts as long as the server process); "
    "start again without it"
)
_KEY = secrets.token_bytes(32)  # per process: cursors are not kept across restarts
_MAC_BYTES = 16

Int = Annotated[int, Meta(ge=0, le=MAX_INT)]
Ns = Annotated[int, Meta(ge=-MAX_INT - 1, le=MAX_INT)]  # an instant, as int64 nanoseconds
Text = Annotated[str, Meta(max_length=MAX_QUERY_CHARS)]
MethodNames = Annotated[
    tuple[Annotated[str, Meta(pattern=METHOD_PATTERN, max_length=200)], ...], Meta(max_length=MAX_METHODS)
]

T = TypeVar("T")


class BadCursor(ValueError):
    """A cursor this server did not give (or one for another listing)."""


class SessionsCursor(
    msgspec.Struct, frozen=True, tag="sessions", forbid_unknown_fields=True, omit_defaults=True
):
    """Where a listing of sessions goes on, and the filters it was asked with."""

    last_ns: Ns | None  # the last session shown: its last activity (None: it had none)...
    session_id: str  # ...and its id, which orders sessions active at the same instant
    query: Text | None = None
    model: Text | None = None
    status: Text | None = None
    since_ns: Ns | None = None
    before_ns: Ns | None = None
    since: Text | None = None  # since and before as asked (a duration moves with the clock)
    before: Text | None = None


class TranscriptCursor(
    msgspec.Struct, frozen=True, tag="transcript", forbid_unknown_fields=True, omit_defaults=True
):
    """Where a read of a session goes on, and what it was asked for."""

    session_id: Annotated[str, Meta(min_length=1)]
    start: Int  # the first event of the next page, counted from 0 in the filtered session
    offset: Int = 0  # > 0: that event's text goes on at this character
    end: Int | None = None  # events before this one only (None: to the end as it is then)
    methods: MethodNames = ()
    full: bool = False
    page: Annotated[int, Meta(ge=1, le=MAX_INT)] = 1  # the number of the page it leads to
    # What the first call asked, so that arguments repeated beside the cursor can be checked.
    last: Int | None = None
    first_event: Int | None = None
    last_event: Int | None = None


Cursor = SessionsCursor | TranscriptCursor
_decoder = msgspec.json.Decoder(Cursor)


def encode_cursor(cursor: Cursor) -> str:
    body = msgspec.json.encode(cursor)
    return base64.urlsafe_b64encode(_mac(body) + body).decode().rstrip("=")


def decode_cursor(text: str, kind: type[T]) -> T:
    """The cursor `text` stands for; BadCursor if this process did not sign it, if it is
    out of bounds, or if it is not one of `kind`."""
    if len(text) > MAX_CURSOR_CHARS:
        raise BadCursor(NOT_OURS)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if not hmac.compare_digest(mac, _mac(body)):
            raise BadCursor(NOT_OURS)
        cursor = _decoder.decode(body)  # bounds too: a cursor signed here may still be wrong
    except (binascii.Error, ValueError, OverflowError, msgspec.DecodeError):  # BadCursor is one
        raise BadCursor(NOT_OURS) from None
    if not isinstance(cursor, kind):
        raise BadCursor("this cursor belongs to another tool's listing: start again without it")
    return cursor


def _mac(body: bytes) -> bytes:
    return hmac.new(_KEY, body, hashlib.sha256).digest()[:_MAC_BYTES]


def estimate_tokens(text: str) -> int:
    """Tokens a model may count for `text`, erring high (see ASCII_CHARS_PER_TOKEN)."""
    other = len(text) - len(text.encode("ascii", "ignore"))
    return -(-(len(text) - other) // ASCII_CHARS_PER_TOKEN) + other


def fitting_chars(text: str, budget: int) -> int:
    """How many characters from the start of `text` fit in `budget` tokens (at least one)."""
    low, high = 1, min(len(text), budget * ASCII_CHARS_PER_TOKEN)
    if estimate_tokens(text[:high]) <= budget:
        return max(high, 1)
    while low < high:  # the largest that fits: estimates grow with the characters
        middle = (low + high + 1) // 2
        if estimate_tokens(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


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


Render = Callable[[list[dict[str, Any]], int, int], str]
"""(decoded events, the number of the first turn, the index of the first event) -> text"""


def page_transcript(
    payloads: Sequence[bytes], start: int, end: int, offset: int, render: Render, budget: int
) -> TranscriptPage:
    """The events from `start` (before `end`) whose rendered text fits in `budget`
    estimated tokens: whole turns when at least one fits, else whole events, else the text
    of one event from character `offset`. At least one event (or part of one) per page."""
    if not 0 <= start < end <= len(payloads):
        raise ValueError(f"no events from {start} to {end} in {len(payloads)}")
    turn = first_turn(payloads, start)
    if offset == 0:
        limit = _byte_limit(payloads, start, end, budget * RAW_PER_TOKEN)
        events = [msgspec.json.decode(raw) for raw in payloads[start:limit]]
        turns = [start + i for i, event in enumerate(events) if i > 0 and _method(event) == PROMPT_METHOD]
        cuts = turns + ([limit] if limit == end else [])
        fits = _longest_fit(cuts, start, events, turn, render, budget)
        if fits is None:  # no whole turn fits: whole events, up to the first turn's end
            within = range(start + 1, (cuts[0] if cuts else limit) + 1)
            fits = _longest_fit(list(within), start, events, turn, render, budget)
        if fits is not None:
            cut, text = fits
            return TranscriptPage(text, start, cut, cut if cut < end else None)
        event = events[0]
    else:
        event = msgspec.json.decode(payloads[start])
    text = render([event], turn, start)
    size = fitting_chars(text[offset:], budget)
    part = text[offset : offset + size]
    if offset + size < len(text):
        return TranscriptPage(part, start, start + 1, start, offset + size)
    return TranscriptPage(part, start, start + 1, start + 1 if start + 1 < end else None)


def first_turn(payloads: Sequence[bytes], start: int) -> int:
    """The number of the first turn from event `start` on: one more than the prompts before it."""
    return 1 + sum(1 for raw in payloads[:start] if _is_prompt(raw))


def tail_start(payloads: Sequence[bytes], render: Render, budget: int) -> int:
    """Where the latest events whose text fits in `budget` begin: at a turn when one fits,
    else at an event; the last event when not even it fits (0: the whole session fits)."""
    end = len(payloads)
    low, size = end - 1, len(payloads[end - 1])
    while low > 0 and size + len(payloads[low - 1]) <= budget * RAW_PER_TOKEN:
        low -= 1
        size += len(payloads[low])
    events = [msgspec.json.decode(raw) for raw in payloads[low:]]
    turns_before = [first_turn(payloads, low)]
    for event in events:  # turns_before[i]: the number of the first turn from events[i]
        turns_before.append(turns_before[-1] + (_method(event) == PROMPT_METHOD))

    def fits(i: int) -> bool:
        return estimate_tokens(render(events[i:], turns_before[i], low + i)) <= budget

    prompts = [i for i, event in enumerate(events) if _method(event) == PROMPT_METHOD or i == 0 == low]
    for candidates in (prompts, list(range(len(events)))):
        found = _first_fit(candidates, fits)
        if found is not None:
            return low + found
    return end - 1


def _first_fit(candidates: list[int], fits: Callable[[int], bool]) -> int | None:
    """The smallest candidate that fits, by bisection (later starts give less text)."""
    best = None
    low, high = 0, len(candidates) - 1
    while low <= high:
        middle = (low + high) // 2
        if fits(candidates[middle]):
            best = candidates[middle]
            high = middle - 1
        else:
            low = middle + 1
    return best


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
        text = render(events[: cuts[middle] - start], first_turn, start)
        if estimate_tokens(text) <= budget:
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
