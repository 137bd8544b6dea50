"""Live pages over Server-Sent Events: a stream per open page, woken by the subscription
hub when any process commits an event the page shows, answering with the parts of the page
that changed. Knows no routes and no templates: a stream is given how to redraw its page."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import msgspec

from sidecar.html import Part
from sidecar.store.base import Event, SeqUnavailable, StoreFailure
from sidecar.subscriptions import Hub

log = logging.getLogger("sidecar")

KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and the browser from giving up
COALESCE_S = 0.1  # after a redraw: commits meanwhile are drawn together, not one by one
RETRY_MS = 1000  # how soon the browser reconnects when the stream is cut
REMEMBERED_PAGES = 256  # pages whose parts are remembered, so a stream sends only changes

Redraw = Callable[[], Awaitable[Sequence[Part]]]
Digests = dict[str, bytes]


class _Update(msgspec.Struct):
    id: str
    html: str
    parent: str | None


class Live:
    def __init__(self, hub: Hub | None) -> None:
        self._hub = hub
        self._wakes: set[asyncio.Event] = set()
        self._stopping = False
        self._pages: OrderedDict[str, Digests] = OrderedDict()

    @property
    def available(self) -> bool:
        return self._hub is not None

    def remember(self, key: str, parts: Sequence[Part]) -> None:
        """What a page was served with: its stream then sends only what differs."""
        self._pages[key] = {part.id: part.digest for part in parts}
        while len(self._pages) > REMEMBERED_PAGES:
            self._pages.popitem(last=False)

    def stop(self) -> None:
        """End every stream (the server is shutting down)."""
        self._stopping = True
        for wake in self._wakes:
            wake.set()

    async def stream(
        self, redraw: Redraw, *, after: int | None, session_id: str | None = None, page: str | None = None
    ) -> AsyncIterator[bytes]:
        """The events of a page: its changed parts whenever a commit after seq `after` (None:
        from now) touches `session_id` (None: any session)."""
        if self._hub is None or self._stopping:
            yield b"event: end\ndata: {}\n\n"
            return
        wake = asyncio.Event()

        def committed(_: int, __: int, ___: Event) -> None:
            wake.set()  # a flag, not a queue: one redraw answers any number of commits
            return None

        shown = self._pages.pop(page, None) if page is not None else None
        try:
            try:
                sub = await self._hub.subscribe(after, session_id=session_id, render=committed)
            except SeqUnavailable:  # the store no longer knows what followed: redraw it all
                sub = await self._hub.subscribe(None, session_id=session_id, render=committed)
                shown = None
                wake.set()
        except StoreFailure as exc:
            log.warning("live updates unavailable: %s", exc)
            yield b"event: end\ndata: {}\n\n"
            return
        self._wakes.add(wake)
        try:
            yield b"retry: %d\n\n" % RETRY_MS  # sent at once: the browser knows it is connected
            while not self._stopping:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        await wake.wait()
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                wake.clear()
                if self._stopping:
                    break
                parts = await redraw()
                changed = [p for p in parts if shown is None or shown.get(p.id) != p.digest]
                shown = {p.id: p.digest for p in parts}
                if changed:
                    updates = [_Update(p.id, str(p.html), p.parent) for p in changed]
                    yield b"event: parts\ndata: " + msgspec.json.encode(updates) + b"\n\n"
                await asyncio.sleep(COALESCE_S)
            yield b"event: end\ndata: {}\n\n"
        finally:
            self._wakes.discard(wake)
            self._hub.unsubscribe(sub)
