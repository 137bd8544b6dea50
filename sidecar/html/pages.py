"""The viewer's pages as HTML from Jinja2 templates (autoescaped): the sessions list, a
session's transcript in parts a live page can replace one by one, search hits.

Renders `sidecar.transcript` and the store's summaries; knows no server and no files: the
live viewer and the static export each bring their `Site` (links, assets, raw JSON).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from typing import Any

import jinja2
from markupsafe import Markup

from sidecar.clock import Clock
from sidecar.html import markup
from sidecar.store.base import SearchHit, SessionSummary
from sidecar.transcript import (
    AssistantText,
    Item,
    Marker,
    OrphanResult,
    SkillLoad,
    Stop,
    TaskUpdate,
    Thinking,
    ToolCall,
    Transcript,
    Turn,
)

CHUNK_TURNS = 50  # turns are grouped by this many: a served page may leave chunks out


@dataclass(frozen=True)
class Site:
    """What differs between the served viewer and a static export."""

    live: bool  # served: stylesheet and script by URL, search, live updates; else inline CSS only
    index_href: str
    session_href: Callable[[str], str | None]  # a session's page; None: not in this site
    raw_href: Callable[[str, Sequence[int]], str] | None = None  # served: raw JSON fetched on demand


@dataclass(frozen=True)
class Part:
    """A piece of a page a live update may replace (by id) or append (to `parent`)."""

    id: str
    html: Markup
    parent: str | None = None

    @cached_property
    def digest(self) -> bytes:
        return hashlib.blake2b(self.html.encode(), digest_size=12).digest()


@dataclass(frozen=True, eq=False)
class Piece:
    """A part not drawn yet: equal `source`s draw equal parts. `indexes`: the events it
    shows (or anchors), for finding the part that holds a permalink."""

    id: str
    parent: str | None
    source: tuple[Any, ...]
    draw: Callable[[], str]
    indexes: tuple[int, ...] = ()

    def part(self) -> Part:
        return Part(self.id, Markup(self.draw()), self.parent)


@dataclass(frozen=True)
class Hidden:
    """A chunk of turns a served page leaves out: where it goes and what it holds."""

    id: str
    first: int  # the positions of its first and last turns
    last: int
    href: str


@dataclass(frozen=True)
class Chunk:
    id: str
    turns: Sequence[Part]
    hidden: Hidden | None = None


def chunk_id(position: int) -> str:
    """The chunk a turn is in: CHUNK_TURNS turns each, in order, so a turn never moves."""
    return f"chunk-{position // CHUNK_TURNS}"


def asset(name: str) -> str:
    return (files("sidecar.html") / "static" / name).read_text(encoding="utf-8")


class Pages:
    def __init__(self, site: Site, clock: Clock) -> None:
        self.site = site
        self.clock = clock
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("sidecar.html", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        css = asset("viewer.css")
        digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        self.env.globals.update(
            site=site,
            css=Markup(css),  # our own stylesheet, inlined in a static site
            # A static page can load nothing and run nothing, whatever it holds.
            static_csp=f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
            "base-uri 'none'; form-action 'none'",
            when=self.clock.show,
            markdown=markup.markdown,
            snippet=markup.snippet,
            pretty=markup.pretty,
            usage=markup.usage,
            spans=spans,
            kind=_kind,
        )
        # The macros of _parts.html, called by name: the pieces a live page replaces.
        self._parts: Any = self.env.get_template("_parts.html").make_module()

    # --- the sessions page

    def sessions(
        self,
        summaries: Sequence[SessionSummary],
        *,
        form: Mapping[str, str] | None = None,
        older_href: str | None = None,
        live_href: str | None = None,
        note: str | None = None,
    ) -> str:
        return self.env.get_template("sessions.html").render(
            title="Sessions",
            rows=self.rows(summaries),
            form=form or {},
            older_href=older_href,
            live_href=live_href,
            note=note,
            query=(form or {}).get("q", ""),
        )

    def rows(self, summaries: Sequence[SessionSummary]) -> Part:
        return Part("rows", Markup(self._parts.rows(summaries)))

    # --- a session's page

    def pieces(self, transcript: Transcript, count: int, raw: Sequence[str] | None = None) -> list[Piece]:
        """What the page's replaceable parts are drawn from, none drawn yet: its facts, what
        came before the first prompt, each turn (in its chunk), the end. `raw`: the stored
        events, embedded (a static site). Events no item shows (deltas a response repeats,
        methods of later protocols) keep a permalink: an anchor in the part they fall in."""
        session_id = transcript.session_id or ""
        parts = self._parts
        extra = _unshown(transcript, count)
        t = transcript
        found = [
            Piece(
                "facts",
                None,
                (
                    t.session_id,
                    t.model,
                    t.provider,
                    t.parent_session_id,
                    t.started,
                    t.last_activity,
                    t.stop,
                    count,
                ),
                lambda: parts.facts(t, count),
            ),
            Piece(
                "head",
                None,
                (t.header, extra[0]),
                lambda: parts.head(t, session_id, raw, extra[0]),
                (*_indexes(t.header), *extra[0]),
            ),
        ]
        number = 0
        for position, turn in enumerate(t.turns):
            if turn.prompt is not None:
                number += 1
            more = extra[position + 1]

            def draw(
                turn: Turn = turn, position: int = position, number: int = number, more: list[int] = more
            ) -> str:
                return str(parts.turn(turn, position, number, session_id, raw, more))

            indexes = (*([turn.prompt.index] if turn.prompt else []), *_indexes(turn.items), *more)
            found.append(Piece(f"turn-{position}", chunk_id(position), (turn, number, more), draw, indexes))
        found.append(
            Piece(
                "end",
                None,
                (t.stop, extra[-1]),
                lambda: parts.end(t, session_id, raw, extra[-1]),
                (*_indexes(() if t.stop is None else (t.stop,)), *extra[-1]),
            )
        )
        return found

    def session_parts(
        self, transcript: Transcript, count: int, raw: Sequence[str] | None = None
    ) -> list[Part]:
        """Every part of the page, drawn (the static export's whole page)."""
        return [piece.part() for piece in self.pieces(transcript, count, raw)]

    def session(
        self,
        transcript: Transcript,
        parts: Sequence[Part],
        *,
        live_href: str | None = None,
        hidden: Sequence[Hidden] = (),
    ) -> str:
        """The page of `parts`; `hidden`: chunks of turns left out, fetched when asked for."""
        title = transcript.session_id or "Session"
        return self.env.get_template("session.html").render(
            title=title,
            t=transcript,
            parts={p.id: p for p in parts if p.parent is None},
            chunks=_chunks([p for p in parts if p.parent is not None], hidden),
            live_href=live_href,
            query="",
        )

    def chunk(self, parts: Sequence[Part]) -> str:
        """A chunk of turns on its own: what a page fetches for a hidden one."""
        chunks = _chunks(parts, ())
        return "".join(str(self._parts.chunk(chunk)) for chunk in chunks)

    # --- search and messages

    def search(
        self,
        query: str,
        hits: Sequence[SearchHit],
        hit_href: Callable[[SearchHit], str],
        note: str | None = None,
    ) -> str:
        return self.env.get_template("search.html").render(
            title=f"Search: {query}" if query else "Search",
            query=query,
            hits=hits,
            hit_href=hit_href,
            note=note,
            live_href=None,
        )

    def message(self, title: str, text: str) -> str:
        return self.env.get_template("message.html").render(title=title, text=text, live_href=None, query="")


def spans(indexes: Sequence[int]) -> str:
    """Event positions as ranges: (3, 4, 5, 9) -> "3-5,9"."""
    out: list[str] = []
    ordered = sorted(set(indexes))
    start = previous = None
    for index in [*ordered, None]:
        if index is not None and previous is not None and index == previous + 1:
            previous = index
            continue
        if start is not None:
            out.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = index
    return ",".join(out)


def parse_spans(text: str, limit: int) -> list[int]:
    """The positions "3-5,9" names, each below `limit`; ValueError if malformed."""
    found: list[int] = []
    for piece in text.split(","):
        low, _, high = piece.partition("-")
        first, last = int(low), int(high or low)
        if not 0 <= first <= last < limit:
            raise ValueError(f"no events {piece!r}")
        found.extend(range(first, last + 1))
    return found


def _chunks(turns: Sequence[Part], hidden: Sequence[Hidden]) -> list[Chunk]:
    """The turns in their chunks, in order, with the hidden chunks in their place."""
    grouped: dict[str, list[Part]] = {}
    for part in turns:
        grouped.setdefault(part.parent or "", []).append(part)
    found = [Chunk(key, parts) for key, parts in grouped.items()]
    found += [Chunk(h.id, (), h) for h in hidden if h.id not in grouped]
    return sorted(found, key=lambda chunk: int(chunk.id.rpartition("-")[2]))


def _unshown(transcript: Transcript, count: int) -> list[list[int]]:
    """The positions of events no item shows, for the head, each turn and the end: each
    goes to the part that shows the latest event before it (the last part, of those whose
    first shown event is at or before it)."""
    shown = [set(_indexes(transcript.header))]
    for turn in transcript.turns:
        shown.append(set(_indexes(turn.items)) | ({turn.prompt.index} if turn.prompt else set()))
    shown.append(set(_indexes(() if transcript.stop is None else (transcript.stop,))))
    every = set().union(*shown)
    extra: list[list[int]] = [[] for _ in shown]
    unshown = sorted(set(range(count)) - every)
    if not unshown:
        return extra
    # (first shown event, part): a part owns what lies after its first event, up to the
    # next part's first event; the latest such part wins, as parts are in order.
    firsts = sorted((min(indexes), n) for n, indexes in enumerate(shown) if indexes)
    owners: list[int] = []  # the owner for an index at or past each first, by position
    best = 0
    for _, n in firsts:
        best = max(best, n)
        owners.append(best)
    starts = [first for first, _ in firsts]
    for index in unshown:
        at = bisect.bisect_right(starts, index)
        extra[owners[at - 1] if at else 0].append(index)
    return extra


def _indexes(items: Iterable[Item]) -> Iterator[int]:
    """The positions of the events the items show."""
    for item in items:
        yield item.index
        if isinstance(item, AssistantText | Thinking | ToolCall):
            yield from item.indexes
        if isinstance(item, ToolCall) and item.result is not None:
            yield item.result.index
        if isinstance(item, OrphanResult):
            yield item.result.index


def _kind(item: Any) -> str:
    """The name of an item's macro in _parts.html."""
    kinds: dict[type, str] = {
        AssistantText: "text",
        Thinking: "thinking",
        ToolCall: "tool_call",
        OrphanResult: "orphan",
        SkillLoad: "skill",
        TaskUpdate: "task",
        Marker: "marker",
        Stop: "stop",
    }
    return kinds[type(item)]
