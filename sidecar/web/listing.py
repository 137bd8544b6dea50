"""The sessions page's rows: the store's summaries, newest activity first, filtered by
model, status and time range, a page at a time by the store's (`before`, `before_id`)
cursor (never an OFFSET). A filter few sessions pass looks at a bounded number per page,
then offers the older ones on the next."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from sidecar.clock import Clock, rfc3339
from sidecar.handlers import Handlers, ListSessionsParams
from sidecar.store.base import SessionSummary
from sidecar.timestamps import TimestampError, parse_ns

PAGE = 50  # sessions shown per page
BATCH = 500  # summaries read per store call while filtering
LOOK_AT = 5000  # summaries looked at for one page at most


class Filters(msgspec.Struct, frozen=True):
    text: str | None = None  # the store's own: a substring of id, model, provider, parent, title
    model: str | None = None  # a case-insensitive substring of the model
    status: str | None = None  # "active" or "stopped"
    since_ns: int | None = None  # last activity at or after
    until: str | None = None  # last activity before (RFC 3339)

    @property
    def local(self) -> bool:
        """Filters the store does not apply: the rows are tested here."""
        return self.model is not None or self.status is not None or self.since_ns is not None

    def keeps(self, summary: SessionSummary) -> bool:
        if self.status is not None and summary.status != self.status:
            return False
        return self.model is None or self.model.casefold() in (summary.model or "").casefold()


def filters_from(form: Mapping[str, str], clock: Clock) -> Filters:
    """The filters of a query string; ValueError naming a time that is not one."""
    since, until = form.get("since", "").strip(), form.get("until", "").strip()
    return Filters(
        text=form.get("q", "").strip() or None,
        model=form.get("model", "").strip() or None,
        status=form.get("status", "").strip() or None,
        since_ns=clock.parse(since) if since else None,
        until=rfc3339(clock.parse(until)) if until else None,
    )


class Cursor(msgspec.Struct, frozen=True):
    """Where a list goes on: after the row last active at `before` with id `before_id`
    (None: every session last active at `before` too)."""

    before: str
    before_id: str | None = None

    @classmethod
    def after(cls, summary: SessionSummary) -> Cursor | None:
        if summary.last_timestamp is None:
            return None
        return cls(summary.last_timestamp, summary.session_id)


class Page(msgspec.Struct, frozen=True):
    rows: list[SessionSummary]
    older: Cursor | None  # the cursor of the next page; None: there is none
    looked_at: int  # summaries read for this page


async def sessions_page(handlers: Handlers, filters: Filters, before: Cursor | None) -> Page:
    """A page of sessions after the cursor `before` (None: the newest)."""
    cursor = before or (Cursor(filters.until) if filters.until is not None else None)
    rows: list[SessionSummary] = []
    looked_at = 0
    limit = BATCH if filters.local else PAGE + 1
    while True:
        batch = await handlers.list_sessions(
            ListSessionsParams(
                limit=limit,
                before=None if cursor is None else cursor.before,
                before_id=None if cursor is None else cursor.before_id,
                query=filters.text,
            )
        )
        for summary in batch:
            looked_at += 1
            if filters.since_ns is not None and not _active_since(summary, filters.since_ns):
                return Page(rows, None, looked_at)  # newest first: every later one is older still
            if filters.keeps(summary):
                rows.append(summary)
                if len(rows) > PAGE:
                    return Page(rows[:PAGE], Cursor.after(rows[PAGE - 1]), looked_at)
        if len(batch) < limit:
            return Page(rows, None, looked_at)
        cursor = Cursor.after(batch[-1])
        if cursor is None:
            return Page(rows, None, looked_at)
        if looked_at >= LOOK_AT:  # a rare filter: show what was found, offer the older ones
            return Page(rows, cursor, looked_at)


def _active_since(summary: SessionSummary, since_ns: int) -> bool:
    try:
        return summary.last_timestamp is not None and parse_ns(summary.last_timestamp) >= since_ns
    except TimestampError:
        return False
