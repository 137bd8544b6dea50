"""A session's page drawn once for everyone who looks at it: the page, its hidden chunks and
its live streams share one model of the session, rebuilt when its events change, and parts
drawn on demand and kept while what they are drawn from is unchanged. The heavy work runs
in a worker thread, so the event loop keeps serving meanwhile. Knows no routes."""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sidecar.html import Part
from sidecar.html.pages import CHUNK_TURNS, Hidden, Pages, Piece, chunk_id
from sidecar.transcript import Transcript, build, decoded
from sidecar.web.live import Stamps

KEPT_SESSIONS = 8  # sessions whose drawing is kept between requests
FIRST_TURNS = CHUNK_TURNS  # a page first shows at least this many of the latest turns

_generations = itertools.count(1)  # stamps unique across drawings: an evicted one's never match
Read = Callable[[], Awaitable[list[bytes]]]


@dataclass
class _Slot:
    piece: Piece
    stamp: int
    part: Part | None = None


@dataclass(frozen=True)
class Page:
    """What a page of the session shows: its drawn parts, the chunks it leaves out, and the
    stamps of every part (a live stream sends only what changes after them)."""

    transcript: Transcript
    parts: list[Part]
    hidden: list[Hidden]
    stamps: Stamps


@dataclass
class Drawing:
    """One session's drawing. Each method that reads it holds `lock`; its work is done in a
    thread, one at a time."""

    pages: Pages
    chunk_href: Callable[[int], str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    asked: int = 0  # tickets handed out to those wanting a fresh drawing
    drawn: int = 0  # the ticket the current drawing answers (everything up to it)
    payloads: list[bytes] = field(default_factory=list)
    transcript: Transcript | None = None
    slots: dict[str, _Slot] = field(default_factory=dict)
    owners: dict[int, str] = field(default_factory=dict)  # event index -> its part's id
    generation: int = 0

    async def fresh(self, read: Read) -> bool:
        """Bring the drawing up to the store (shared: one read answers every caller that
        asked before it began); False if the session has no events."""
        self.asked += 1
        ticket = self.asked
        async with self.lock:
            if self.drawn < ticket:
                start = self.asked
                payloads = await read()
                await asyncio.to_thread(self._update, payloads)
                self.drawn = start
        return bool(self.payloads)

    async def page(self, latest: int = FIRST_TURNS) -> Page:
        """The first view: facts, head, end and the chunks holding the `latest` turns."""
        async with self.lock:
            return await asyncio.to_thread(self._page, latest)

    async def changes(self, shown: Stamps | None) -> tuple[list[Part], Stamps]:
        """The parts whose stamp differs from `shown`, drawn; and every part's stamp now.
        `shown` None (what the page shows is not known): those of the first view."""
        async with self.lock:
            return await asyncio.to_thread(self._changes, shown)

    async def chunk(self, number: int | None = None, event: int | None = None) -> str | None:
        """A chunk of turns, by its number or by an event it holds; None if there is none."""
        async with self.lock:
            return await asyncio.to_thread(self._chunk, number, event)

    # --- in the worker thread, under the lock

    def _update(self, payloads: list[bytes]) -> None:
        if payloads == self.payloads and self.transcript is not None:
            return
        self.payloads = payloads
        self.transcript = build(decoded(payloads))
        self.generation = next(_generations)
        slots: dict[str, _Slot] = {}
        owners: dict[int, str] = {}
        for piece in self.pages.pieces(self.transcript, len(payloads)):
            old = self.slots.get(piece.id)
            if old is not None and old.piece.source == piece.source:
                slots[piece.id] = _Slot(piece, old.stamp, old.part)
            else:
                slots[piece.id] = _Slot(piece, self.generation)
            for index in piece.indexes:
                owners.setdefault(index, piece.id)
        self.slots, self.owners = slots, owners

    def _part(self, slot: _Slot) -> Part:
        if slot.part is None:
            slot.part = slot.piece.part()
        return slot.part

    def _first_view(self) -> set[str]:
        """The parts the first view shows: all but the turns of the older chunks."""
        turns = len(self.transcript.turns) if self.transcript is not None else 0
        shown = {chunk_id(position) for position in range(max(0, turns - FIRST_TURNS), turns)}
        return {slot.piece.id for slot in self.slots.values() if slot.piece.parent in (None, *shown)}

    def _page(self, latest: int) -> Page:
        assert self.transcript is not None
        turns = len(self.transcript.turns)
        shown = {chunk_id(position) for position in range(max(0, turns - latest), turns)}
        parts: list[Part] = []
        hidden: dict[str, Hidden] = {}
        for slot in self.slots.values():
            parent = slot.piece.parent
            if parent is None or parent in shown:
                parts.append(self._part(slot))
            elif parent not in hidden:
                number = int(parent.rpartition("-")[2])
                last = min(turns, (number + 1) * CHUNK_TURNS) - 1
                hidden[parent] = Hidden(parent, number * CHUNK_TURNS, last, self.chunk_href(number))
        stamps = {key: slot.stamp for key, slot in self.slots.items()}
        return Page(self.transcript, parts, list(hidden.values()), stamps)

    def _changes(self, shown: Stamps | None) -> tuple[list[Part], Stamps]:
        wanted = self._first_view() if shown is None else None
        changed = [
            self._part(slot)
            for key, slot in self.slots.items()
            if (shown.get(key) != slot.stamp if shown is not None else key in (wanted or ()))
        ]
        return changed, {key: slot.stamp for key, slot in self.slots.items()}

    def _chunk(self, number: int | None, event: int | None) -> str | None:
        if event is not None:
            owner = self.owners.get(event)
            parent = self.slots[owner].piece.parent if owner is not None else None
            if parent is None:
                return None
            number = int(parent.rpartition("-")[2])
        if number is None:
            return None
        wanted = chunk_id(number * CHUNK_TURNS)
        parts = [self._part(slot) for slot in self.slots.values() if slot.piece.parent == wanted]
        return self.pages.chunk(parts) if parts else None


class Drawings:
    """The drawings of the sessions looked at lately, by session id."""

    def __init__(self, pages: Pages, chunk_href: Callable[[str, int], str]) -> None:
        self._pages = pages
        self._chunk_href = chunk_href
        self._kept: OrderedDict[str, Drawing] = OrderedDict()
        self._alive: weakref.WeakValueDictionary[str, Drawing] = weakref.WeakValueDictionary()

    def of(self, session_id: str) -> Drawing:
        """The session's drawing: the kept one, or the one a live stream still holds."""
        drawing = self._kept.pop(session_id, None) or self._alive.get(session_id)
        if drawing is None:
            drawing = Drawing(self._pages, lambda number: self._chunk_href(session_id, number))
            self._alive[session_id] = drawing
        self._kept[session_id] = drawing
        while len(self._kept) > KEPT_SESSIONS:
            self._kept.popitem(last=False)
        return drawing


def stamps_of(parts: Sequence[Part]) -> Stamps:
    """Stamps for parts drawn elsewhere (a page of rows): their digests, as numbers."""
    return {part.id: int.from_bytes(part.digest) for part in parts}
