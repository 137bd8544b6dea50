"""`export --html`: a static site of sessions, an index and a page per session, that opens
from disk: CSS inline, no script, nothing loaded from anywhere (the pages' own CSP says so)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sidecar.clock import Clock
from sidecar.handlers import GetSessionParams, Handlers, ListSessionsParams
from sidecar.html import markup
from sidecar.html.pages import Pages, Site
from sidecar.transcript import build, decoded

EVERYTHING = 2**31  # a list_sessions limit that means all of them
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def page_name(session_id: str) -> str:
    """The file of a session's page: readable, and never a path a session id chose."""
    slug = _UNSAFE.sub("-", session_id).strip("-")[:60] or "session"
    digest = hashlib.blake2b(session_id.encode(), digest_size=5).hexdigest()
    return f"session-{slug}-{digest}.html"


async def export_site(
    handlers: Handlers, directory: Path, session_ids: list[str] | None, *, clock: Clock | None = None
) -> int:
    """Write the site into `directory` (created if need be); how many pages were written.
    `session_ids` None: every session; the index lists the exported ones, newest first."""
    summaries = await handlers.list_sessions(ListSessionsParams(limit=EVERYTHING))
    if session_ids is not None:
        wanted = set(session_ids)
        summaries = [s for s in summaries if s.session_id in wanted]
    names = {s.session_id: page_name(s.session_id) for s in summaries}
    site = Site(live=False, index_href="index.html", session_href=names.get)
    pages = Pages(site, clock or Clock())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.html").write_text(pages.sessions(summaries), encoding="utf-8")
    for summary in summaries:
        payloads = await handlers.session_events(GetSessionParams(session_id=summary.session_id))
        raw = [markup.raw_json(payload) for payload in payloads]
        transcript = build(decoded(payloads))
        parts = pages.session_parts(transcript, len(payloads), raw)
        html = pages.session(transcript, parts)
        (directory / names[summary.session_id]).write_text(html, encoding="utf-8")
    return 1 + len(summaries)
