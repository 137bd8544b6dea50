"""Live tail: subscriptions to the events any process commits to the store, each sent
once, in seq order, through one output (stdout, or the tail command's terminal).

One task follows the store while subscriptions exist. This process's own commits wake
it at once; other processes' are seen by a cheap check (`Store.change_token`) every
POLL_S, and only while someone is subscribed. Events are read by cursor
(`Store.events_after`), once for all subscriptions at the same cursor, filtered, queued
per subscription and written while the output is under its budget. The store is the
buffer: a subscription whose queue is full is not read for, so a slow reader falls behind
without holding memory. One whose queue is full while more than MAX_BEHIND events committed
since it subscribed wait unread after its cursor has lagged, however the commits were
grouped: it is told once and ends (the tail command's pauses instead). Ingest never waits
for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from sidecar.store.base import Event, Page, SeqUnavailable, Store, StoreFailure, method_matcher

log = logging.getLogger("sidecar")

POLL_S = 0.025  # how often other processes' commits are looked for: half of it is the median delay
PAGE = 500  # events read per store call
# A subscription is not read for while its queue holds this much (a page may overshoot).
QUEUE_EVENTS = 2048
QUEUE_BYTES = 2 * 1024 * 1024
# All subscriptions' queues together: past it none is read for until the output takes some
# (300 subscriptions from seq 0 must not hold 300 queues' worth).
TOTAL_QUEUE_BYTES = 8 * 1024 * 1024
# Reads are sized by bytes: a page asks for as many events as the room left holds at the
# size events have had lately (the first read takes one), so large events are read a few
# at a time rather than PAGE at a time.
# Events committed since a subscription began that it may leave unread while its queue is
# full; one more and it has lagged (counted from its cursor: commit sizes make no difference).
MAX_BEHIND = 10_000
# Notifications are written only while the output holds less than this, so responses
# (and the read loop, which waits when stdout is full) never queue behind them.
OUTPUT_BUDGET_BYTES = 1024 * 1024

# The line for one event (None: nothing to send), and for a subscription that lagged.
Render = Callable[[int, int, Event], bytes | None]  # (subscription, seq, event)
Lagged = Callable[[int, int], bytes | None]  # (subscription, last seq sent)


class Output(Protocol):
    def write_line(self, line: bytes) -> None: ...

    @property
    def pending_bytes(self) -> int: ...


class Subscription:
    def __init__(
        self,
        sub_id: int,
        after: int,
        since: int,
        session_id: str | None,
        methods: Sequence[str],
        render: Render,
        lagged: Lagged | None,
        pause: bool,
    ) -> None:
        self.id = sub_id
        self.cursor = after  # events up to here were read from the store
        self.sent = after  # every matching event up to here was written to the output
        self.behind = True  # there may be events after the cursor right now
        self.since = since  # the latest seq when it subscribed: older ones it asked to replay
        self.session_id = session_id
        self._matches = method_matcher(methods) if methods else None
        self.render = render
        self.lagged = lagged
        self.pause = pause  # when full: stop reading rather than end
        self.queue: deque[tuple[int, bytes]] = deque()
        self.queued_bytes = 0

    def wants(self, event: Event) -> bool:
        if self.session_id is not None and event.session_id != self.session_id:
            return False
        return self._matches is None or self._matches(event.method)

    def has_room(self, max_events: int, max_bytes: int) -> bool:
        return len(self.queue) < max_events and self.queued_bytes < max_bytes


class Hub:
    def __init__(
        self,
        store: Store,
        output: Output,
        *,
        poll_s: float = POLL_S,
        page: int = PAGE,
        queue_events: int = QUEUE_EVENTS,
        queue_bytes: int = QUEUE_BYTES,
        max_behind: int = MAX_BEHIND,
        output_budget_bytes: int = OUTPUT_BUDGET_BYTES,
        total_queue_bytes: int = TOTAL_QUEUE_BYTES,
    ) -> None:
        self._store = store
        self._output = output
        self._poll_s = poll_s
        self._page = page
        self._queue_events = queue_events
        self._queue_bytes = queue_bytes
        self._max_behind = max_behind
        self._budget = output_budget_bytes
        self._total_queue_bytes = total_queue_bytes
        self._queued = 0  # bytes queued in all subscriptions
        self._event_bytes = queue_bytes  # the size events have had lately, for sizing reads
        self._subs: dict[int, Subscription] = {}
        self._last_id = 0
        self._wake = asyncio.Event()
        self._committed = False  # this process committed since the last read
        self._token: object = None
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    async def subscribe(
        self,
        after: int | None,
        *,
        session_id: str | None = None,
        methods: Sequence[str] = (),
        render: Render,
        lagged: Lagged | None = None,
        pause: bool = False,
    ) -> int:
        """A new subscription to the events after seq `after` (None: after the latest).

        StoreFailure if the backend cannot follow; SeqUnavailable if `after` is too old.
        """
        await self._store.change_token()  # the backend can follow, and is set up to
        latest = await self._store.last_seq()
        if after is None:
            after = latest
        else:
            await self._store.events_after(after, 1)
        self._last_id += 1
        self._subs[self._last_id] = Subscription(
            self._last_id, after, latest, session_id, methods, render, lagged, pause
        )
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="subscriptions")
        self._wake.set()
        return self._last_id

    @property
    def queued_bytes(self) -> int:
        """Notifications read and waiting for the output, all subscriptions together."""
        return self._queued

    def unsubscribe(self, sub_id: int) -> bool:
        """End a subscription; nothing more is written for it. False if there is none."""
        sub = self._subs.pop(sub_id, None)
        if sub is None:
            return False
        self._queued -= sub.queued_bytes
        return True

    def committed(self) -> None:
        """This process committed events: read them now rather than at the next poll."""
        if self._subs:
            self._committed = True
            self._wake.set()

    def output_written(self) -> None:
        """The output wrote some lines: queued notifications may go now."""
        if any(sub.queue for sub in self._subs.values()):
            self._wake.set()

    async def close(self) -> None:
        self._subs.clear()
        self._queued = 0
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._subs:  # nobody subscribed: no polling at all
                self._token = None
                await self._wake.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):  # no task per tick, unlike wait_for
                    await self._wake.wait()
            self._wake.clear()
            if not self._subs:
                continue
            try:
                # The token is taken before reading: a commit in between is read now and
                # changes the token again, never the other way round.
                token = await self._store.change_token()
                changed, self._token = token != self._token, token
                committed, self._committed = self._committed, False
                if changed or committed or any(sub.behind for sub in self._subs.values()):
                    await self._read()
                if changed or committed:  # only commits put a subscription further behind
                    await self._lag_the_stalled()
                if self._failing:
                    log.warning("following the store works again")
                    self._failing = False
            except StoreFailure as exc:
                if not self._failing:
                    log.warning("cannot follow the store (%s); retrying", exc)
                    self._failing = True
            except Exception:  # a bug: say so (once), and keep following rather than go silent
                if not self._failing:
                    log.exception("following the store failed unexpectedly")
                    self._failing = True
            self._flush()

    def _has_room(self, sub: Subscription) -> bool:
        return sub.has_room(self._queue_events, self._queue_bytes) and self._queued < self._total_queue_bytes

    def _room_for(self, subs: list[Subscription]) -> int:
        """The bytes the least roomy of `subs`, and all queues together, can still take:
        what a read for them may bring (the store stops there)."""
        room = min(
            self._queue_bytes - max(sub.queued_bytes for sub in subs), self._total_queue_bytes - self._queued
        )
        return max(1, room)

    def _page_for(self, subs: list[Subscription]) -> int:
        """How many events to read for `subs`: their room at the size events have had."""
        return max(1, min(self._page, self._room_for(subs) // self._event_bytes))

    async def _read(self) -> None:
        """Read for every subscription with room in its queue until it has caught up; one
        read per distinct cursor, shared by the subscriptions there."""
        while True:
            groups: dict[int, list[Subscription]] = {}
            for sub in self._subs.values():
                if self._has_room(sub):
                    groups.setdefault(sub.cursor, []).append(sub)
                else:
                    sub.behind = True  # read for once the output has taken some
            more = False
            for cursor, subs in groups.items():
                try:
                    page = await self._store.events_after(cursor, self._page_for(subs), self._room_for(subs))
                except SeqUnavailable as exc:
                    log.warning("subscriptions at seq %d cannot go on: %s", cursor, exc)
                    for sub in subs:
                        self._lag(sub)
                    continue
                if page.events:  # a page's largest event keeps the next reads small a while
                    largest = max(len(event.payload) for _, event in page.events)
                    self._event_bytes = max(1, largest, self._event_bytes // 2)
                for sub in subs:
                    if self._subs.get(sub.id) is sub and sub.cursor == cursor:
                        self._take(sub, page)
                more = more or page.more
            self._flush()
            if not more:
                return

    async def _lag_the_stalled(self) -> None:
        """Lag the subscriptions whose queue is full while more than MAX_BEHIND events
        committed since they subscribed wait after their cursor. Counted from the cursor,
        not from when the queue was found full, so it does not matter how the events were
        grouped into commits."""
        stalled = [sub for sub in self._subs.values() if not sub.pause and not self._has_room(sub)]
        if not stalled:
            return
        latest = await self._store.last_seq()
        for sub in stalled:
            if latest - max(sub.cursor, sub.since) > self._max_behind:
                self._lag(sub)

    def _take(self, sub: Subscription, page: Page) -> None:
        """Queue what the subscription wants of `page`, until its queue (or all queues
        together) is full: the rest is read again once the output has taken some."""
        upto, full = sub.cursor, False
        for seq, event in page.events:
            if not self._has_room(sub):
                full = True
                break
            if sub.wants(event):
                line = sub.render(sub.id, seq, event)
                if line is not None:
                    sub.queue.append((seq, line))
                    sub.queued_bytes += len(line)
                    self._queued += len(line)
            upto = seq
        sub.cursor = upto if full else page.upto
        sub.behind = full or page.more
        if not sub.queue:
            sub.sent = sub.cursor

    def _lag(self, sub: Subscription) -> None:
        """End a subscription that fell too far behind, telling it how far it got."""
        if self._subs.pop(sub.id, None) is None:
            return  # unsubscribed meanwhile
        self._queued -= sub.queued_bytes
        sub.queue.clear()
        sub.queued_bytes = 0
        line = sub.lagged(sub.id, sub.sent) if sub.lagged is not None else None
        if line is not None:
            self._output.write_line(line)  # over the budget: one small line, once

    def _flush(self) -> None:
        """Queued notifications to the output, in turn, while it is under its budget."""
        waiting = [sub for sub in self._subs.values() if sub.queue]
        while waiting and self._output.pending_bytes < self._budget:
            for sub in waiting:
                seq, line = sub.queue.popleft()
                sub.queued_bytes -= len(line)
                self._queued -= len(line)
                self._output.write_line(line)
                sub.sent = seq if sub.queue else sub.cursor
            waiting = [sub for sub in waiting if sub.queue]
