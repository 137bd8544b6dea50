"""The command line's one clock: how instants are printed, and the times options accept.

Printed: local time with its offset (`2026-06-07 16:03:21 +02:00`), or UTC with `--utc`
(`2026-06-07 14:03:21 +00:00`): the same form everywhere, and one the options read back.
Accepted by `--since`/`--before`: that form, RFC 3339, a plain date (midnight, local or
UTC), or a duration back from now (`90s`, `30m`, `2h`, `7d`, `2w`).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from sidecar.timestamps import TimestampError, parse_ns

_DURATION = re.compile(r"(\d+)\s*(s|m|h|d|w)", re.ASCII)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_SPACED_OFFSET = re.compile(r"\s+([+-]\d{2}:?\d{2}|Z|UTC)$")
_EARLIEST_NS = int((datetime(1, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9
_LATEST_NS = (
    int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    * 10**9
)
_DAY_NS = 86_400 * 10**9
EXAMPLES = "e.g. 2h, 7d, 2026-06-07, or 2026-06-07 16:03:21 +02:00"


class Clock:
    def __init__(self, utc: bool = False) -> None:
        self.utc = utc

    def show(self, timestamp: str | None) -> str:
        """A stored RFC 3339 timestamp as printed (to the second); "" for none, and the
        text itself if it is not a timestamp."""
        if not timestamp:
            return ""
        try:
            ns = parse_ns(timestamp)
        except TimestampError:
            return timestamp
        return self.show_ns(ns)

    def show_ns(self, ns: int) -> str:
        ns = min(max(ns, _EARLIEST_NS + _DAY_NS), _LATEST_NS - _DAY_NS)  # a day in: any offset fits
        try:
            moment = datetime.fromtimestamp(ns // 10**9, UTC)
        except (OverflowError, ValueError, OSError):
            return str(ns)
        if not self.utc:
            moment = moment.astimezone()
        offset = moment.strftime("%z")
        return f"{moment.year:04d}-{moment:%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"

    def parse(self, text: str, now_ns: int | None = None) -> int:
        """An option's time as ns since the epoch; ValueError naming the accepted forms."""
        text = text.strip()
        now = time.time_ns() if now_ns is None else now_ns
        if _DURATION.fullmatch(text):
            return now - duration_s(text) * 10**9
        if day := _DATE.fullmatch(text):
            try:
                midnight = datetime(int(day[1]), int(day[2]), int(day[3]), tzinfo=UTC if self.utc else None)
            except ValueError:
                raise ValueError(f"no such date {text!r} ({EXAMPLES})") from None
            return int(midnight.timestamp()) * 10**9
        try:
            return parse_ns(_SPACED_OFFSET.sub(r"\1", text))
        except TimestampError:
            raise ValueError(f"not a time or duration: {text!r} ({EXAMPLES})") from None


def duration_s(text: str) -> int:
    """A duration such as `30d` as seconds; ValueError with an example."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 30m, 12h, 30d, 2w)")
    return int(found[1]) * _UNIT_S[found[2]]


def rfc3339(ns: int) -> str:
    """ns since the epoch as the RFC 3339 UTC text the storage requests take (years 1
    to 9999: a duration reaching further back is the earliest instant)."""
    ns = min(max(ns, _EARLIEST_NS), _LATEST_NS)
    seconds, fraction = divmod(ns, 10**9)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{fraction:09d}Z"
