"""RFC 3339 timestamps as integer nanoseconds since the Unix epoch, the ordering key.

Python's datetime keeps only microseconds; events 300 ns apart must still sort right,
so the instant is computed here as an int. The stored text is never rewritten.
"""

from __future__ import annotations

import re
import time
from datetime import date

# chrono's relaxed parser: T, t or space; 0-9 fraction digits; Z, z, UTC, +HH:MM or +HHMM.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz]|UTC)|([+-])(\d{2}):?(\d{2}))",
    re.ASCII,  # \d would otherwise match other scripts' digits
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NS_PER_DAY = 86_400 * 10**9
_PAD = ("", "00000000", "0000000", "000000", "00000", "0000", "000", "00", "0", "")

# SQLite integers are 64-bit, so the stored key is clamped to 1677..2262; readers order
# keys at these bounds by the exact instant (`parse_instant`).
MIN_NS = -(2**63) + 1
MAX_NS = 2**63 - 1

_day_cache: dict[str, int] = {}
# Events of one run share their date, hour and minute: cache the instant of the whole
# second for UTC texts (`YYYY-MM-DDTHH:MM:SS[.f]Z`, chrono's form) and add the fraction.
_second_cache: dict[str, int] = {}
_CACHE_LIMIT = 4096


class TimestampError(ValueError):
    pass


def parse_ns(text: str) -> int:
    """The instant `text` names, in ns since the epoch; TimestampError if it is not RFC 3339."""
    second = _second_cache.get(text[:19])
    if second is not None:  # the hot path: a second seen before, chrono's 9 digits or none
        tail = text[19:]
        if tail == "Z":
            return second
        digits = tail[1:-1]
        if len(tail) == 11 and tail[0] == "." and tail[-1] == "Z" and digits.isascii() and digits.isdigit():
            return second + int(digits)
    return clamp(_parse(text))


def parse_instant(text: str) -> int:
    """Like `parse_ns`, but never clamped to int64: the exact order of far-off years."""
    return _parse(text)


def clamp(ns: int) -> int:
    return min(max(ns, MIN_NS), MAX_NS)


def _days_since_epoch(year: str, month: str, day: str) -> int:
    key = year + month + day
    days = _day_cache.get(key)
    if days is None:
        try:
            days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
        except ValueError as exc:
            raise TimestampError(f"invalid date: {exc}") from None
        if len(_day_cache) < _CACHE_LIMIT:
            _day_cache[key] = days
    return days


def _parse(text: str) -> int:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise TimestampError("not an RFC 3339 timestamp with an offset")
    year, month, day, hh, mm, ss, fraction, utc, sign, off_h, off_m = match.groups()
    hours, minutes, seconds = int(hh), int(mm), int(ss)
    if hours > 23 or minutes > 59 or seconds > 60:  # 60: a leap second, as chrono allows
        raise TimestampError("time of day out of range")
    second = _days_since_epoch(year, month, day) * _NS_PER_DAY
    second += (hours * 3600 + minutes * 60 + seconds) * 10**9
    if utc == "Z" and MIN_NS + _NS_PER_DAY < second < MAX_NS - _NS_PER_DAY:
        if len(_second_cache) >= _CACHE_LIMIT:
            _second_cache.clear()
        _second_cache[text[:19]] = second
    elif utc is None:
        offset_h, offset_m = int(off_h), int(off_m)
        if offset_h > 23 or offset_m > 59:
            raise TimestampError("offset out of range")
        offset = (offset_h * 3600 + offset_m * 60) * 10**9
        second += -offset if sign == "+" else offset
    return second + int(fraction + _PAD[len(fraction)]) if fraction else second


def now_rfc3339() -> str:
    """The current instant as chrono writes it: UTC, `Z`, nine fraction digits."""
    ns = time.time_ns()
    seconds, fraction = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"
