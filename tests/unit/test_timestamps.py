from __future__ import annotations

import pytest

from sidecar.timestamps import MAX_NS, MIN_NS, TimestampError, now_rfc3339, parse_instant, parse_ns

BASE = 1780841001_000000000  # 2026-06-07T14:03:21Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-07T14:03:21Z", BASE),
        ("2026-06-07T14:03:21.482913577Z", BASE + 482913577),
        ("2026-06-07T14:03:21.482913Z", BASE + 482913000),
        ("2026-06-07T14:03:21.482Z", BASE + 482000000),
        ("2026-06-07T14:03:21.5Z", BASE + 500000000),
        ("2026-06-07T14:03:21.000000001z", BASE + 1),
        ("2026-06-07t14:03:21Z", BASE),
        ("2026-06-07 14:03:21Z", BASE),
        ("2026-06-07T16:03:21.482913577+02:00", BASE + 482913577),
        ("2026-06-07T12:33:21-01:30", BASE),
        ("2026-06-07T16:03:21+0200", BASE),
        ("2026-06-07T14:03:21UTC", BASE),
    ],
)
def test_rfc3339_forms_parse_to_the_same_nanosecond_instant(text: str, expected: int) -> None:
    assert parse_ns(text) == expected
    assert parse_ns(text) == expected  # second call takes the cached fast path


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-06-07",
        "2026-06-07T14:03:21",  # the offset is mandatory
        "2026-06-07T14:03:21.Z",
        "2026-06-07T14:03:21.1234567890Z",  # ten fraction digits
        "2026-13-07T14:03:21Z",
        "2026-02-30T14:03:21Z",
        "2026-06-07T24:00:00Z",
        "2026-06-07T14:03:21+25:00",
        "2026-06-07T14:03:21.\u0663Z",  # an Arabic-Indic digit is not a digit here
        " 2026-06-07T14:03:21Z",
        "2026-06-07T14:03:21Z ",
    ],
)
def test_malformed_timestamps_are_rejected(text: str) -> None:
    parse_ns("2026-06-07T14:03:21Z")  # warm the cache so the fast path is tried too
    with pytest.raises(TimestampError):
        parse_ns(text)


def test_events_300_ns_apart_order_correctly() -> None:
    assert parse_ns("2026-06-07T14:03:21.000000300Z") - parse_ns("2026-06-07T14:03:21Z") == 300


def test_different_offsets_compare_as_instants() -> None:
    assert parse_ns("2026-01-01T10:00:00+02:00") < parse_ns("2026-01-01T09:00:00Z")


def test_instants_beyond_64_bits_sort_at_the_ends() -> None:
    assert parse_ns("9999-12-31T23:59:59Z") == MAX_NS
    assert parse_ns("0001-01-01T00:00:00Z") == MIN_NS


def test_now_is_written_as_chrono_does_utc_z_nine_digits() -> None:
    text = now_rfc3339()
    assert text.endswith("Z") and len(text) == len("2026-06-07T14:03:21.482913577Z")
    assert parse_ns(text) > parse_ns("2026-01-01T00:00:00Z")


def test_parse_instant_is_exact_where_the_stored_key_is_clamped() -> None:
    assert parse_instant("2400-01-01T00:00:00Z") > parse_instant("2300-01-01T00:00:00Z") > MAX_NS
    assert parse_instant("1500-01-01T00:00:00Z") < parse_instant("1600-01-01T00:00:00Z") < MIN_NS
