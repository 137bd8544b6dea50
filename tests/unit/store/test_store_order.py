"""Ordering and `after` filtering shared by every backend (sidecar.store.base)."""

from __future__ import annotations

import msgspec
from events import line, prompt

from sidecar.events import stored_keys
from sidecar.store.base import SessionQuery, time_ordered
from sidecar.timestamps import parse_instant

FAR = ["2400-01-01T00:00:00Z", "1500-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "1600-01-01T00:00:00Z"]


def order(stamps: list[str], query: SessionQuery) -> list[int]:
    """Arrival indices of the events `query` returns, stored as a backend reads them back."""
    rows = []
    for i, stamp in enumerate(stamps):
        payload = line(prompt("s", stamp, text=str(i))).rstrip(b"\n")
        keys = stored_keys(payload)
        assert keys is not None
        rows.append((keys.timestamp_ns, payload))
    return [int(msgspec.json.decode(p)["params"]["prompt"]) for p in time_ordered(rows, query)]


def after(stamp: str, last: int | None = None) -> SessionQuery:
    return SessionQuery(after_ns=parse_instant(stamp), last=last)


def test_instants_beyond_64_bit_nanoseconds_sort_by_their_exact_value() -> None:
    assert order([*FAR, "2026-01-01T00:00:00Z"], SessionQuery()) == [1, 3, 4, 2, 0]


def test_after_a_far_off_instant_keeps_only_later_events() -> None:
    assert order(FAR, after("2350-01-01T00:00:00Z")) == [0]
    assert order(FAR, after("1550-01-01T00:00:00Z")) == [3, 2, 0]


def test_after_excludes_the_instant_itself_and_ties_keep_arrival_order() -> None:
    stamps = ["2026-01-01T00:00:02Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:03Z", "2026-01-01T00:00:01Z"]
    assert order(stamps, SessionQuery()) == [1, 3, 0, 2]
    assert order(stamps, after("2026-01-01T00:00:01Z")) == [0, 2]
    assert order(stamps, after("2026-01-01T00:00:01Z", last=1)) == [2]
    assert order(stamps, SessionQuery(last=10)) == [1, 3, 0, 2]
