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

RETRY_FAILED_S = 2.0  # a redraw the store failed is tried again after this, or at a commit
_END = b"event: end\ndata: {}\n\n"

Stamps = dict[str, int]  # part id -> a number that changes when the part does
# The parts changed since the stamps a page shows (None: unknown), and the stamps now.
Redraw = Callable[[Stamps | None], Awaitable[tuple[Sequence[Part], Stamps]]]


class _Update(msgspec.Struct):
    id: str
    html: str
    parent: str | None


class Live:
    def __init__(self, hub: Hub | None) -> None:
        self._hub = hub
        self._wakes: set[asyncio.Event] = set()
        self._stopping = False
        self._pages: OrderedDict[str, Stamps] = OrderedDict()

    @property
    def available(self) -> bool:
        return self._hub is not None

    def remember(self, key: str, stamps: Stamps) -> None:
        """What a page was served with: its stream then sends only what differs."""
        self._pages[key] = stamps
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
        from now) touches `session_id` (None: any session). A subscription the hub drops
        (it fell behind) is taken out again from now, and the page redrawn from the store."""
        if self._hub is None or self._stopping:
            yield _END
            return
        hub = self._hub
        wake = asyncio.Event()
        lost = False

        def committed(_: int, __: int, ___: Event) -> None:
            wake.set()  # a flag, not a queue: one redraw answers any number of commits
            return None

        def lagged(_: int, __: int) -> None:
            nonlocal lost
            lost = True
            wake.set()
            return None

        async def subscribe(after: int | None) -> int:
            try:
                return await hub.subscribe(after, session_id=session_id, render=committed, lagged=lagged)
            except SeqUnavailable:  # the store no longer knows what followed: redraw from it
                wake.set()
                return await hub.subscribe(None, session_id=session_id, render=committed, lagged=lagged)

        shown = self._pages.pop(page, None) if page is not None else None
        try:
            sub = await subscribe(after)
        except StoreFailure as exc:
            log.warning("live updates unavailable: %s", exc)
            yield _END
            return
        self._wakes.add(wake)
        retry: asyncio.TimerHandle | None = None
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
                try:
                    if lost:  # from now on again; the redraw below reads what was missed
                        lost = False
                        sub = await subscribe(None)
                    parts, shown = await redraw(shown)
                except StoreFailure as exc:
                    # Said to the page, and tried again later: the store may come back.
                    log.warning("cannot redraw a live page: %s", exc)
                    yield b"event: failed\ndata: " + msgspec.json.encode(str(exc)) + b"\n\n"
                    retry = asyncio.get_running_loop().call_later(RETRY_FAILED_S, wake.set)
                    continue
                if parts:
                    updates = [_Update(p.id, str(p.html), p.parent) for p in parts]
                    yield b"event: parts\ndata: " + msgspec.json.encode(updates) + b"\n\n"
                await asyncio.sleep(COALESCE_S)
            yield _END
        finally:
            if retry is not None:
                retry.cancel()
            self._wakes.discard(wake)
            hub.unsubscribe(sub)
